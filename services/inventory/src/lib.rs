//! The inventory service: the truth about seats, and the fast path to them.
//!
//! Two halves share one database:
//! - **The read and hold API** (port 8081), a folder per feature, each
//!   with its domain and its own routes (`http.rs`): the concert catalog
//!   from a local cache with broadcast invalidation ([`catalog`]), seat
//!   maps cache-aside in Redis with versioned keys, coalescing and null
//!   caching ([`seat_map`]), and seat holds in Redis fenced by Postgres
//!   ([`holds`]); `api` merges the three behind authentication and
//!   admission control.
//! - **The consumer**: on `OrderPaid` it sells every seat of the order with
//!   one conditional `UPDATE`, all or none, and only to the current holder
//!   of each seat ([`allocation`]), answering through its outbox with
//!   `SeatsConfirmed` or `SeatAllocationRejected`.
//!
//! Whatever caches or holds say, that update decides who gets a seat: no
//! seat is ever sold twice, and with Redis down the service is slower, not
//! wrong.
//!
//! Layout: [`config`], [`redis_link`] (the connection to Redis and the
//! names of the keys; named so as not to shadow the `redis` crate),
//! [`startup`] (the [`Inventory`] service: what it connects and runs).

pub mod allocation;
mod api;
pub mod catalog;
pub mod config;
pub mod holds;
pub mod redis_link;
pub mod seat_map;
pub mod startup;

pub use config::Config;
pub use startup::Inventory;

/// Migrations of the inventory database, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/inventory");

/// The concert's current version, `None` if it does not exist.
pub(crate) async fn current_version(
    db: &sqlx::PgPool,
    event: uuid::Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("select version from events where id = $1", event)
        .fetch_optional(db)
        .await
}
