-- Aggregator: ingest receipts, the committed watermark, grid rollups per interval and per 15 min / hour /
-- day, transformer thermal state, intervals to recompute. Owner of every table here: the aggregator.
-- See docs/data.md.

-- One row per ReadingBatch committed (a transformer's readings for one interval, or one chunk of them),
-- written in the same transaction as its readings: what was committed, and the batch's sums, so
-- transformer rollups never rescan meter_data. A redelivered batch hits the primary key and adds nothing.
create table ingest_batches (
    ts               timestamptz not null,
    transformer_code text not null,
    first_meter_id   bigint not null,
    readings         integer not null,
    producers        integer not null,
    consumption_kwh  double precision not null,
    production_kwh   double precision not null,
    consumption_kvah double precision not null,
    production_kvah  double precision not null,
    kvarh            double precision not null,
    current_sum      double precision not null,
    vi_sum           double precision not null,
    voltage_sum      double precision not null,
    instance         text not null,
    committed_at     timestamptz not null default now(),
    primary key (ts, transformer_code, first_meter_id)
);

-- The watermark: the latest interval closed (readings, parent meters and grid rollups committed), the
-- 15-minute windows rolled up so far, and the leaf readings counted into closed intervals.
-- Ingest takes this row FOR KEY SHARE and the closer FOR UPDATE, so a reading committed for an
-- interval already closed is always noticed (late_intervals) and never silently left out of a rollup.
create table aggregator_state (
    id                 boolean primary key default true check (id),
    committed_until    timestamptz,
    rolled_until       timestamptz,
    readings_committed bigint not null default 0,
    updated_at         timestamptz not null default now()
);
insert into aggregator_state (id) values (true);

-- Intervals that received readings after they were closed: recomputed (parents, grid, time rollups).
create table late_intervals (
    ts timestamptz primary key
);

-- Each aggregator instance's progress: the latest clock `last_published` whose readings it has committed.
create table aggregator_instances (
    instance            text primary key,
    flushed_clock_until timestamptz,
    heartbeat_at        timestamptz not null default now()
);

-- Grid rollups per interval: transformer, feeder, utility.
create table grid_rollups (
    ts               timestamptz not null,
    node_id          bigint not null,
    level            text not null check (level in ('transformer', 'feeder', 'utility')),
    consumption_kwh  double precision not null,
    production_kwh   double precision not null,
    consumption_kvah double precision not null,
    production_kvah  double precision not null,
    kvarh            double precision not null,
    apparent_kva     double precision not null,
    capacity_kva     double precision,
    loading_pct      double precision,
    hot_spot_c       double precision,
    meters_expected  integer not null,
    meters_reporting integer not null,
    partial          boolean not null default false,
    primary key (ts, node_id)
);
create index grid_rollups_node_ts on grid_rollups (node_id, ts);

-- Grid rollups by time: energies summed, the coincident peak (the node's highest mean kVA in the bucket)
-- and when it happened. Same query shape for every width.
create table grid_rollups_15m (
    node_id          bigint not null,
    bucket           timestamptz not null,
    consumption_kwh  double precision not null default 0,
    production_kwh   double precision not null default 0,
    consumption_kvah double precision not null default 0,
    production_kvah  double precision not null default 0,
    kvarh            double precision not null default 0,
    peak_kva         double precision not null default 0,
    peak_at          timestamptz,
    intervals        integer not null default 0,
    primary key (node_id, bucket)
);
create table grid_rollups_1h (like grid_rollups_15m including all);
create table grid_rollups_1d (like grid_rollups_15m including all);

-- Transformer thermal state (IEEE C57.91 top-oil and hot-spot rises), carried across intervals.
create table transformer_thermal (
    node_id             bigint primary key,
    ts                  timestamptz not null,
    top_oil_rise_c      double precision not null,
    hot_spot_gradient_c double precision not null,
    overloaded          boolean not null default false
);

-- Serves "events of this subject", e.g. a transformer's overloads.
create index events_subject_time on events (subject, sim_time);
