-- meter-sim: the clock row keeps `last_published` (the last interval whose readings were all published
-- and acknowledged by the broker), written with the rest of the row. A restarted meter-sim forgot it:
-- its clock said null until the next interval was published, so whoever compares the aggregator's
-- watermark with it (the chaos campaign's recovery probe, a follower shard deciding whether the owner's
-- clock was published through or jumped) saw a clock that had published nothing. Null: nothing yet.
alter table simulation_clock add column last_published timestamptz;
