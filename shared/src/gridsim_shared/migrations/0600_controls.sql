-- Controls (issue 4): timed load and source spikes, and generators (a solar farm) added at a transformer
-- or feeder with a meter of their own. Owner: meter-sim. Every change is also in control_log.
create table spikes (
    id                 bigserial primary key,
    kind               text not null check (kind in ('load', 'source', 'generator')),
    scope              text not null check (scope in ('meter', 'transformer', 'feeder', 'pincode')),
    -- The target: a meter, a grid node (transformer or feeder), or a pincode. Deleting the target
    -- deletes its spikes (a reset of the world empties this table through these keys).
    meter_id           bigint references meters (id) on delete cascade,
    node_id            bigint references grid_nodes (id) on delete cascade,
    pincode            text,
    multiplier         double precision check (multiplier > 0),
    kw                 double precision check (kw > 0),
    start_time         timestamptz not null,
    duration_s         integer check (duration_s > 0),
    shape              text not null check (shape in ('step', 'ramp', 'triangle', 'exp_decay')),
    generator          text check (generator in ('solar', 'constant')),
    name               text,
    -- A generator's own meter (and, at a feeder, its own step-up transformer).
    generator_meter_id bigint references meters (id) on delete cascade,
    generator_node_id  bigint references grid_nodes (id) on delete set null,
    cancelled_at       timestamptz,
    created_at         timestamptz not null default now(),
    check ((multiplier is null) <> (kw is null)),
    check ((scope = 'meter') = (meter_id is not null)),
    check ((scope in ('transformer', 'feeder')) = (node_id is not null)),
    check ((scope = 'pincode') = (pincode is not null)),
    check ((kind = 'generator') = (generator_meter_id is not null))
);
create index spikes_start on spikes (start_time);
create index control_log_meter_ids on control_log using gin (meter_ids);
create index events_subject on events (subject, sim_time);
