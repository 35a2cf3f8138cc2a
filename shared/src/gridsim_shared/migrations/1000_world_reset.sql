-- Issue 13 (ownership): a world reset is handled by each owner for its own tables (docs/architecture.md).
-- meter-sim counts its resets; every owner of data derived from the world remembers the reset it last
-- handled, so one that was not running during a reset catches up when it starts.

-- Owner: meter-sim. Bumped in the reset's own transaction (one row).
create table world_state (
    id         boolean primary key default true check (id),
    generation bigint not null default 0,
    reset_at   timestamptz
);
insert into world_state (id) values (true);

-- Owner: aggregator. The reset whose readings, rollups and thermal state it last emptied.
alter table aggregator_state add column world_generation bigint not null default 0;

-- Owner: feasibility. The reset whose connection requests it last emptied (one row).
create table feasibility_state (
    id               boolean primary key default true check (id),
    world_generation bigint not null default 0
);
insert into feasibility_state (id) values (true);

-- A connection names meter-sim's transformer, meter and ER by id only: a foreign key into another
-- owner's table made meter-sim's deletes write (set null) or be blocked by (restrict) feasibility's rows.
alter table connections drop constraint if exists connections_transformer_id_fkey;
alter table connections drop constraint if exists connections_meter_id_fkey;
alter table connections drop constraint if exists connections_er_id_fkey;
