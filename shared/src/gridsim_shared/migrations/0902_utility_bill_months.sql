-- Months whose dynamic bills the utility has finalised (gridsim_utility.handlers.close_dynamic_months):
-- every billable meter's dynamic bill is stored in dynamic_bills, then the month is recorded here, once.
-- A read of a dynamic bill never stores one (docs/security.md).
create table utility_bill_months (
    month        text primary key check (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    closed_at    timestamptz not null,          -- the simulated time the month was found closed
    bills        integer not null default 0,    -- dynamic bills stored for the month
    completed_at timestamptz not null default now()
);
