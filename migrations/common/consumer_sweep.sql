-- The consumer tables' sweeper (`shared/consumer/src/sweeper.rs`), linked
-- from each consuming service's folder like inbox.sql.
--
-- Each durable consumer deletes its own inbox rows after 14 days
-- (inbox_processed_at_idx, from inbox.sql, finds them) and its positions
-- after 90 days without a new version of their aggregate. This index finds
-- those oldest positions without reading the whole table on every batch.
create index consumer_positions_updated_at_idx on consumer_positions (updated_at);
