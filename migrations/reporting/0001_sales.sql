-- The sales read model: a projection of ORDER_EVENTS, rebuildable at any
-- time by replaying the stream.
--
-- Rows belong to a generation. The live consumer writes into the active
-- generation; a rebuild fills a new one from the start of the stream,
-- makes it active in one update, catches up, and drops the old one.
create table generations (
    generation integer     not null,
    created_at timestamptz not null default now(),
    constraint generations_pkey primary key (generation)
);

-- One row: which generation the API reads and the live consumer writes.
create table projection_state (
    singleton         boolean not null default true,
    active_generation integer not null,
    constraint projection_state_pkey primary key (singleton),
    constraint projection_state_singleton_check check (singleton),
    constraint projection_state_generation_fkey
        foreign key (active_generation) references generations (generation)
);

insert into generations (generation) values (1);
insert into projection_state (active_generation) values (1);

-- Per concert (domain event) and generation.
create table sales (
    generation    integer     not null,
    event_id      uuid        not null,
    tickets_sold  bigint      not null default 0,
    revenue_cents bigint      not null default 0,
    refunds       bigint      not null default 0,
    updated_at    timestamptz not null default now(),
    constraint sales_pkey primary key (generation, event_id),
    constraint sales_generation_fkey foreign key (generation)
        references generations (generation) on delete cascade
);

-- Which events a generation has counted: the live consumer and a rebuild's
-- catch-up may both see an event; it is counted once per generation.
create table counted (
    generation integer not null,
    message_id uuid    not null,
    constraint counted_pkey primary key (generation, message_id),
    constraint counted_generation_fkey foreign key (generation)
        references generations (generation) on delete cascade
);
