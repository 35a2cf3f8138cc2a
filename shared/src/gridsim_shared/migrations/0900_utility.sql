-- Utility service: load forecasts and their scores, demand-response programmes, enrolments, events and
-- each participant's dispatch and measured performance, OpenADR VEN registrations, stored dynamic bills.
-- Owner of every table here: the utility service (see docs/utility.md). It reads grid_rollups_1h
-- (aggregator), meters/ders/appliances (meter-sim) and never writes them.

-- One row per (node, horizon, model, target hour): the latest forecast issued for that hour.
create table utility_forecasts (
    node_id      bigint not null,
    horizon      text not null check (horizon in ('hour-ahead', 'day-ahead')),
    model        text not null check (model in ('seasonal-naive', 'regression')),
    target       timestamptz not null,
    issued_at    timestamptz not null,
    load_kwh     double precision not null,
    net_load_kwh double precision not null,
    primary key (node_id, horizon, model, target)
);
create index utility_forecasts_target on utility_forecasts (target);

create table dr_programs (
    id             bigserial primary key,
    name           text not null unique check (length(name) between 1 and 100),
    kind           text not null check (kind in ('ptr', 'dlc', 'cpp')),
    -- PTR: credit per kWh shed against the CAISO baseline; DLC: credit per event; CPP: the event price.
    rebate_per_kwh double precision not null default 0 check (rebate_per_kwh >= 0),
    event_credit   double precision not null default 0 check (event_credit >= 0),
    cpp_rate       double precision check (cpp_rate > 0),
    compliance     double precision not null check (compliance between 0 and 1),
    shed_share     double precision not null check (shed_share > 0 and shed_share <= 1),
    rebound_share  double precision not null check (rebound_share >= 0 and rebound_share <= 2),
    -- Forecast-peak trigger: an event for the day-ahead forecast hour above this share of the 28-day peak.
    auto_peak_share double precision check (auto_peak_share > 0),
    created_at     timestamptz not null default now()
);

create table dr_enrolments (
    program_id  bigint not null references dr_programs (id) on delete cascade,
    meter_id    bigint not null,
    flexible_kw double precision not null check (flexible_kw > 0),
    rated_kw    double precision not null check (rated_kw > 0),
    enrolled_at timestamptz not null,
    primary key (program_id, meter_id)
);
create index dr_enrolments_meter on dr_enrolments (meter_id);

create table dr_events (
    id          bigserial primary key,
    program_id  bigint not null references dr_programs (id) on delete restrict,
    start       timestamptz not null,
    "end"       timestamptz not null check ("end" > start),
    level       integer not null check (level between 1 and 3),
    trigger     text not null check (trigger in ('operator', 'forecast-peak', 'overload', 'openadr')),
    reason      text not null default '',
    status      text not null check (status in ('scheduled', 'cancelled')),
    created_sim timestamptz not null,
    cancelled_sim timestamptz,
    -- Set once the event and its rebound hours are metered and every participant evaluated.
    evaluated_sim timestamptz,
    rebound_kwh double precision,
    created_at  timestamptz not null default now()
);
create index dr_events_window on dr_events (start, "end");

-- Each enrolled meter's part in an event: did it comply (seeded), the spikes that carry its response in
-- meter-sim, and (once the event is over and metered) its baseline, metered load and credit.
create table dr_participation (
    event_id       bigint not null references dr_events (id) on delete cascade,
    meter_id       bigint not null,
    complied       boolean not null,
    shed_factor    double precision not null,
    shed_spike_id  bigint,
    rebound_spike_id bigint,
    baseline_kwh   double precision,
    metered_kwh    double precision,
    credit         double precision,
    primary key (event_id, meter_id)
);
create index dr_participation_meter on dr_participation (meter_id);

-- Every change to a programme, enrolment or event, with the simulated time it happened.
create table dr_log (
    id        bigserial primary key,
    sim_time  timestamptz not null,
    action    text not null,
    data      jsonb not null default '{}',
    created_at timestamptz not null default now()
);

-- VENs registered with the OpenADR VTN.
create table openadr_vens (
    ven_id        text primary key,
    ven_name      text not null unique,
    registration_id text not null,
    registered_at timestamptz not null default now()
);

-- Dynamic-tariff bills stored once, final, when the month has closed (billing's convention).
create table dynamic_bills (
    meter_id    bigint not null,
    month       text not null,
    body        jsonb not null,
    generated_at timestamptz not null default now(),
    primary key (meter_id, month)
);
