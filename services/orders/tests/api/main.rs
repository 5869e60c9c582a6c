//! API tests of the orders service against a real Postgres.
//!
//! Each test spawns the service on a free port with a database of its own
//! (see `testkit`), drives it over HTTP and asserts on what is in the
//! database afterwards: orders, outbox rows and idempotency keys.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod atomicity;
mod idempotency;
mod state_machine;
mod test_app;
mod tracing_context;
mod validation;
