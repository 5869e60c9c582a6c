//! The concert catalog: reads from an in-process cache, kept in step across
//! instances by broadcast invalidation.
//!
//! The catalog is small, read on every page and rarely changed: the ideal
//! case for a local cache (moka), which answers without any network hop.
//! The risk of local caches is divergence: instance A changes a concert and
//! keeps serving the new data while instance B serves the old one until its
//! entry expires. So every change is announced on a core NATS subject
//! (`{prefix}inventory.catalog.changed`, payload: the event id) and every
//! instance, the writer included, drops its entries for that concert.
//!
//! Core NATS is at-most-once: an instance that is disconnected while a
//! change is announced misses it. The short TTL bounds how long it can be
//! wrong; that bound is the contract (`CATALOG_TTL`, default 30 s).
//!
//! Its routes (`GET`/`POST /events`, `GET`/`PATCH /events/{id}`) are in
//! `http.rs`.

pub(crate) mod http;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

/// A concert as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Concert {
    /// The concert's id (the `event_id` of orders and seat maps).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Where it takes place.
    pub venue: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When tickets go on sale.
    pub sale_opens_at: DateTime<Utc>,
    /// Bumped on every change to the concert or its seats.
    pub version: i64,
}

/// Where a concert's sale stands at a moment: seats can be held, ordered
/// and paid from `sale_opens_at` up to (not including) `starts_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sale {
    /// Before `sale_opens_at`: it opens in this long.
    NotOpen(std::time::Duration),
    /// Holds, orders and payments are taken.
    Open,
    /// At or after `starts_at`: the concert has begun, nothing more is sold.
    Closed,
}

impl Concert {
    /// Where the sale stands at `now`.
    pub fn sale_at(&self, now: DateTime<Utc>) -> Sale {
        if now < self.sale_opens_at {
            Sale::NotOpen((self.sale_opens_at - now).to_std().unwrap_or_default())
        } else if now < self.starts_at {
            Sale::Open
        } else {
            Sale::Closed
        }
    }
}

/// A seat to create with a new concert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewSeat {
    /// Its label, e.g. `A-12`: 1 to 16 letters, digits, `-` or `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,16}$")]
    pub seat_id: String,
    /// Its price in cents.
    #[schema(minimum = 0)]
    pub price_cents: i32,
}

/// A new concert with its seats.
#[derive(Debug, Clone)]
pub struct NewConcert {
    /// The id (chosen by the caller, so creation can be retried safely).
    pub id: Uuid,
    pub name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub sale_opens_at: DateTime<Utc>,
    pub seats: Vec<NewSeat>,
}

/// Changes to a concert's details; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcertChanges {
    /// New name: 1 to 200 characters, not only spaces, no control
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    /// New venue; as `name`.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub venue: Option<String>,
    /// New start.
    pub starts_at: Option<DateTime<Utc>>,
    /// New sale opening.
    pub sale_opens_at: Option<DateTime<Utc>>,
}

/// The result of creating a concert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// It was created.
    New(Concert),
    /// A concert with this id and the same details and seats exists (a
    /// retried creation).
    Exists(Concert),
    /// A concert with this id exists with other details or seats: the
    /// request is not a retry, and the id cannot mean two concerts.
    Conflict(Concert),
}

/// Whether `asked` describes the concert that exists: same details and the
/// same seats at the same prices. Times compare at Postgres's precision
/// (microseconds), so a retry of a body with nanoseconds still matches.
fn same_concert(existing: &Concert, seats: &[NewSeat], asked: &NewConcert) -> bool {
    let micros = |t: DateTime<Utc>| t.timestamp_micros();
    let mut asked_seats = asked.seats.clone();
    asked_seats.sort_by(|a, b| a.seat_id.cmp(&b.seat_id));
    existing.name == asked.name
        && existing.venue == asked.venue
        && micros(existing.starts_at) == micros(asked.starts_at)
        && micros(existing.sale_opens_at) == micros(asked.sale_opens_at)
        && seats == asked_seats.as_slice()
}

/// Reads and writes the catalog.
#[derive(Clone)]
pub struct Catalog {
    db: PgPool,
    cache: Cache<CacheKey, CacheValue>,
    nats: async_nats::Client,
    subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    All,
    One(Uuid),
}

#[derive(Debug, Clone)]
enum CacheValue {
    All(Arc<Vec<Concert>>),
    // `None` is cached too: an unknown id asked a thousand times is one query.
    One(Option<Arc<Concert>>),
}

impl Catalog {
    /// A catalog whose local entries live for `ttl`.
    pub fn new(db: PgPool, nats: async_nats::Client, prefix: &str, ttl: Duration) -> Self {
        Self {
            db,
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            nats,
            subject: format!("{prefix}inventory.catalog.changed"),
        }
    }

    /// Every concert, soonest first.
    pub async fn list(&self) -> Result<Arc<Vec<Concert>>, sqlx::Error> {
        let db = self.db.clone();
        // `try_get_with` also coalesces: concurrent misses run one query.
        let value = self
            .cache
            .try_get_with(CacheKey::All, async move {
                let concerts = sqlx::query_as!(
                    Concert,
                    "select id, name, venue, starts_at, sale_opens_at, version
                     from events order by starts_at, id"
                )
                .fetch_all(&db)
                .await?;
                Ok::<_, sqlx::Error>(CacheValue::All(Arc::new(concerts)))
            })
            .await
            .map_err(unshare)?;
        match value {
            CacheValue::All(all) => Ok(all),
            CacheValue::One(_) => unreachable!("the All key holds the list"),
        }
    }

    /// One concert, or `None` if there is no such concert.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Concert>>, sqlx::Error> {
        let db = self.db.clone();
        let value = self
            .cache
            .try_get_with(CacheKey::One(id), async move {
                let concert = load(&db, id).await?;
                Ok::<_, sqlx::Error>(CacheValue::One(concert.map(Arc::new)))
            })
            .await
            .map_err(unshare)?;
        match value {
            CacheValue::One(concert) => Ok(concert),
            CacheValue::All(_) => unreachable!("a One key holds one concert"),
        }
    }

    /// Creates a concert and its seats in one transaction.
    pub async fn create(&self, concert: &NewConcert) -> Result<Created, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query_as!(
            Concert,
            r#"
            insert into events (id, name, venue, starts_at, sale_opens_at)
            values ($1, $2, $3, $4, $5)
            on conflict (id) do nothing
            returning id, name, venue, starts_at, sale_opens_at, version
            "#,
            concert.id,
            concert.name,
            concert.venue,
            concert.starts_at,
            concert.sale_opens_at,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(created) = inserted else {
            tx.rollback().await?;
            let existing = load(&self.db, concert.id)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            let seats = sqlx::query_as!(
                NewSeat,
                "select seat_id, price_cents from seats where event_id = $1 order by seat_id",
                concert.id,
            )
            .fetch_all(&self.db)
            .await?;
            return Ok(if same_concert(&existing, &seats, concert) {
                Created::Exists(existing)
            } else {
                Created::Conflict(existing)
            });
        };
        let seat_ids: Vec<String> = concert.seats.iter().map(|s| s.seat_id.clone()).collect();
        let prices: Vec<i32> = concert.seats.iter().map(|s| s.price_cents).collect();
        sqlx::query!(
            r#"
            insert into seats (event_id, seat_id, price_cents)
            select $1, seat_id, price_cents from unnest($2::text[], $3::int[]) as s(seat_id, price_cents)
            "#,
            concert.id,
            &seat_ids,
            &prices,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce(concert.id).await;
        Ok(Created::New(created))
    }

    /// Changes a concert's details and bumps its version; `None` if there is
    /// no such concert.
    pub async fn update(
        &self,
        id: Uuid,
        changes: &ConcertChanges,
    ) -> Result<Option<Concert>, sqlx::Error> {
        let updated = sqlx::query_as!(
            Concert,
            r#"
            update events set
                name = coalesce($2, name),
                venue = coalesce($3, venue),
                starts_at = coalesce($4, starts_at),
                sale_opens_at = coalesce($5, sale_opens_at),
                version = version + 1,
                updated_at = now()
            where id = $1
            returning id, name, venue, starts_at, sale_opens_at, version
            "#,
            id,
            changes.name,
            changes.venue,
            changes.starts_at,
            changes.sale_opens_at,
        )
        .fetch_optional(&self.db)
        .await?;
        if updated.is_some() {
            self.announce(id).await;
        }
        Ok(updated)
    }

    /// Drops this instance's entries for `id` (and the list).
    pub async fn invalidate(&self, id: Uuid) {
        self.cache.invalidate(&CacheKey::One(id)).await;
        self.cache.invalidate(&CacheKey::All).await;
    }

    /// Tells every instance (this one included) that `id` changed. This
    /// instance also drops its entries directly, so its own next read is
    /// fresh even if NATS is down.
    async fn announce(&self, id: Uuid) {
        self.invalidate(id).await;
        if let Err(e) = self
            .nats
            .publish(self.subject.clone(), id.to_string().into())
            .await
        {
            tracing::warn!(error = %e, event_id = %id, "catalog change not broadcast; other instances catch up within the TTL");
        }
    }

    /// Subscribes to changes announced by any instance; pass the result to
    /// [`Self::listen`]. Separate so that the subscription exists before the
    /// service reports itself started.
    pub async fn subscribe(&self) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
        let subscriber = self.nats.subscribe(self.subject.clone()).await?;
        // The server must know the subscription before a change can reach it.
        if let Err(e) = self.nats.flush().await {
            tracing::warn!(error = %e, "NATS flush failed after subscribing");
        }
        Ok(subscriber)
    }

    /// Drops local entries as changes are announced, until `shutdown`.
    pub async fn listen(&self, mut changes: async_nats::Subscriber, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = changes.next() => {
                    let Some(message) = message else { return };
                    if let Some(id) = std::str::from_utf8(&message.payload)
                        .ok()
                        .and_then(|s| s.parse::<Uuid>().ok())
                    {
                        tracing::debug!(event_id = %id, "catalog entry invalidated by broadcast");
                        self.invalidate(id).await;
                    } else {
                        tracing::warn!("ignoring a malformed catalog change message");
                    }
                }
            }
        }
    }
}

async fn load(db: &PgPool, id: Uuid) -> Result<Option<Concert>, sqlx::Error> {
    sqlx::query_as!(
        Concert,
        "select id, name, venue, starts_at, sale_opens_at, version from events where id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// moka shares one error between every coalesced caller; ours need their own.
fn unshare(e: Arc<sqlx::Error>) -> sqlx::Error {
    match Arc::try_unwrap(e) {
        Ok(e) => e,
        Err(shared) => match &*shared {
            sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
            // Keep the kind: an I/O error means Postgres is unreachable (503).
            sqlx::Error::Io(e) => sqlx::Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            other => sqlx::Error::Protocol(other.to_string()),
        },
    }
}
