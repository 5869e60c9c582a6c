//! API tests of the orders service against a real Postgres, next to a
//! real inventory service (on real Postgres, NATS and Redis) that verifies
//! the holds of every order.
//!
//! Each test starts both in a `testkit::World` of its own ([`shop::Shop`]),
//! holds seats in inventory, drives orders over HTTP and asserts on what is
//! in the database afterwards: orders, order lines, outbox rows and
//! idempotency keys.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod admission;
mod atomicity;
mod holds;
mod idempotency;
mod openapi;
mod ops;
mod ownership;
mod sale_window;
mod shop;
mod state_machine;
mod stuck;
mod tracing_context;
mod validation;
