-- Transactional outbox (the `outbox` crate writes it, the relay reads it).
-- Every publishing service's migrations folder links to this file.
--
-- An event row commits in the same transaction as
-- the state change it describes, so a fact never leaves without its change
-- and a change never happens without its fact. The relay publishes rows to
-- JetStream and deletes them (or marks them, with a retention period);
-- nothing else reads this table.
create table outbox (
    id                bigint      generated always as identity,
    event_id          uuid        not null, -- envelope id = Nats-Msg-Id = consumer inbox key
    event_type        text        not null,
    schema_version    integer     not null,
    aggregate_type    text        not null,
    aggregate_id      uuid        not null,
    aggregate_version bigint      not null,
    subject           text        not null, -- without the deployment prefix
    -- The whole envelope, exactly as it is published. `json`, not `jsonb`:
    -- nothing queries inside it, and `json` keeps the text as written, so
    -- the relay reads it back without re-serialising it (measured faster).
    payload           json        not null,
    -- W3C trace context of the transaction that wrote the row, so the
    -- relay's publish span continues the request's trace.
    traceparent       text,
    tracestate        text,
    created_at        timestamptz not null default now(),
    -- Set only when the relay keeps published rows for a retention period
    -- (RELAY_RETENTION > 0); by default it deletes them once acked.
    published_at      timestamptz,
    attempts          integer     not null default 0,
    last_error        text,
    -- After a failure of the row's own, the relay leaves it alone until
    -- then (exponential backoff), instead of retrying it on every pass.
    next_attempt_at   timestamptz,
    -- Set when the relay gives up on a row after its last attempt; a parked
    -- row holds back later events of its aggregate until a human acts.
    parked_at         timestamptz,
    constraint outbox_pkey primary key (id),
    constraint outbox_event_id_key unique (event_id),
    -- One event per aggregate version: two writers racing on one aggregate
    -- cannot both emit "version 3".
    constraint outbox_aggregate_version_key
        unique (aggregate_type, aggregate_id, aggregate_version)
);

-- The relay claims only unpublished rows; this partial index keeps that
-- scan proportional to the backlog rather than to the table's history.
create index outbox_unpublished_idx on outbox (id) where published_at is null;

-- The relay's per-aggregate ordering check ("is an earlier version of this
-- aggregate still unpublished?") is a probe into this partial index.
create index outbox_unpublished_by_aggregate_idx
    on outbox (aggregate_type, aggregate_id, aggregate_version)
    where published_at is null;
