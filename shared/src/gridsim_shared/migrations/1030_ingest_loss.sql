-- Loss accounting (issue 16; docs/operations.md, "Loss accounting"). Owner: the aggregator.
-- Every batch says how many batches and readings its meter-sim shard published for the interval; ingest
-- records that here, in the transaction that stores the batch, so the closer can compare it with what
-- was stored: a broker that drops messages (a stock Mosquitto's max_queued_messages) no longer loses
-- readings in silence.
create table ingest_expected (
    ts       timestamptz not null,
    shard    text not null,
    batches  integer not null,
    readings integer not null,
    primary key (ts, shard)
);

-- Intervals closed with fewer readings stored than their shards published: the readings missing. A late
-- arrival recomputes the interval and shrinks (or deletes) its row.
create table ingest_gaps (
    ts          timestamptz primary key,
    expected    integer not null,
    stored      integer not null,
    detected_at timestamptz not null default now()
);
