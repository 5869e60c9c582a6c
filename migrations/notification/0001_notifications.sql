-- One row per e-mail the system owes a customer: at most one per order and
-- kind (the primary key), however often the triggering event is delivered.
-- The translator inserts the row and its SendEmail command in one
-- transaction; a worker sets sent_at in the transaction that acks the
-- command.
create table notifications (
    order_id     uuid        not null,
    kind         text        not null,
    recipient    text        not null,
    subject      text        not null,
    body         text        not null,
    requested_at timestamptz not null default now(),
    sent_at      timestamptz,
    constraint notifications_pkey primary key (order_id, kind),
    constraint notifications_kind_check
        check (kind in ('payment_received', 'order_confirmed', 'order_refunded'))
);
