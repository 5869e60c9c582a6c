-- When a generation counted each event, so that old rows can be swept
-- (`reporting::rebuild::sweep_counted`). A row only matters while the same
-- event may reach the generation again, within the stream's 7 days; the
-- rows of retired generations go with them (on delete cascade).
--
-- Existing rows take the time of this migration: they are swept one
-- retention period from now, never early.
alter table counted add column counted_at timestamptz not null default now();

-- The sweeper deletes the oldest rows first.
create index counted_counted_at_idx on counted (counted_at);
