-- Feasibility: connection requests (the seed's "Connection" table) and a version counter for the
-- transformer positions the service keeps in memory. Owner: feasibility.

-- One row per POST /connection. The decision and the row are written in one transaction, so a row is
-- 'approved' (with its transformer) or 'rejected' (with the seed's reason); 'pending' is the seed's
-- initial state and the column default.
create table connections (
    id                       uuid primary key default gen_random_uuid(),
    type                     text not null check (type in ('consumer', 'prosumer')),
    requested_consumption_kw double precision not null check (requested_consumption_kw >= 0),
    requested_production_kw  double precision not null default 0 check (requested_production_kw >= 0),
    latitude                 double precision not null check (latitude between -90 and 90),
    longitude                double precision not null check (longitude between -180 and 180),
    status                   text not null default 'pending' check (status in ('pending', 'approved', 'rejected')),
    reason                   text,
    -- why nothing fitted: consumption, production or none_in_radius (null when approved)
    limiting                 text check (limiting in ('consumption', 'production', 'none_in_radius')),
    transformer_id           bigint references grid_nodes (id) on delete restrict,
    distance_meters          double precision,
    decided_on               text not null default 'nameplate' check (decided_on in ('nameplate', 'measured')),
    -- the meter and ER created for the connection when the request asked for them ("closing the loop")
    meter_id                 bigint references meters (id) on delete set null,
    er_id                    bigint references energy_resources (id) on delete set null,
    created_at               timestamptz not null default now(),
    check (type = 'prosumer' or requested_production_kw = 0),
    check ((status = 'approved') = (transformer_id is not null)),
    check (status <> 'rejected' or reason is not null)
);
create index connections_created on connections (created_at desc);
create index connections_transformer on connections (transformer_id);

-- Bumped by any change to grid nodes that can move, add, remove or resize a transformer. The service
-- compares it with the version of its in-memory positions on every request and reloads when it moved.
-- Changes to the connected_* columns alone do not bump it: loads are always read fresh.
create table transformer_index_version (
    id      boolean primary key default true check (id),
    version bigint not null default 0
);
insert into transformer_index_version (id, version) values (true, 0);

create function bump_transformer_index_version() returns trigger
language plpgsql as $$
begin
    update transformer_index_version set version = version + 1;
    return null;
end;
$$;

create trigger grid_nodes_transformer_index_ins_del
    after insert or delete on grid_nodes
    for each statement execute function bump_transformer_index_version();
create trigger grid_nodes_transformer_index_upd
    after update of code, name, level, latitude, longitude, capacity_kva, city on grid_nodes
    for each statement execute function bump_transformer_index_version();
create trigger grid_nodes_transformer_index_trunc
    after truncate on grid_nodes
    for each statement execute function bump_transformer_index_version();
