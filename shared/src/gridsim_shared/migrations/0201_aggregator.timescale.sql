-- Aggregator on TimescaleDB (applied only where the server can use the timescaledb extension: installed
-- and preloaded; see gridsim_shared.db). See docs/data.md, "TimescaleDB".
--
-- Raw readings (meter_data, one row per meter per interval) and per-interval grid rows (grid_rollups)
-- become hypertables; the 15-minute, hourly and daily rollups become hierarchical continuous aggregates
-- (15 min from the raw rows, 1 h from 15 min, 1 day from 1 h) that the aggregator refreshes for each
-- window it closes, on the simulated clock. Readers (billing, feasibility, gateway, dashboards) query the
-- same names with the same columns as on plain PostgreSQL: each name is now a view over
--   * the continuous aggregate (`*_agg`), and
--   * `*_history`: the plain rollup table as it was, kept, so that a database moved from plain PostgreSQL
--     to TimescaleDB loses no rollup, even of periods whose raw readings retention has already dropped.
--     It keeps only the buckets the raw rows can no longer rebuild; where both have a bucket, history wins.
-- Both engines show the same thing: closed 15-minute windows, added into their hours and days (the
-- aggregates are materialized only: the open window is in meter_data, not in the rollups, as on plain).
--
-- Timescale's own refresh, compression and retention policies run on the wall clock, which says nothing
-- about a simulated clock that may be years behind or ahead: the aggregator applies them in simulated time
-- (closer.py), so no policy is added here.
--
-- Applied to an empty schema (a new database) or to one with years of plain data (migrate_data copies it
-- into chunks; on a large table that takes a while, once).

-- Chunks sized for the data rate: one simulated day of meter_data is 1,440 rows per meter (14.4 M rows,
-- about 2 GB with its two indexes, at 10,000 meters), which with the current day's index in memory is
-- what TimescaleDB advises (a chunk and its indexes well under a quarter of memory). A day is also the
-- unit of retention and compression, both decided at simulated midnight. grid_rollups has ~100 rows per
-- interval (one per transformer, feeder, utility): a week per chunk.
select create_hypertable('meter_data', 'ts', chunk_time_interval => interval '1 day', migrate_data => true);
select create_hypertable('grid_rollups', 'ts', chunk_time_interval => interval '7 days', migrate_data => true);

-- Native compression: a meter's (a node's) rows together in a compressed chunk, in time order: what
-- per-meter reads (a day's stream, a bill) scan. Chunks are compressed at simulated midnight once older
-- than GRIDSIM_AGGREGATOR__TIMESCALE_COMPRESS_AFTER_DAYS; late readings may still land in them.
alter table meter_data set (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id',
    timescaledb.compress_orderby = 'ts'
);
alter table grid_rollups set (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'node_id',
    timescaledb.compress_orderby = 'ts'
);

-- The plain rollup tables become history: only buckets the raw rows no longer cover stay in them (the
-- rest is rebuilt by the aggregates from the same raw rows, which migrate_data kept).
alter table meter_data_15m rename to meter_data_15m_history;
alter index meter_data_15m_pkey rename to meter_data_15m_history_pkey;
alter table meter_data_1h rename to meter_data_1h_history;
alter index meter_data_1h_pkey rename to meter_data_1h_history_pkey;
alter table meter_data_1d rename to meter_data_1d_history;
alter index meter_data_1d_pkey rename to meter_data_1d_history_pkey;
delete from meter_data_15m_history where bucket >= (select min(ts) from meter_data);
delete from meter_data_1h_history where bucket >= (select date_trunc('hour', min(ts)) from meter_data);
delete from meter_data_1d_history where bucket >= (select date_bin('1 day', min(ts), timestamptz '2000-01-01 00:00:00+00') from meter_data);
alter table grid_rollups_15m rename to grid_rollups_15m_history;
alter index grid_rollups_15m_pkey rename to grid_rollups_15m_history_pkey;
alter table grid_rollups_1h rename to grid_rollups_1h_history;
alter index grid_rollups_1h_pkey rename to grid_rollups_1h_history_pkey;
alter table grid_rollups_1d rename to grid_rollups_1d_history;
alter index grid_rollups_1d_pkey rename to grid_rollups_1d_history_pkey;
delete from grid_rollups_15m_history where bucket >= (select min(ts) from grid_rollups);
delete from grid_rollups_1h_history where bucket >= (select date_trunc('hour', min(ts)) from grid_rollups);
delete from grid_rollups_1d_history where bucket >= (select date_bin('1 day', min(ts), timestamptz '2000-01-01 00:00:00+00') from grid_rollups);

-- Meters: sums and counts, never averages of averages (as the plain tables). Buckets start at
-- 2000-01-01 00:00 UTC multiples, as date_bin does in the plain path.
create materialized view meter_data_15m_agg with (timescaledb.continuous, timescaledb.materialized_only = true) as
select meter_id,
       time_bucket(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00') as bucket,
       coalesce(sum(consumption_kwh), 0) as consumption_kwh,
       coalesce(sum(production_kwh), 0) as production_kwh,
       coalesce(sum(consumption_kvah), 0) as consumption_kvah,
       coalesce(sum(production_kvah), 0) as production_kvah,
       coalesce(sum(reactive_power_kvar), 0) as kvarh,
       sum(avg_voltage) as voltage_sum,
       max(avg_current) as current_max,
       count(*)::integer as readings
from meter_data
group by meter_id, time_bucket(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00')
with no data;

create materialized view meter_data_1h_agg with (timescaledb.continuous, timescaledb.materialized_only = true) as
select meter_id,
       time_bucket(interval '1 hour', bucket, timestamptz '2000-01-01 00:00:00+00') as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       sum(voltage_sum) as voltage_sum,
       max(current_max) as current_max,
       sum(readings)::integer as readings
from meter_data_15m_agg
group by meter_id, time_bucket(interval '1 hour', bucket, timestamptz '2000-01-01 00:00:00+00')
with no data;

create materialized view meter_data_1d_agg with (timescaledb.continuous, timescaledb.materialized_only = true) as
select meter_id,
       time_bucket(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00') as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       sum(voltage_sum) as voltage_sum,
       max(current_max) as current_max,
       sum(readings)::integer as readings
from meter_data_1h_agg
group by meter_id, time_bucket(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00')
with no data;


-- Grid nodes: energies summed; the coincident peak is the highest mean kVA of an interval in the bucket and
-- when it happened (the earliest such interval on a tie, as the plain path picks it).
create materialized view grid_rollups_15m_agg with (timescaledb.continuous, timescaledb.materialized_only = true) as
select node_id,
       time_bucket(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00') as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       max(apparent_kva) as peak_kva,
       (array_agg(ts order by apparent_kva desc, ts))[1] as peak_at,
       count(*)::integer as intervals
from grid_rollups
group by node_id, time_bucket(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00')
with no data;

create materialized view grid_rollups_1h_agg with (timescaledb.continuous, timescaledb.materialized_only = true) as
select node_id,
       time_bucket(interval '1 hour', bucket, timestamptz '2000-01-01 00:00:00+00') as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       max(peak_kva) as peak_kva,
       (array_agg(peak_at order by peak_kva desc, peak_at))[1] as peak_at,
       sum(intervals)::integer as intervals
from grid_rollups_15m_agg
group by node_id, time_bucket(interval '1 hour', bucket, timestamptz '2000-01-01 00:00:00+00')
with no data;

create materialized view grid_rollups_1d_agg with (timescaledb.continuous, timescaledb.materialized_only = true) as
select node_id,
       time_bucket(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00') as bucket,
       sum(consumption_kwh) as consumption_kwh,
       sum(production_kwh) as production_kwh,
       sum(consumption_kvah) as consumption_kvah,
       sum(production_kvah) as production_kvah,
       sum(kvarh) as kvarh,
       max(peak_kva) as peak_kva,
       (array_agg(peak_at order by peak_kva desc, peak_at))[1] as peak_at,
       sum(intervals)::integer as intervals
from grid_rollups_1h_agg
group by node_id, time_bucket(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00')
with no data;

-- The 15-minute aggregates are the largest (96 rows per meter a day): compressed like the raw rows.
alter materialized view meter_data_15m_agg set (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'meter_id',
    timescaledb.compress_orderby = 'bucket'
);
alter materialized view grid_rollups_15m_agg set (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'node_id',
    timescaledb.compress_orderby = 'bucket'
);

-- What readers query: history, then every aggregate bucket history does not have.
create view meter_data_15m as
select * from meter_data_15m_history
union all
select a.* from meter_data_15m_agg a
where not exists (select 1 from meter_data_15m_history h where h.meter_id = a.meter_id and h.bucket = a.bucket);
create view meter_data_1h as
select * from meter_data_1h_history
union all
select a.* from meter_data_1h_agg a
where not exists (select 1 from meter_data_1h_history h where h.meter_id = a.meter_id and h.bucket = a.bucket);
create view meter_data_1d as
select * from meter_data_1d_history
union all
select a.* from meter_data_1d_agg a
where not exists (select 1 from meter_data_1d_history h where h.meter_id = a.meter_id and h.bucket = a.bucket);
create view grid_rollups_15m as
select * from grid_rollups_15m_history
union all
select a.* from grid_rollups_15m_agg a
where not exists (select 1 from grid_rollups_15m_history h where h.node_id = a.node_id and h.bucket = a.bucket);
create view grid_rollups_1h as
select * from grid_rollups_1h_history
union all
select a.* from grid_rollups_1h_agg a
where not exists (select 1 from grid_rollups_1h_history h where h.node_id = a.node_id and h.bucket = a.bucket);
create view grid_rollups_1d as
select * from grid_rollups_1d_history
union all
select a.* from grid_rollups_1d_agg a
where not exists (select 1 from grid_rollups_1d_history h where h.node_id = a.node_id and h.bucket = a.bucket);
