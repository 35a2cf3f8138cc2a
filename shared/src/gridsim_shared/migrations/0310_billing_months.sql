-- Months billing has closed: the month-close finaliser (gridsim_billing.closing) stores every billable
-- meter's final bill, settles the month's P2P sellers and closes the month to trades, once. A row is
-- written when closing starts (trades are refused from then on) and completed when every bill is stored;
-- a restart finishes a month whose row is not completed. Reads never write (docs/security.md).
create table billing_months (
    month        text primary key check (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    closed_at    timestamptz not null,          -- the simulated time the month was found closed
    completed_at timestamptz,                   -- wall-clock time every bill was stored; null while closing
    bills        integer not null default 0     -- final bills stored by the finaliser
);
