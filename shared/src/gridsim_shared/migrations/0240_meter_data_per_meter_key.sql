-- Aggregator: meter_data keyed by meter, found by time through a BRIN index (plain PostgreSQL only).
-- See docs/data.md, "meter_data's layout".
--
-- Before: primary key (ts, meter_id) plus a b-tree (meter_id, ts) for per-meter reads. The per-meter
-- b-tree is the expensive one to maintain (each interval's 10,000 readings land on 10,000 different leaf
-- pages), and it is the one every per-meter read needs (a meter's latest readings, a day of one meter,
-- GET /meter/stream, bills' open day, Home Assistant): it becomes the primary key. The time-ordered b-tree
-- is replaced by a BRIN index on ts: the heap is written in time order (COPY appends each interval), so
-- the min/max ts of each 32-page range finds a window's rows (the 15-minute roll, retention, exports)
-- for a few pages of index instead of one b-tree entry per reading. Measured on an empty table, binary
-- COPY of 1M readings (10k meters x 100 intervals, private PostgreSQL 18): PostgreSQL 6.1 -> 3.6-4.3
-- CPU-s per 1M readings, a 15-minute window read the same (90 ms both, once summarized).
--
-- BRIN summarizes a range only when asked: the aggregator's closer summarizes the new ranges before each
-- roll (brin_summarize_new_values) and, after retention deletes old readings, forgets the summaries of the
-- ranges it emptied so that their pages, when reused, are summarized afresh (closer.py, repository.py).
-- autosummarize stays off: its requests are queued for autovacuum (256 at most) and dropped at this rate.
--
-- On TimescaleDB (0201) meter_data is a hypertable in one-day chunks, each with its own small indexes,
-- compressed by meter after a few days: left as it is.
do $$
begin
    -- Two steps: the catalogue view exists only where the extension does.
    if exists (select 1 from pg_extension where extname = 'timescaledb') then
        if exists (
            select 1 from timescaledb_information.hypertables
            where hypertable_schema = current_schema() and hypertable_name = 'meter_data'
        ) then
            return;
        end if;
    end if;
    alter table meter_data drop constraint meter_data_pkey;
    drop index meter_data_meter_ts;
    alter table meter_data add constraint meter_data_pkey primary key (meter_id, ts);
    create index meter_data_ts_brin on meter_data using brin (ts) with (pages_per_range = 32);
end
$$;
