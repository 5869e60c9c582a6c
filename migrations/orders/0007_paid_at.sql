-- When an order became PAID: the start of the saga's wait for inventory's
-- answer (`SeatsConfirmed` → CONFIRMED, `SeatAllocationRejected` →
-- REFUNDED). An order still PAID long after this is a stuck saga: its
-- `OrderPaid` or inventory's answer is lost somewhere (a dead letter, a
-- parked outbox row, a consumer that is down). The orders service counts
-- those on `/metrics` and `ticketctl orders stuck` lists them (see
-- `services/orders/src/stuck.rs`).
--
-- Its own column rather than `updated_at`: the deadline must not move
-- when something else about a paid order changes. Kept after the order
-- leaves PAID, as the record of when it was paid.
alter table orders add column paid_at timestamptz;

-- Orders paid before this column: while an order is PAID its last change
-- was the payment, so `updated_at` is when it was paid. Orders already past
-- PAID keep no time (nothing waits on them).
update orders set paid_at = updated_at where status = 'PAID';

-- The stuck-saga query ("PAID, and paid before now − deadline") and its
-- oldest row are a range scan of this index, which holds only the orders
-- waiting for inventory right now: small, however many orders there are.
create index orders_paid_waiting_idx on orders (paid_at) where status = 'PAID';
