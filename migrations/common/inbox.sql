-- Idempotent consumer (the `consumer` crate). Every consuming service has
-- these two tables; its migrations folder links to this file, so there is
-- one definition of them.
--
-- inbox: one row per (consumer, event) applied. It is inserted in the same
-- transaction as the event's effect, so "already in the inbox" means
-- "effect already committed": a redelivered or republished event is acked
-- and skipped.
create table inbox (
    consumer     text        not null,
    event_id     uuid        not null,
    processed_at timestamptz not null default now(),
    constraint inbox_pkey primary key (consumer, event_id)
);

-- consumer_positions: the last aggregate version each consumer applied,
-- per aggregate. An event at or below it is stale (skip); one above it + 1
-- arrived early (wait for the gap to fill); only the next one is applied.
create table consumer_positions (
    consumer       text        not null,
    aggregate_type text        not null,
    aggregate_id   uuid        not null,
    version        bigint      not null,
    updated_at     timestamptz not null default now(),
    constraint consumer_positions_pkey primary key (consumer, aggregate_type, aggregate_id)
);

-- The inbox only needs to outlive redeliveries and the stream's retention
-- (7 days). A sweeper that deletes older rows, oldest first, will use this
-- index; until it exists the inbox grows with the traffic. Sweeping is safe
-- for versioned events: consumer_positions turns a swept redelivery into
-- a stale one.
create index inbox_processed_at_idx on inbox (processed_at);
