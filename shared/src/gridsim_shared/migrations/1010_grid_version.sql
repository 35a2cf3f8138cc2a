-- Issue 13 (ownership): the version of the transformer set, bumped by a trigger on meter-sim's grid_nodes,
-- was feasibility's table (transformer_index_version, migration 0400), so meter-sim's writes wrote it.
-- Now meter-sim owns the counter (grid_version) and publishes it; feasibility only reads it.

create table grid_version (
    id      boolean primary key default true check (id),
    version bigint not null default 0
);
insert into grid_version (id, version) select true, coalesce((select version from transformer_index_version), 0);

create function bump_grid_version() returns trigger
language plpgsql as $$
begin
    update grid_version set version = version + 1;
    return null;
end;
$$;

drop trigger grid_nodes_transformer_index_ins_del on grid_nodes;
drop trigger grid_nodes_transformer_index_upd on grid_nodes;
drop trigger grid_nodes_transformer_index_trunc on grid_nodes;
drop function bump_transformer_index_version();
drop table transformer_index_version;

-- Changes to the connected_* columns alone do not bump it: loads are always read fresh.
create trigger grid_nodes_version_ins_del
    after insert or delete on grid_nodes
    for each statement execute function bump_grid_version();
create trigger grid_nodes_version_upd
    after update of code, name, level, latitude, longitude, capacity_kva, city on grid_nodes
    for each statement execute function bump_grid_version();
create trigger grid_nodes_version_trunc
    after truncate on grid_nodes
    for each statement execute function bump_grid_version();
