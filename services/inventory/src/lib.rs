//! The inventory service: the truth about seats.
//!
//! This part is the consumer side (the seat map and hold API come with the
//! caching work): on `OrderPaid` it sells every seat of the order with one
//! conditional `UPDATE … where status = 'AVAILABLE'`, all or none, and
//! answers through its own transactional outbox:
//! - `SeatsConfirmed` when all seats were sold to the order;
//! - `SeatAllocationRejected` when any was not available, which orders
//!   answers with a refund.
//!
//! Whatever caches or holds said, this update decides who gets a seat: no
//! seat is ever sold twice.
//!
//! HTTP (port 8081, for now): `/healthz`, `/readyz`, and `/metrics` with
//! the consumer's counts and lag.
//!
//! Layout: [`config`], [`allocation`] (the handler), [`startup`].

pub mod allocation;
pub mod config;
pub mod startup;

pub use config::Config;
pub use startup::Application;

/// Migrations of the inventory database, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/inventory");
