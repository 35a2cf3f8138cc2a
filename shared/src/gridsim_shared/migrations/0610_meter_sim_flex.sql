-- Flexible-load windows (issue 17): demand-response curtailment of the loads model's flexible loads
-- (thermostats set back, water heaters and EV charging deferred, with rebound after), asked for by the
-- utility's programmes and applied by meter-sim through loads.Flex. Owner: meter-sim. A window names its
-- meters by id (meters deleted since are skipped); cancelling ends it early at the simulated time.
create table flex_events (
    id            bigserial primary key,
    name          text not null default '' check (length(name) <= 200),
    meter_ids     bigint[] not null,
    start_time    timestamptz not null,
    end_time      timestamptz not null check (end_time > start_time),
    hvac_offset_c double precision not null default 0 check (hvac_offset_c >= 0 and hvac_offset_c <= 10),
    defer_water   boolean not null default false,
    defer_ev      boolean not null default false,
    cancelled_at  timestamptz,
    created_at    timestamptz not null default now()
);
create index flex_events_end on flex_events (end_time);
