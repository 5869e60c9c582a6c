-- The order aggregate and its lines.
--
-- `version` is the aggregate version: 1 when created, +1 on every state
-- change. Each change writes exactly one outbox event carrying the new
-- version, which is what lets consumers apply an order's events in order.
create table orders (
    id             uuid        not null,
    event_id       uuid        not null, -- the concert; owned by inventory, so no foreign key
    customer_email text        not null,
    status         text        not null,
    version        bigint      not null default 1,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    constraint orders_pkey primary key (id),
    constraint orders_status_check
        check (status in ('PENDING', 'PAID', 'CONFIRMED', 'CANCELLED', 'REFUNDED')),
    constraint orders_version_check check (version >= 1)
);

create table order_lines (
    order_id   uuid not null,
    seat_id    text not null,
    -- The customer's hold on the seat in inventory when ordering; the
    -- fencing token that proves the hold is recorded with the seat issue.
    hold_token uuid not null,
    position   integer not null, -- keeps the customer's order of seats
    constraint order_lines_pkey primary key (order_id, seat_id),
    constraint order_lines_order_fkey foreign key (order_id) references orders (id) on delete cascade
);

-- Idempotency keys: a POST with a key seen before replays the stored
-- response instead of writing again. The row is inserted in the same
-- transaction as the business write, so a key exists if and only if its
-- write committed.
create table idempotency_keys (
    key             text        not null,
    -- sha256 of method, path and canonical body: the same key with a
    -- different request is a client bug and is refused.
    request_hash    bytea       not null,
    -- Empty only inside the transaction that claims the key: the response
    -- is stored before that transaction commits, so every committed row
    -- has one. The uncommitted row is what makes a concurrent request with
    -- the same key wait, then replay.
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null,
    constraint idempotency_keys_pkey primary key (key),
    constraint idempotency_keys_response_check
        check ((response_status is null) = (response_body is null))
);

-- The sweeper deletes expired keys in small batches, oldest first.
create index idempotency_keys_expires_at_idx on idempotency_keys (expires_at);
