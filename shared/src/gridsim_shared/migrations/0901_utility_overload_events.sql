-- Utility: a programme can also be dispatched automatically when one of its participants' transformers
-- is reported overloaded (the aggregator's transformer_overload event); see docs/utility.md.
alter table dr_programs add column auto_overload boolean not null default false;
