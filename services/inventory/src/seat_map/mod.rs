//! The seat map: cache-aside in Redis with versioned keys, coalesced fills,
//! null caching, and a Postgres fallback when Redis is down.
//!
//! A seat map has two parts with different lifetimes:
//! - what Postgres knows (the seats, their prices, which are sold), which
//!   changes only when a concert changes or seats are sold; this part is
//!   cached under `…:seatmap:<version>`;
//! - the live holds, which change every second; they are read from Redis on
//!   every request (the same round trip as the cache read) and never cached.
//!
//! **Versions make stale fills harmless.** Every change bumps
//! `events.version` in Postgres and then sets the Redis version key to the
//! new value ("only ever upwards", by a Lua script). A reader looks up the
//! version first and then the map *of that version*. A slow filler that
//! read the database before a change writes its map under the old version's
//! key, which no reader asks for any more, and its attempt to set the
//! version key is refused because the key already holds a higher one. No
//! delete-then-refill race exists because nothing is ever deleted.
//!
//! **Coalescing.** A miss starts a fill through [`Coalescer`]: per instance,
//! one database query per concert however many requests missed at once.
//! The fill re-reads Redis first, so a request that missed just before
//! another fill finished does not query again.
//!
//! **Expiry, jittered where it governs.** A read needs the version key
//! first, so the version key's TTL (`version_ttl`, 60 s, also the bound on
//! staleness when a bump was lost) is what ends a cached map's life; the
//! map's own TTL only clears old versions away. Both are spread by
//! `ttl_jitter`, so maps filled together (by warmup, or by the first rush
//! of a sale) do not all miss in the same second.
//!
//! **Hot through the opening.** Warmup fills maps at boot, but a map
//! filled hours before its sale is cold again by the opening; [`opening`]
//! refreshes each sale's map from a few minutes before it opens until the
//! rush has passed.
//!
//! **Null caching.** An unknown concert id is cached as `missing` for a
//! short TTL (`SET NX`, so it never hides a concert created meanwhile,
//! whose creation sets the version key).
//!
//! **Redis down.** The map is loaded from Postgres (still coalesced, and
//! limited to a few concurrent queries so a Redis outage cannot become a
//! Postgres outage) and served with `holds: unknown`: held seats show as
//! available, which is a stale view but never a wrong sale, because the
//! sale is decided in Postgres.
//!
//! **Rendered in the process.** The route sends [`SeatMaps::rendered`]:
//! the body and `ETag` kept for the current version and holds, so an
//! unchanged map costs one small Redis read and no encoding ([`rendered`]).
//!
//! Layout: this file is the read path, the fill and warmup; [`rendered`]
//! the kept bodies and maps; [`opening`]
//! the refreshes around a sale's opening; `view` what
//! a map is, `scripts` the Lua scripts and what a read finds, [`coalesce`]
//! the single flight, [`SeatMapMetrics`] the counters, and `http.rs` the
//! routes (`GET /events/{id}/seats` with `ETag`/304, `POST /ops/warmup`).
//!
//! Long (about 520 lines) because the three ways to read a map (`get`,
//! `rendered`, and the fill's re-read), the fill, and the writes to Redis
//! share `SeatMaps`' state and its Redis scripts; the next split would be
//! the read path into a module of its own.

pub mod coalesce;
pub(crate) mod http;
mod metrics;
pub mod opening;
pub mod rendered;
mod scripts;
mod view;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use uuid::Uuid;

pub use metrics::SeatMapMetrics;
pub use rendered::Rendered;
pub use view::{HoldsKnown, SeatMap, SeatStatus, SeatView, StoredSeat, StoredSeatMap};

use crate::redis_link::{RedisLink, RedisUnavailable};
use coalesce::Coalescer;
use rendered::LocalMaps;
use scripts::{BUMP, Head, MISSING, READ, Read, STORE};
use view::view;

/// Why a seat map could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SeatMapError {
    /// Postgres is unreachable (and Redis had nothing, or is down too).
    #[error("postgres unavailable: {0}")]
    DatabaseUnavailable(String),
    /// Too many database loads are running (only when Redis cannot help).
    #[error("too many seat maps are being loaded from the database")]
    Busy,
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// Tuning of the seat-map cache.
#[derive(Debug, Clone, Copy)]
pub struct SeatMapConfig {
    /// How long a cached map lives (before jitter).
    pub ttl: Duration,
    /// ± this fraction of `ttl` and of `version_ttl` at random, so maps
    /// filled together (e.g. by warmup) do not all expire in the same second.
    pub ttl_jitter: f64,
    /// How long a version key lives (before jitter); bounds staleness if a
    /// bump was lost, and, since reads need it, ends a cached map's life.
    pub version_ttl: Duration,
    /// How long "no such concert" is cached.
    pub null_ttl: Duration,
    /// Most concurrent database loads per instance.
    pub db_concurrency: usize,
    /// How long a load waits for one of those before answering 503.
    pub db_wait: Duration,
    /// Coalesce concurrent misses (off only for the stampede benchmark).
    pub coalesce: bool,
    /// Keep a sale's map hot from this long before it opens ([`opening`]).
    pub opening_lead: Duration,
    /// … until this long after it opened.
    pub opening_hot_for: Duration,
}

impl Default for SeatMapConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_mins(5),
            ttl_jitter: 0.1,
            version_ttl: Duration::from_mins(1),
            null_ttl: Duration::from_secs(5),
            db_concurrency: 4,
            db_wait: Duration::from_secs(2),
            coalesce: true,
            opening_lead: Duration::from_mins(5),
            opening_hot_for: Duration::from_mins(10),
        }
    }
}

type Fill = Result<Option<Arc<StoredSeatMap>>, SeatMapError>;

/// Serves seat maps; cheap to clone.
#[derive(Clone)]
pub struct SeatMaps {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    redis: RedisLink,
    config: SeatMapConfig,
    coalescer: Coalescer<Uuid, Fill>,
    db_permits: Semaphore,
    metrics: SeatMapMetrics,
    local: LocalMaps,
}

/// A map and the holds to show on it (`None`: unknown, Redis is down).
struct Snapshot {
    map: Arc<StoredSeatMap>,
    held: Option<HashSet<String>>,
}

impl SeatMaps {
    /// Seat maps from `db`, cached in `redis`.
    pub fn new(db: PgPool, redis: RedisLink, config: SeatMapConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                redis,
                db_permits: Semaphore::new(config.db_concurrency),
                config,
                coalescer: Coalescer::default(),
                metrics: SeatMapMetrics::default(),
                local: LocalMaps::default(),
            }),
        }
    }

    /// The database the maps come from.
    pub fn db(&self) -> &PgPool {
        &self.inner.db
    }

    /// The counters, to register ([`SeatMapMetrics::register`]) or to read.
    pub fn metrics(&self) -> &SeatMapMetrics {
        &self.inner.metrics
    }

    /// The seat map of `event`, or `None` if there is no such concert.
    #[tracing::instrument(name = "seatmap.get", skip(self), fields(cache))]
    pub async fn get(&self, event: Uuid) -> Result<Option<SeatMap>, SeatMapError> {
        let snapshot = self.snapshot(event, self.read(event).await).await?;
        Ok(snapshot.map(|s| view(event, &s.map, s.held.as_ref())))
    }

    /// The seat map of `event` ready to send, or `None` if there is no such
    /// concert: [`SeatMaps::get`] without the work an unchanged map does
    /// not need ([`rendered`] says what is kept and why it is never stale).
    ///
    /// Redis is asked for the version and the holds; a body rendered for
    /// them is sent as it is, a map kept at that version is rendered with
    /// them, and only when neither is kept is the map read in full.
    #[tracing::instrument(name = "seatmap.get", skip(self), fields(cache))]
    pub async fn rendered(&self, event: Uuid) -> Result<Option<Arc<Rendered>>, SeatMapError> {
        let metrics = &self.inner.metrics;
        let local = &self.inner.local;
        let read = match self.read_head(event).await {
            Ok(Head::Missing) => {
                tracing::Span::current().record("cache", "null");
                metrics.null_hits.inc();
                return Ok(None);
            }
            Ok(Head::Current { version, held }) => {
                if let Some(body) = local
                    .body(event, &rendered::etag(version, Some(&held)))
                    .await
                {
                    tracing::Span::current().record("cache", "rendered");
                    metrics.hits.inc();
                    metrics.rendered_hits.inc();
                    return Ok(Some(body));
                }
                if let Some(map) = local.stored(event, version).await {
                    tracing::Span::current().record("cache", "local");
                    metrics.hits.inc();
                    return self.render(event, &map, Some(&held)).await.map(Some);
                }
                self.read(event).await
            }
            Ok(Head::Unversioned) => self.read(event).await,
            // Straight to Postgres: a second read would wait for Redis again.
            Err(e) => Err(e),
        };
        let Some(snapshot) = self.snapshot(event, read).await? else {
            return Ok(None);
        };
        if snapshot.held.is_some() {
            local.keep_stored(event, snapshot.map.clone()).await;
        }
        self.render(event, &snapshot.map, snapshot.held.as_ref())
            .await
            .map(Some)
    }

    /// Renders `map` with `held` and keeps the result ([`rendered`]).
    async fn render(
        &self,
        event: Uuid,
        map: &StoredSeatMap,
        held: Option<&HashSet<String>>,
    ) -> Result<Arc<Rendered>, SeatMapError> {
        let rendered = Arc::new(
            Rendered::of(event, map, held).map_err(|e| SeatMapError::Internal(e.to_string()))?,
        );
        self.inner.local.keep_body(event, rendered.clone()).await;
        Ok(rendered)
    }

    /// The map and holds a Redis `read` leads to: as read, or filled from
    /// Postgres on a miss, or from Postgres with holds unknown when Redis
    /// is unavailable. Records the outcome in the caller's span.
    async fn snapshot(
        &self,
        event: Uuid,
        read: Result<Read, RedisUnavailable>,
    ) -> Result<Option<Snapshot>, SeatMapError> {
        let metrics = &self.inner.metrics;
        let span = tracing::Span::current();
        match read {
            Ok(Read::Hit { map, held }) => {
                span.record("cache", "hit");
                metrics.hits.inc();
                Ok(Some(Snapshot {
                    map: Arc::new(map),
                    held: Some(held),
                }))
            }
            Ok(Read::Missing) => {
                span.record("cache", "null");
                metrics.null_hits.inc();
                Ok(None)
            }
            Ok(Read::Miss { held }) => {
                span.record("cache", "miss");
                metrics.misses.inc();
                let map = self.fill(event).await?;
                Ok(map.map(|map| Snapshot {
                    map,
                    held: Some(held),
                }))
            }
            Err(e) => {
                span.record("cache", "unavailable");
                tracing::debug!(error = %e, "redis unavailable; seat map from postgres");
                metrics.redis_unavailable.inc();
                let map = self.fill(event).await?;
                Ok(map.map(|map| Snapshot { map, held: None }))
            }
        }
    }

    /// Makes sure the map of `event` is cached, loading it once however
    /// many callers ask at the same time.
    pub async fn fill(&self, event: Uuid) -> Fill {
        let this = self.clone();
        let work = move || async move { this.fill_now(event).await };
        if self.inner.config.coalesce {
            self.inner.coalescer.run(event, work).await
        } else {
            work().await
        }
    }

    #[tracing::instrument(name = "seatmap.fill", skip(self))]
    async fn fill_now(&self, event: Uuid) -> Fill {
        // Another fill may have finished between our miss and this flight.
        match self.read(event).await {
            Ok(Read::Hit { map, .. }) => return Ok(Some(Arc::new(map))),
            Ok(Read::Missing) => return Ok(None),
            Ok(Read::Miss { .. }) | Err(_) => {}
        }
        let loaded = {
            let _permit =
                tokio::time::timeout(self.inner.config.db_wait, self.inner.db_permits.acquire())
                    .await
                    .map_err(|_| SeatMapError::Busy)?
                    .map_err(|_| SeatMapError::Busy)?;
            self.load(event).await.map_err(|e| db_error(&e))?
        };
        // Caching is best effort: the answer is right either way.
        let stored = match &loaded {
            Some(map) => self.store(event, map).await,
            None => self.store_missing(event).await,
        };
        if let Err(e) = stored {
            tracing::debug!(error = %e, "seat map not cached");
        }
        Ok(loaded.map(Arc::new))
    }

    /// Reads what Postgres knows about `event`'s seats, in one statement
    /// (one snapshot: the version matches the seats).
    #[tracing::instrument(name = "seatmap.load", skip(self))]
    pub async fn load(&self, event: Uuid) -> Result<Option<StoredSeatMap>, sqlx::Error> {
        self.inner.metrics.db_loads.inc();
        let rows = sqlx::query!(
            r#"
            select e.version, s.seat_id as "seat_id?", s.price_cents as "price_cents?",
                   s.status = 'SOLD' as "sold?"
            from events e
            left join seats s on s.event_id = e.id
            where e.id = $1
            order by s.seat_id
            "#,
            event
        )
        .fetch_all(&self.inner.db)
        .await?;
        let Some(version) = rows.first().map(|r| r.version) else {
            return Ok(None);
        };
        let seats = rows
            .into_iter()
            .filter_map(|r| {
                Some(StoredSeat {
                    seat_id: r.seat_id?,
                    price_cents: r.price_cents?,
                    sold: r.sold.unwrap_or(false),
                })
            })
            .collect();
        Ok(Some(StoredSeatMap { version, seats }))
    }

    /// Caches `map` under its version (see the module docs for why a late
    /// call with an old map does no harm).
    pub async fn store(&self, event: Uuid, map: &StoredSeatMap) -> Result<(), RedisUnavailable> {
        let keys = self.inner.redis.keys();
        let json = serde_json::to_string(map).map_err(|e| {
            RedisUnavailable::Command(redis::RedisError::from((
                redis::ErrorKind::Client,
                "serialize",
                e.to_string(),
            )))
        })?;
        let mut connection = self.inner.redis.connection()?;
        STORE
            .key(keys.version(event))
            .key(keys.seat_map(event, map.version))
            .arg(map.version)
            .arg(millis(self.jittered(self.inner.config.version_ttl)))
            .arg(json)
            .arg(millis(self.jittered(self.inner.config.ttl)))
            .invoke_async::<i64>(&mut connection)
            .await?;
        Ok(())
    }

    async fn store_missing(&self, event: Uuid) -> Result<(), RedisUnavailable> {
        let mut connection = self.inner.redis.connection()?;
        // NX: never hide a concert whose creation set the key meanwhile.
        redis::cmd("SET")
            .arg(self.inner.redis.keys().version(event))
            .arg(MISSING)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.inner.config.null_ttl))
            .query_async::<Option<String>>(&mut connection)
            .await?;
        Ok(())
    }

    /// Records in Redis that `event` is now at `version` (call it after the
    /// change committed). If Redis is unreachable the version key expires
    /// within `version_ttl`, which bounds how long the old map is served.
    pub async fn version_changed(&self, event: Uuid, version: i64) {
        let result = async {
            let mut connection = self.inner.redis.connection()?;
            BUMP.key(self.inner.redis.keys().version(event))
                .arg(version)
                .arg(millis(self.jittered(self.inner.config.version_ttl)))
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok::<_, RedisUnavailable>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, event_id = %event, version, "seat-map version not bumped; the old map may be served until the version key expires");
        }
    }

    /// Preloads the maps of concerts whose sale opens within `window` (or
    /// has opened) and that have not started yet; returns how many.
    #[tracing::instrument(name = "seatmap.warmup", skip(self))]
    pub async fn warmup(&self, window: Duration) -> Result<usize, SeatMapError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let events = sqlx::query_scalar!(
            "select id from events
             where sale_opens_at <= now() + $1::interval and starts_at > now()
             order by sale_opens_at",
            sqlx::postgres::types::PgInterval::try_from(window)
                .map_err(|e| SeatMapError::Internal(e.to_string()))?,
        )
        .fetch_all(&self.inner.db)
        .await
        .map_err(|e| db_error(&e))?;
        for event in &events {
            self.fill(*event).await?;
        }
        tracing::info!(warmed = events.len(), "seat maps warmed up");
        Ok(events.len())
    }

    async fn read(&self, event: Uuid) -> Result<Read, RedisUnavailable> {
        let (version, map, held) = self.invoke_read(event, true).await?;
        let held = held.into_iter().collect();
        Ok(match (version.as_deref(), map) {
            (Some(MISSING), _) => Read::Missing,
            (_, Some(json)) => match serde_json::from_str(&json) {
                Ok(map) => Read::Hit { map, held },
                // A map written by another release: treat as a miss.
                Err(_) => Read::Miss { held },
            },
            _ => Read::Miss { held },
        })
    }

    /// The version and the holds of `event`, the map left in Redis.
    async fn read_head(&self, event: Uuid) -> Result<Head, RedisUnavailable> {
        let (version, _, held) = self.invoke_read(event, false).await?;
        Ok(match version.as_deref() {
            Some(MISSING) => Head::Missing,
            // A version that is not a number is another release's: a miss.
            Some(version) => match version.parse() {
                Ok(version) => Head::Current {
                    version,
                    held: held.into_iter().collect(),
                },
                Err(_) => Head::Unversioned,
            },
            None => Head::Unversioned,
        })
    }

    /// [`READ`]: the version, the map of that version if `with_map`, and
    /// the seats held now.
    async fn invoke_read(
        &self,
        event: Uuid,
        with_map: bool,
    ) -> Result<(Option<String>, Option<String>, Vec<String>), RedisUnavailable> {
        let keys = self.inner.redis.keys();
        let mut connection = self.inner.redis.connection()?;
        Ok(READ
            .key(keys.version(event))
            .key(keys.holds(event))
            .arg(keys.seat_map_prefix(event))
            .arg(if with_map { "1" } else { "0" })
            .invoke_async(&mut connection)
            .await?)
    }

    /// `ttl` ± `ttl_jitter` of it, at random.
    fn jittered(&self, ttl: Duration) -> Duration {
        let jitter = self.inner.config.ttl_jitter.clamp(0.0, 1.0);
        let factor = rand::rng().random_range((1.0 - jitter)..=(1.0 + jitter));
        ttl.mul_f64(factor)
    }
}

fn db_error(e: &sqlx::Error) -> SeatMapError {
    if pgkit::is_unavailable(e) {
        SeatMapError::DatabaseUnavailable(e.to_string())
    } else {
        SeatMapError::Internal(e.to_string())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
