-- Issue 17: a complying participant's response is a flexible-load window in meter-sim (its loads model's
-- Flex hook, with the loads' own rebound), no longer a pair of spikes. Owner: utility. The spike columns
-- stay for events dispatched before this change.
alter table dr_participation add column flex_id bigint;
