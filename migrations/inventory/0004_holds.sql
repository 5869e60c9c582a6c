-- Fencing tokens for seat holds.
--
-- Holds live in Redis (fast, shared, expiring by themselves), but Redis is
-- not the judge: it can lose its data, and a client can pause past its
-- hold's expiry and come back believing it still holds the seat. So every
-- hold carries a fencing token, and Postgres decides with it:
--
-- * tokens are drawn from a Postgres sequence, so they only ever grow,
--   whatever Redis forgets (a per-seat counter in Redis would restart at
--   zero after a data loss and hand out tokens that look old);
-- * `seats.hold_fence` records the token of the latest hold *granted* on the
--   seat. A hold is granted only if its token is greater than the recorded
--   one, so a holder that lost its hold (expiry, Redis restart) and comes
--   back late cannot overwrite a newer hold's token;
-- * selling a held seat requires the order's token to equal `hold_fence`:
--   of two orders for one seat, only the current holder's can win, even if
--   the other order was created first (see `allocation.rs`).
--
-- Tokens drawn for holds that were then refused are simply skipped: the
-- sequence need not be gapless, only increasing.
create sequence hold_fences as bigint;

alter table seats add column hold_fence bigint;

-- A concert's sale opens before it starts; checked here so that a partial
-- update (`PATCH /events/{id}` with only one of the two) cannot break it.
alter table events add constraint events_sale_before_start_check
    check (sale_opens_at <= starts_at);
