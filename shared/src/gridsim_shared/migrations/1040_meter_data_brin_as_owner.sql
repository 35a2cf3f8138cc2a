-- Aggregator: summarize and desummarize meter_data's BRIN ranges as the table's owner (plain PostgreSQL).
-- See docs/data.md, "meter_data's layout", and docs/security.md.
--
-- brin_summarize_new_values and brin_desummarize_range may be called only by the index's owner (the
-- user that ran the migrations), while the aggregator connects as gridsim_aggregator: its closer's
-- summarize before each roll failed with "must be owner of index meter_data_ts_brin", and the first
-- window roll after 15 simulated minutes stopped. These two functions run as their owner
-- (security definer, search_path pinned to this schema) and do one thing each on this index only;
-- execute is revoked from public and granted to the aggregator's role by roles.py.
do $$
begin
    if not exists (
        select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = current_schema() and c.relname = 'meter_data_ts_brin'
    ) then
        return;  -- TimescaleDB: meter_data is a hypertable without this index (0240)
    end if;
    execute format(
        'create function %I.meter_data_brin_summarize() returns integer language sql security definer'
        ' set search_path = %I, pg_temp as %L',
        current_schema(), current_schema(),
        format('select brin_summarize_new_values(%L::regclass)', format('%I.meter_data_ts_brin', current_schema()))
    );
    execute format(
        'create function %I.meter_data_brin_desummarize(block bigint) returns void language sql'
        ' security definer set search_path = %I, pg_temp as %L',
        current_schema(), current_schema(),
        format('select brin_desummarize_range(%L::regclass, block)', format('%I.meter_data_ts_brin', current_schema()))
    );
    execute format('revoke execute on function %I.meter_data_brin_summarize() from public', current_schema());
    execute format(
        'revoke execute on function %I.meter_data_brin_desummarize(bigint) from public', current_schema()
    );
end
$$;
