//! Inventory against real Postgres, NATS and Redis: the caching and
//! coordination patterns of `docs/design.md` §6, each proven by a test that fails if
//! the pattern breaks.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod admission;
mod allocation;
mod catalog;
mod cluster;
mod holds;
mod openapi;
mod outage;
mod seat_map;
mod support;
