-- The concert catalog and its seats: inventory's truth.
--
-- `events` are concerts (domain events, not messages). `version` is bumped
-- on every change to an event or its seats; the seat-map cache key carries
-- it, so a cache filled before a change can never be served after it.
create table events (
    id            uuid        not null,
    name          text        not null,
    venue         text        not null,
    starts_at     timestamptz not null,
    sale_opens_at timestamptz not null,
    version       bigint      not null default 1,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint events_pkey primary key (id)
);

-- A seat is AVAILABLE or SOLD to exactly one order. Selling is one
-- conditional update (`where status = 'AVAILABLE'`), so two orders can
-- never both get a seat, whatever the holds or caches said.
create table seats (
    event_id    uuid        not null,
    seat_id     text        not null,
    price_cents integer     not null,
    status      text        not null default 'AVAILABLE',
    order_id    uuid,
    sold_at     timestamptz,
    constraint seats_pkey primary key (event_id, seat_id),
    constraint seats_event_fkey foreign key (event_id) references events (id),
    constraint seats_status_check check (status in ('AVAILABLE', 'SOLD')),
    constraint seats_sold_to_an_order_check check ((status = 'SOLD') = (order_id is not null)),
    constraint seats_price_check check (price_cents >= 0)
);

-- "Which seats did this order get?" (refunds, reports, support).
create index seats_order_id_idx on seats (order_id) where order_id is not null;
