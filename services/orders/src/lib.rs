//! The orders service: the command side of buying tickets.
//!
//! A customer creates an order for seats they hold, pays it or cancels it.
//! Each of those state changes is one Postgres transaction that writes
//! - the idempotency key and the response it produced (so a retried request
//!   is answered from storage, not executed twice),
//! - the order row, changed by a conditional `UPDATE` that enforces the
//!   state machine even under concurrent requests,
//! - and the event describing the change into the transactional outbox,
//!
//! and commits all of them or none. The relay publishes the outbox later;
//! this service never talks to the broker on a request path.
//!
//! Before it creates an order it asks inventory, over HTTP, whether the
//! customer's holds are live, and stores each hold's fencing token with
//! the order ([`inventory_client`]); the token decides the sale later.
//!
//! It also consumes inventory's answer to each payment ([`reactions`]):
//! `PAID → CONFIRMED`, or `PAID → REFUNDED` as compensation. A paid order
//! that waits past a deadline for that answer is a stuck saga, counted on
//! `/metrics` and listed by `ticketctl orders stuck` ([`stuck`]).
//!
//! Layout: [`config`] (environment), [`startup`] (the [`Orders`] service:
//! what it connects and runs), [`domain`] (validated types and the state
//! machine), [`events`] (the fact each change produces), [`store`] (SQL),
//! [`idempotency`] (keys), [`inventory_client`] (hold verification),
//! [`http`] (routes and errors), [`reactions`], [`stuck`] (the saga's
//! deadline).

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod inventory_client;
pub mod reactions;
pub mod startup;
pub mod store;
pub mod stuck;

pub use config::Config;
pub use startup::Orders;

/// Migrations of the orders database, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/orders");
