-- Billing: P2P trades, their settlement against the seller's metered production, and final bills.
-- Owner: billing. Money and energy are numeric (exact); amounts are rounded once, to two decimals, when a
-- bill is made. Meter ids carry no foreign key on purpose: a trade or a bill is a financial record and must
-- outlive a meter that meter-sim deletes, so the meter's code is kept beside its id.

create table p2p_trades (
    id                 uuid primary key default gen_random_uuid(),
    buyer_meter_id     bigint not null,
    buyer_meter_code   text not null,
    seller_meter_id    bigint not null,
    seller_meter_code  text not null,
    units_kwh          numeric(18, 6) not null check (units_kwh > 0),
    price_per_kwh      numeric(18, 6) not null check (price_per_kwh > 0),
    -- Simulated time of the trade; `month` is its billing month ('YYYY-MM') in billing.timezone.
    ts                 timestamptz not null,
    month              text not null check (month ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    -- Set when the seller's month is settled (first come, first served against its production).
    delivered_kwh      numeric(18, 6) check (delivered_kwh >= 0 and delivered_kwh <= units_kwh),
    created_at         timestamptz not null default now(),
    check (buyer_meter_id <> seller_meter_id)
);
create index p2p_trades_seller_month on p2p_trades (seller_meter_id, month, ts);
create index p2p_trades_buyer_month on p2p_trades (buyer_meter_id, month, ts);
create index p2p_trades_month on p2p_trades (month, ts);

-- One row per seller and ended month once its trades are settled; no trade may be added after.
create table p2p_settlements (
    seller_meter_id  bigint not null,
    month            text not null check (month ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    produced_kwh     numeric(18, 6) not null check (produced_kwh >= 0),
    contracted_kwh   numeric(18, 6) not null check (contracted_kwh >= 0),
    delivered_kwh    numeric(18, 6) not null check (delivered_kwh >= 0),
    settled_at       timestamptz not null default now(),
    primary key (seller_meter_id, month)
);

-- Final bills only (a provisional bill of the running month is computed on every request, never stored).
-- Stored once per meter and month, then returned unchanged.
create table bills (
    id                      uuid primary key default gen_random_uuid(),
    meter_id                bigint not null,
    meter_code              text not null,
    type                    text not null check (type in ('consumer', 'prosumer')),
    month                   text not null check (month ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    status                  text not null default 'final' check (status = 'final'),
    period_start            timestamptz not null,
    period_end              timestamptz not null,
    currency                text not null,
    tariff                  text not null check (tariff in ('flat', 'tou')),
    total_consumed_kwh      numeric(18, 6) not null,
    total_produced_kwh      numeric(18, 6) not null,
    p2p_kwh                 numeric(18, 6) not null,
    p2p_bought_kwh          numeric(18, 6) not null,
    p2p_sold_kwh            numeric(18, 6) not null,
    p2p_contracted_kwh      numeric(18, 6) not null,
    grid_units_used_kwh     numeric(18, 6) not null,
    grid_units_exported_kwh numeric(18, 6) not null,
    grid_peak_kwh           numeric(18, 6),
    grid_offpeak_kwh        numeric(18, 6),
    grid_rate               numeric(18, 6) not null,
    grid_credit_rate        numeric(18, 6) not null,
    tou_peak_rate           numeric(18, 6),
    tou_peak_start_hour     integer,
    tou_peak_end_hour       integer,
    grid_bill               numeric(14, 2) not null,
    grid_peak_cost          numeric(14, 2),
    grid_offpeak_cost       numeric(14, 2),
    grid_earning            numeric(14, 2) not null,
    p2p_cost                numeric(14, 2) not null,
    p2p_earning             numeric(14, 2) not null,
    amount_due              numeric(14, 2) not null,
    generated_at            timestamptz not null,
    created_at              timestamptz not null default now(),
    unique (meter_id, month)
);
create index bills_month on bills (month, meter_id);
