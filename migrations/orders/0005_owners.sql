-- Orders belong to the customer who created them.
--
-- The customer is the `sub` of the verified bearer token, never a field
-- of the request. Reads, payments and cancellations filter on it, so an
-- order id alone reveals nothing: another customer's order is "not found".
-- Orders written before identity existed have no owner and are reachable
-- by no customer (only by the system's own reactions).
alter table orders add column customer_id uuid;

-- Idempotency keys are scoped per customer: two customers who happen to
-- pick the same key (or one who guesses another's) never replay each
-- other's responses. Keys stored before identity belong to the nil
-- customer, which no token names, and expire as before.
alter table idempotency_keys
    add column customer_id uuid not null default '00000000-0000-0000-0000-000000000000';
alter table idempotency_keys alter column customer_id drop default;
alter table idempotency_keys drop constraint idempotency_keys_pkey;
alter table idempotency_keys add constraint idempotency_keys_pkey primary key (customer_id, key);

-- Order lines keep the hold token they were created from (which hold an
-- order came from is worth an audit trail), but responses and events no
-- longer carry it: it releases a hold only together with the owner's token.
comment on column order_lines.hold_token is
    'the hold the line was ordered with; internal, never in responses or events';
