-- Grid health (issue 18; docs/grid-health.md): energy registers, remote disconnects, outages and feeder
-- switching (owner: meter-sim), transformer insulation aging and the SLA latency column (owner: aggregator).

-- A meter's cumulative registers since installation (kWh imported and exported, kVARh), as of the end of
-- interval `as_of`; meter-sim keeps them in memory and saves them every few seconds and on shutdown.
create table meter_registers (
    meter_id     bigint primary key references meters (id) on delete cascade,
    import_kwh   double precision not null default 0 check (import_kwh >= 0),
    export_kwh   double precision not null default 0 check (export_kwh >= 0),
    import_kvarh double precision not null default 0 check (import_kvarh >= 0),
    as_of        timestamptz
);

-- Remote disconnect: the meter's service switch is open (its readings show no voltage and no energy).
alter table meters add column disconnected boolean not null default false;

-- Supply interruptions of a transformer, a feeder section (some of a feeder's transformers) or a whole
-- feeder. `start_time` may lie ahead (a planned outage); `planned_end` is the drawn repair time (faults,
-- overload trips) or the announced end (planned); `restored_at` is when supply came back.
create table outages (
    id                   bigserial primary key,
    scope                text not null check (scope in ('transformer', 'section', 'feeder')),
    cause                text not null check (cause in ('fault', 'planned', 'overload_trip')),
    node_id              bigint not null references grid_nodes (id) on delete cascade,
    feeder_id            bigint not null references grid_nodes (id) on delete cascade,
    transformer_ids      bigint[] not null,
    start_time           timestamptz not null,
    planned_end          timestamptz,
    restored_at          timestamptz,
    restored_by          text check (restored_by in ('repair', 'operator', 'schedule')),
    customers            integer not null check (customers >= 0),
    -- Set when meter-sim has taken the meters off supply and sent their last-gasp events.
    announced            boolean not null default false,
    -- Set when meter-sim has given the meters supply back and sent their power-restored events.
    closed               boolean not null default false,
    message              text,
    created_at           timestamptz not null default now(),
    check (planned_end is null or planned_end > start_time),
    check (restored_at is null or restored_at >= start_time)
);
create index outages_feeder_start on outages (feeder_id, start_time);
create index outages_open on outages (start_time) where not closed;

-- The meters each outage took off supply (fixed when it starts: customers interrupted, IEEE 1366).
create table outage_meters (
    outage_id bigint not null references outages (id) on delete cascade,
    meter_id  bigint not null references meters (id) on delete cascade,
    primary key (outage_id, meter_id)
);

-- Insulation aging (IEEE C57.91 clause 5): cumulative loss of life and time spent overloaded.
alter table transformer_thermal
    add column loss_of_life_h double precision not null default 0,
    add column overload_h     double precision not null default 0,
    add column aging_factor   double precision not null default 0;

-- When the batch left meter-sim (wall clock): the SLA latency is committed_at - sent_at.
alter table ingest_batches add column sent_at timestamptz;
