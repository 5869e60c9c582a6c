//! The reporting service: sales per concert, projected from the order
//! events, and rebuildable at any time by replaying the stream.
//!
//! The read model is disposable: the stream is the truth. [`projection`]
//! counts `OrderConfirmed` (tickets, revenue) and `OrderRefunded` (refunds)
//! into the active generation of the `sales` table; [`rebuild`] builds a
//! fresh generation from the start of `ORDER_EVENTS` and swaps it in.
//!
//! Layout: [`config`], [`projection`], [`rebuild`], [`http`] (the reports
//! API), [`startup`] (the [`Reporting`] service: what it connects and runs).

pub mod config;
pub mod http;
pub mod projection;
pub mod rebuild;
pub mod startup;

pub use config::Config;
pub use startup::Reporting;

/// Migrations of the reporting database, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/reporting");
