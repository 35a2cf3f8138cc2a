-- Issue 13 (ownership): each service's relations live in a schema of their own, which only its role
-- writes; the runner moves each relation there after the migrations (gridsim_shared.roles, db.py).
-- Two things here would not survive that move as they are:
--
-- The events' id sequence (1020) belonged to aggregator_events.id and would move with it into the
-- aggregator's schema, where meter-sim, which draws its events' ids from it too, may not write. It now
-- belongs to no table and stays in the deployment's schema beside the `events` view (roles.SHARED_SEQUENCES).
alter sequence event_ids owned by none;

-- The BRIN functions of 1040 named this schema in their pinned search_path and in their body, a string
-- parsed at each call: moved, they would look for the index where it no longer is. A BEGIN ATOMIC body is
-- parsed here, once, so the index is held by its oid (and the function depends on it), wherever the
-- table goes; the search path pins the system catalog only. Execute stays revoked from public.
do $$
begin
    if to_regclass('meter_data_ts_brin') is null then
        return;  -- TimescaleDB: meter_data is a hypertable without this index (0240)
    end if;
    execute $f$
        create or replace function meter_data_brin_summarize() returns integer
            language sql security definer set search_path = pg_catalog, pg_temp
            begin atomic
                select brin_summarize_new_values('meter_data_ts_brin'::regclass);
            end
    $f$;
    execute $f$
        create or replace function meter_data_brin_desummarize(block bigint) returns void
            language sql security definer set search_path = pg_catalog, pg_temp
            begin atomic
                select brin_desummarize_range('meter_data_ts_brin'::regclass, block);
            end
    $f$;
end
$$;
