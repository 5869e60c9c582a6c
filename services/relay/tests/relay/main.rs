//! Relay tests against a real Postgres and a real NATS JetStream.
//!
//! Each test has its own testkit world: a relay database with the orders
//! schema (whose outbox table the relay serves) and its own stream prefix;
//! it asserts on what ends up in the stream: every event once, in order
//! per aggregate.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;
mod ops;
mod ordering;
mod outages;
mod poison;
mod retention;
mod shutdown;

pub(crate) use harness::*;
