-- A worker claims an e-mail before sending it, in a statement of its own,
-- so that it holds no transaction (and no row lock) while it waits for the
-- rate limit or the provider. Until `sending_until`, other workers leave
-- the e-mail alone; a claim whose worker died lapses, and the command's
-- next delivery sends it (services/notification/src/worker.rs).
alter table notifications add column sending_until timestamptz;
