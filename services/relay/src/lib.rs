//! The outbox relay: moves committed outbox rows to NATS JetStream.
//!
//! A service commits its state change and the event describing it in one
//! transaction (the `outbox` crate). The relay makes that event leave the
//! service, with these guarantees:
//!
//! - **nothing lost**: a row is deleted (or, with a retention period, marked
//!   published) only after JetStream's PubAck, in the transaction that
//!   claimed it; a crash, a broker outage or a database outage leaves it in
//!   place, to be published on a later pass;
//! - **no duplicates in the stream**: the `Nats-Msg-Id` header is the event
//!   id, so a row republished after a crash between PubAck and marking is
//!   recognised by JetStream as a duplicate within its window;
//! - **order per aggregate**: a row is claimed only if no earlier version
//!   of its aggregate is still unpublished, and claims lock rows
//!   (`FOR UPDATE SKIP LOCKED`) until they are marked, so this holds with
//!   any number of relay instances on one database;
//! - **no skipped rows**: there is no "last id seen" cursor; every pass
//!   looks at all unpublished rows, so a transaction that commits late with
//!   a lower id is still published;
//! - **poison rows parked**: a row that fails on its own (say it exceeds the
//!   server's max payload) is retried `RELAY_MAX_ATTEMPTS` times, then
//!   parked with its error; it holds back later events of its aggregate
//!   only, shows in `/metrics` and `ticketctl outbox status`, and goes back
//!   in line with `ticketctl outbox unpark <event-id>`.
//!
//! One binary serves any database with an outbox table (orders, inventory);
//! one source per instance, as many instances as you like.
//!
//! Modules: [`config`], [`store`] (SQL), [`publisher`] (one batch),
//! [`relay_loop`] (the loop: wake-ups, backoff, retention), [`metrics`],
//! [`startup`] (the [`Relay`] service: what it connects and runs; its HTTP
//! server has the operational routes only).

pub mod config;
pub mod metrics;
pub mod publisher;
pub mod relay_loop;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::Relay;
