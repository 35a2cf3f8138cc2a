-- Aggregator on TimescaleDB (applied only where the timescaledb extension exists; see gridsim_shared.db).
-- See docs/data.md, "TimescaleDB".
--
-- meter_data and grid_rollups become hypertables (one-day chunks of simulated time); meter_data is
-- compressed per meter. The six time-rollup tables are replaced by continuous aggregates with the same
-- names and columns, so every reader (billing, gateway, dashboards) queries them unchanged. The aggregator
-- detects this (a hypertable named meter_data in its schema) and then, instead of writing the rollup
-- tables, refreshes these aggregates for the simulated windows it closes, and applies retention and
-- compression in simulated time. Timescale's own policies run on the wall clock, which says nothing about a
-- simulated clock that may be years behind or ahead; so none is added here.

select create_hypertable('meter_data', 'ts', chunk_time_interval => interval '1 day', migrate_data => true);
select create_hypertable('grid_rollups', 'ts', chunk_time_interval => interval '7 days', migrate_data => true);

-- A meter's readings sit together in a compressed chunk, newest first: what per-meter queries read.
alter table meter_data set (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id',
    timescaledb.compress_orderby = 'ts desc'
);

drop table meter_data_15m, meter_data_1h, meter_data_1d;
drop table grid_rollups_15m, grid_rollups_1h, grid_rollups_1d;

-- Meters: sums and counts, never averages of averages (as the plain tables). Buckets start at
-- 2000-01-01 00:00 UTC multiples, as date_bin does in the plain path.
create materialized view meter_data_15m with (timescaledb.continuous, timescaledb.materialized_only = false) as
select meter_id,
       time_bucket(interval '15 minutes', ts) as bucket,
       coalesce(sum(consumption_kwh), 0) as consumption_kwh,
       coalesce(sum(production_kwh), 0) as production_kwh,
       coalesce(sum(consumption_kvah), 0) as consumption_kvah,
       coalesce(sum(production_kvah), 0) as production_kvah,
       coalesce(sum(reactive_power_kvar), 0) as kvarh,
       sum(avg_voltage) as voltage_sum,
       max(avg_current) as current_max,
       count(*)::integer as readings
from meter_data
group by meter_id, time_bucket(interval '15 minutes', ts)
with no data;

create materialized view meter_data_1h with (timescaledb.continuous, timescaledb.materialized_only = false) as
select meter_id,
       time_bucket(interval '1 hour', bucket) as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       sum(voltage_sum) as voltage_sum,
       max(current_max) as current_max,
       sum(readings)::integer as readings
from meter_data_15m
group by meter_id, time_bucket(interval '1 hour', bucket)
with no data;

create materialized view meter_data_1d with (timescaledb.continuous, timescaledb.materialized_only = false) as
select meter_id,
       time_bucket(interval '1 day', bucket) as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       sum(voltage_sum) as voltage_sum,
       max(current_max) as current_max,
       sum(readings)::integer as readings
from meter_data_1h
group by meter_id, time_bucket(interval '1 day', bucket)
with no data;

-- Grid nodes: energies summed; the coincident peak is the highest mean kVA of an interval in the bucket,
-- and last(x, kva) is x at that highest kVA (array_agg(... order by ...) is not allowed in an aggregate).
create materialized view grid_rollups_15m with (timescaledb.continuous, timescaledb.materialized_only = false) as
select node_id,
       time_bucket(interval '15 minutes', ts) as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       max(apparent_kva) as peak_kva,
       last(ts, apparent_kva) as peak_at,
       count(*)::integer as intervals
from grid_rollups
group by node_id, time_bucket(interval '15 minutes', ts)
with no data;

create materialized view grid_rollups_1h with (timescaledb.continuous, timescaledb.materialized_only = false) as
select node_id,
       time_bucket(interval '1 hour', bucket) as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       max(peak_kva) as peak_kva,
       last(peak_at, peak_kva) as peak_at,
       sum(intervals)::integer as intervals
from grid_rollups_15m
group by node_id, time_bucket(interval '1 hour', bucket)
with no data;

create materialized view grid_rollups_1d with (timescaledb.continuous, timescaledb.materialized_only = false) as
select node_id,
       time_bucket(interval '1 day', bucket) as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       max(peak_kva) as peak_kva,
       last(peak_at, peak_kva) as peak_at,
       sum(intervals)::integer as intervals
from grid_rollups_1h
group by node_id, time_bucket(interval '1 day', bucket)
with no data;
