-- Dead letters: messages a consumer could not use (malformed, or refused by the database for their
-- content), set aside with the reason instead of being acknowledged away. Owner: the aggregator (the
-- only consumer that stores what it receives); docs/operations.md.
create table dead_letters (
    id          bigint generated always as identity primary key,
    received_at timestamptz not null default now(),
    service     text not null,
    topic       text not null,
    reason      text not null,
    payload     bytea not null
);
create index dead_letters_received_at on dead_letters (received_at);
