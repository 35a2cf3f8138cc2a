-- gridsim core schema: the grid, energy resources, meters, the clock, logs, readings and their rollups.
-- Plain PostgreSQL 15 SQL; TimescaleDB features are switched on by *.timescale.sql files when present.
-- Each table has one owning service that writes it (see docs/architecture.md).

-- Grid nodes: utility -> feeder (or substation) -> transformer. Owner: meter-sim; feasibility updates the
-- connected_* columns of transformers when it approves a connection.
create table grid_nodes (
    id                       bigserial primary key,
    code                     text not null unique check (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name                     text not null,
    level                    text not null check (level in ('utility', 'feeder', 'transformer')),
    parent_id                bigint references grid_nodes (id) on delete restrict,
    capacity_kva             double precision check (capacity_kva > 0),
    city                     text,
    state                    text,
    latitude                 double precision check (latitude between -90 and 90),
    longitude                double precision check (longitude between -180 and 180),
    pincode                  text,
    connected_consumption_kw double precision not null default 0 check (connected_consumption_kw >= 0),
    connected_production_kw  double precision not null default 0 check (connected_production_kw >= 0),
    emergency_service        boolean not null default false,
    created_at               timestamptz not null default now(),
    check ((level = 'utility') = (parent_id is null))
);
create index grid_nodes_parent on grid_nodes (parent_id);

-- The appliance catalogue: the seed's twelve (ids 1-12 in the seed chart's order), then extras from the
-- domain facts. base_kwh_per_min is the seed's per-minute energy at rated power.
create table appliances (
    id               integer primary key,
    name             text not null unique,
    aliases          text[] not null default '{}',
    power_w          double precision not null check (power_w > 0),
    base_kwh_per_min double precision not null check (base_kwh_per_min > 0),
    role             text not null check (role in ('consumption', 'production')),
    profile          text not null,
    power_factor     double precision not null check (power_factor > 0 and power_factor <= 1),
    description      text not null default ''
);
insert into appliances (id, name, aliases, power_w, base_kwh_per_min, role, profile, power_factor, description) values
    (1,  'LED Bulb (10W)',            '{"LED Bulb","Bulb","Light","Lights"}', 10,   0.00017, 'consumption', 'lighting',   0.9,  'Very low-power appliance'),
    (2,  'Ceiling Fan',               '{"Fan"}',                              75,   0.00125, 'consumption', 'cooling',    0.85, 'Common residential usage'),
    (3,  'Television (LED)',          '{"Television","TV"}',                  120,  0.002,   'consumption', 'evening',    0.85, 'Entertainment'),
    (4,  'Refrigerator',              '{"Fridge"}',                           200,  0.00333, 'consumption', 'fridge',     0.85, 'Compressor cycles ON/OFF'),
    (5,  'Laptop Charger',            '{"Laptop"}',                           65,   0.00108, 'consumption', 'daytime',    0.7,  'Varies by model'),
    (6,  'Microwave Oven',            '{"Microwave","Oven"}',                 1000, 0.01667, 'consumption', 'cooking',    0.98, 'High-power but short usage'),
    (7,  'Washing Machine',           '{"Washer"}',                           500,  0.00833, 'consumption', 'laundry',    0.85, 'Motor + water heater load'),
    (8,  'Air Conditioner (1.5 Ton)', '{"AC","Air Conditioner"}',             1500, 0.025,   'consumption', 'ac',         0.85, 'High-power appliance'),
    (9,  'Room Heater',               '{"Heater"}',                           2000, 0.03333, 'consumption', 'heating',    1.0,  'Constant high power'),
    (10, 'Electric Geyser',           '{"Geyser","Water Heater"}',            3000, 0.05,    'consumption', 'geyser',     1.0,  'Very high-demand heating'),
    (11, 'Water Pump',                '{"Pump"}',                             750,  0.0125,  'consumption', 'pump',       0.85, 'Moderate mechanical load'),
    (12, 'Solar Panel (production)',  '{"Solar Panel","Solar","PV"}',         1200, 0.02,    'production',  'solar',      1.0,  'Only for Production'),
    (13, 'EV Charger (7.2 kW)',       '{"EV Charger","EV"}',                  7200, 0.12,    'consumption', 'ev',         0.99, 'SAE J1772 Level 2 home charger'),
    (14, 'Dishwasher',                '{}',                                   1131, 0.01885, 'consumption', 'cooking',    0.85, 'CREST: 60 min cycles'),
    (15, 'Electric Kettle',           '{"Kettle"}',                           2000, 0.03333, 'consumption', 'cooking',    1.0,  'CREST: 3 min cycles'),
    (16, 'Tumble Dryer',              '{"Dryer"}',                            2500, 0.04167, 'consumption', 'laundry',    0.85, 'CREST: 60 min cycles'),
    (17, 'Desktop PC',                '{"PC","Computer"}',                    141,  0.00235, 'consumption', 'daytime',    0.85, 'CREST: 300 min sessions');

-- Energy resources (households, offices, ...). Owner: meter-sim.
create table energy_resources (
    id         bigserial primary key,
    name       text not null check (length(name) between 1 and 200),
    type       text not null check (type in ('consumer', 'prosumer')),
    kind       text not null default 'home'
               check (kind in ('home', 'apartment_complex', 'office', 'shop', 'industrial')),
    -- 'flat' reproduces the seed's base_kWh x K exactly; 'realistic' shapes the day.
    profile    text not null default 'realistic' check (profile in ('realistic', 'flat')),
    city       text,
    state      text,
    latitude   double precision check (latitude between -90 and 90),
    longitude  double precision check (longitude between -180 and 180),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- DERs: appliance instances (or groups of identical ones) behind an ER's meter. Solar panels go through
-- purchased -> installed -> connected; only a connected, switched-on DER produces or consumes.
create table ders (
    id          bigserial primary key,
    er_id       bigint not null references energy_resources (id) on delete cascade,
    appliance_id integer not null references appliances (id),
    quantity    integer not null default 1 check (quantity >= 1),
    switched_on boolean not null default true,
    lifecycle   text not null default 'connected' check (lifecycle in ('purchased', 'installed', 'connected')),
    capacity_kw double precision check (capacity_kw > 0),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index ders_er on ders (er_id);

-- Meters. Owner: meter-sim. A meter hangs from a transformer; parent meters aggregate their children.
create table meters (
    id                      bigserial primary key,
    code                    text not null check (code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$'),
    parent_id               bigint references meters (id) on delete restrict,
    transformer_id          bigint references grid_nodes (id) on delete restrict,
    er_id                   bigint unique references energy_resources (id) on delete set null,
    load_factor_consumption double precision not null default 1 check (load_factor_consumption >= 0),
    load_factor_production  double precision not null default 0 check (load_factor_production >= 0),
    meter_type              text not null default 'Smart' check (meter_type in ('1-Ph', '3-Ph', 'Smart', 'net-meter')),
    city                    text,
    state                   text,
    latitude                double precision check (latitude between -90 and 90),
    longitude               double precision check (longitude between -180 and 180),
    pincode                 text,
    status                  text not null default 'online' check (status in ('online', 'offline', 'tampered', 'fault')),
    max_capacity_kw         double precision,
    dfp_subscription_id     text,
    linked_at               timestamptz,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now(),
    check (parent_id is distinct from id)
);
-- Codes are unique ignoring case: the topic level is the lower-cased code.
create unique index meters_code_ci on meters (lower(code));
create index meters_parent on meters (parent_id);
create index meters_transformer on meters (transformer_id);
create index meters_pincode on meters (pincode);

-- The simulation clock: one row. Owner: meter-sim (the instance that owns the clock).
create table simulation_clock (
    id                boolean primary key default true check (id),
    current_datetime  timestamptz not null,
    tick              bigint not null default 0,
    speed             double precision not null check (speed > 0),
    interval_s        integer not null check (interval_s > 0),
    state             text not null check (state in ('running', 'paused')),
    updated_at        timestamptz not null default now()
);

-- Every control change (load factor, spike, DER, clock) with the simulated time it took effect.
create table control_log (
    id          bigserial primary key,
    sim_time    timestamptz not null,
    action      text not null,
    target      jsonb not null default '{}',
    params      jsonb not null default '{}',
    meter_ids   bigint[] not null default '{}',
    created_at  timestamptz not null default now()
);
create index control_log_sim_time on control_log (sim_time);

-- Grid and meter events (overload, voltage, tamper, fault, outage, spike).
create table events (
    id         bigserial primary key,
    type       text not null,
    severity   text not null check (severity in ('info', 'warning', 'critical')),
    sim_time   timestamptz not null,
    subject    text not null,
    message    text not null,
    data       jsonb not null default '{}',
    created_at timestamptz not null default now()
);
create index events_sim_time on events (sim_time);

-- Readings, one row per meter per interval (leaves from meter-sim, parents from the aggregator).
-- Owner: aggregator. (ts, meter_id) keeps COPY fast as the table grows; the second index serves per-meter reads.
create table meter_data (
    ts                  timestamptz not null,
    meter_id            bigint not null,
    consumption_kwh     double precision,
    production_kwh      double precision,
    consumption_kvah    double precision,
    production_kvah     double precision,
    avg_current         double precision not null,
    avg_voltage         double precision not null,
    reactive_power_kvar double precision,
    power_factor        double precision,
    is_parent           boolean not null default false,
    partial             boolean not null default false,
    primary key (ts, meter_id)
);
create index meter_data_meter_ts on meter_data (meter_id, ts);

-- Time rollups of meter_data for every meter (15 minutes, hour, day): sums and counts, never averages of
-- averages. Owner: aggregator (tables on plain PostgreSQL; continuous aggregates where TimescaleDB is).
-- Bills and dashboards read these, never a month of minutes.
create table meter_data_15m (
    meter_id         bigint not null,
    bucket           timestamptz not null,
    consumption_kwh  double precision not null default 0,
    production_kwh   double precision not null default 0,
    consumption_kvah double precision not null default 0,
    production_kvah  double precision not null default 0,
    kvarh            double precision not null default 0,
    voltage_sum      double precision not null default 0,
    current_max      double precision not null default 0,
    readings         integer not null default 0,
    primary key (meter_id, bucket)
);
create table meter_data_1h (like meter_data_15m including all);
create table meter_data_1d (like meter_data_15m including all);
