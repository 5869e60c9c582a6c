//! The consumer runtime every reacting service uses (`docs/design.md` §4, Messaging topology).
//!
//! A [`Consumer`] reads one stream through a durable pull consumer and
//! hands each event to a [`Handler`] inside a Postgres transaction. Around
//! the handler it enforces what makes a consumer safe to run against an
//! at-least-once broker:
//!
//! - **idempotency (inbox)**: a `(consumer, event_id)` row is inserted in
//!   the same transaction as the effect; if it is already there, the event
//!   was applied before, and it is acked and skipped;
//! - **order per aggregate**: the last applied `aggregate_version` is kept
//!   per aggregate; an older or equal version is skipped, a version beyond
//!   the next one is nak'ed with a delay until the gap fills, so an event is
//!   never applied out of order;
//! - **parallel lanes**: messages of different aggregates are processed
//!   several at once, each aggregate always in the same lane and so one
//!   event at a time, in order (`runtime/lanes.rs`);
//! - **ack after commit**: the ack is sent only once the transaction has
//!   committed; a crash in between means a redelivery, which the inbox
//!   absorbs;
//! - **retries, then dead letters**: a transient failure (the database is
//!   down) is nak'ed with a growing delay; a permanent one (undecodable
//!   payload, unknown schema version, a handler that says "poison"), or a
//!   transient one on the last allowed delivery, is copied to the
//!   `DEAD_LETTERS` stream with its error and terminated, while other
//!   messages keep flowing. [`dlq`] lists, shows, redrives and purges them.
//!
//! Modules: [`runtime`] (the spec, the decision per message, the loop and
//! the counters, one file each in `runtime/`), [`group`] (a service's
//! consumers installed as tasks, with their metrics), [`dlq`], [`store`]
//! (inbox and positions SQL), [`sweeper`] (how long inbox and positions
//! rows live, and the task that deletes them after that).

#![warn(missing_docs)]

pub mod dlq;
pub mod group;
pub mod runtime;
pub mod store;
pub mod sweeper;

pub use group::Group;
pub use runtime::{
    Consumer, ConsumerSpec, Counts, Decision, Delivery, Handler, HandlerError, Lag, Outcome, lag,
};
