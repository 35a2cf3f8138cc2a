-- Issue 13 (ownership): meter-sim stored its control, spike, supply and outage events in the aggregator's
-- `events` table. Each writer now owns its own table, and `events` is the view every reader reads (the
-- dashboard, meter-sim's list_events, the aggregator's SLA de-duplication), published here.
-- Ids come from one sequence, so an event's id stays unique across both tables.

alter table events rename to aggregator_events;
alter sequence events_id_seq rename to event_ids;

-- Owner: meter-sim.
create table meter_sim_events (like aggregator_events including all);
alter table meter_sim_events alter column id set default nextval('event_ids');

-- Published read model (owners: aggregator and meter-sim, each for its own rows).
create view events as
    select id, type, severity, sim_time, subject, message, data, created_at from aggregator_events
    union all
    select id, type, severity, sim_time, subject, message, data, created_at from meter_sim_events;
