//! Keeping each sale's seat map hot through its opening.
//!
//! A sale's first second is its worst: every buyer asks for the same map
//! at once. The warmup at boot (and `POST /ops/warmup`) fills maps whose
//! sale opens within `WARMUP_WINDOW`, but a map filled hours ahead is cold
//! again long before the opening: its version key lives `version_ttl`
//! (60 s), and nothing reads the map until the crowd arrives. Coalescing
//! turns that crowd into one query per instance, but the crowd still waits
//! for it, and every instance runs it at the same moment.
//!
//! So [`keep_openings_hot`] runs every quarter of `version_ttl` and
//! refreshes the map of every concert whose sale opens within
//! `opening_lead` or opened less than `opening_hot_for` ago. A refresh asks
//! Postgres for the concert's version only (one row): if Redis holds the
//! map of that version, both keys get a fresh (jittered) TTL and nothing
//! else is read; if not, the map is loaded and stored, as a fill would.
//! Asking for the version each time keeps the promise the version key's
//! TTL makes: a lost bump is corrected within `version_ttl`, hot or not.
//!
//! Every instance runs the loop; each refresh is one small query and one
//! script per concert in the window, so that is cheap, and it needs no
//! leader. If Redis or Postgres is away, a tick does nothing and the next
//! one tries again: a cold map is slower, never wrong.

use std::time::Duration;

use sqlx::postgres::types::PgInterval;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::scripts::REFRESH;
use super::{SeatMapError, SeatMaps, db_error, millis};
use crate::redis_link::RedisUnavailable;

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The cached map was current: its keys live on, nothing was loaded.
    Extended,
    /// The map was not cached (or was of an older version): loaded and stored.
    Loaded,
    /// No such concert.
    Gone,
}

impl SeatMaps {
    /// How often [`keep_openings_hot`] refreshes: a quarter of the version
    /// key's TTL, so a key is refreshed several times before it could
    /// expire even at the low end of its jitter.
    pub fn refresh_interval(&self) -> Duration {
        self.inner
            .config
            .version_ttl
            .mul_f64(0.25)
            .clamp(Duration::from_millis(100), Duration::from_secs(15))
    }

    /// Makes sure the map of `event`'s current version is cached with a
    /// fresh TTL, loading it only if Redis does not hold it.
    #[tracing::instrument(name = "seatmap.refresh", skip(self))]
    pub async fn refresh(&self, event: Uuid) -> Result<Refreshed, SeatMapError> {
        let Some(version) = crate::current_version(self.db(), event)
            .await
            .map_err(|e| db_error(&e))?
        else {
            return Ok(Refreshed::Gone);
        };
        if self.extend(event, version).await? {
            self.inner.metrics.refreshes.inc();
            return Ok(Refreshed::Extended);
        }
        // Not cached: load and store, as a fill does (without the
        // coalescer, which a single periodic caller does not need).
        let Some(map) = self.load(event).await.map_err(|e| db_error(&e))? else {
            return Ok(Refreshed::Gone);
        };
        self.store(event, &map)
            .await
            .map_err(|e| SeatMapError::Internal(e.to_string()))?;
        self.inner.metrics.refreshes.inc();
        Ok(Refreshed::Loaded)
    }

    /// Extends the keys of `event`'s map at `version`, if that map is
    /// cached; false if it is not.
    async fn extend(&self, event: Uuid, version: i64) -> Result<bool, SeatMapError> {
        let keys = self.inner.redis.keys();
        let extended = async {
            let mut connection = self.inner.redis.connection()?;
            let extended: i64 = REFRESH
                .key(keys.version(event))
                .key(keys.seat_map(event, version))
                .arg(version)
                .arg(millis(self.jittered(self.inner.config.version_ttl)))
                .arg(millis(self.jittered(self.inner.config.ttl)))
                .invoke_async(&mut connection)
                .await?;
            Ok::<_, RedisUnavailable>(extended == 1)
        }
        .await;
        extended.map_err(|e| SeatMapError::Internal(e.to_string()))
    }

    /// The concerts whose sale opens within `lead` or opened less than
    /// `hot_for` ago, and that have not started.
    async fn opening(&self, lead: Duration, hot_for: Duration) -> Result<Vec<Uuid>, SeatMapError> {
        let interval = |d: Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| PgInterval::try_from(d).ok())
                .ok_or_else(|| SeatMapError::Internal(format!("{d:?} is not an interval")))
        };
        sqlx::query_scalar!(
            "select id from events
             where sale_opens_at between now() - $2::interval and now() + $1::interval
               and starts_at > now()
             order by sale_opens_at",
            interval(lead)?,
            interval(hot_for)?,
        )
        .fetch_all(self.db())
        .await
        .map_err(|e| db_error(&e))
    }
}

/// Refreshes the maps of sales around their opening until `stop`; see the
/// module docs. `lead` and `hot_for` come from [`super::SeatMapConfig`];
/// both zero switches it off (tests that count database loads do, so that
/// no refresh adds to them).
pub async fn keep_openings_hot(maps: SeatMaps, stop: CancellationToken) {
    let (lead, hot_for) = (
        maps.inner.config.opening_lead,
        maps.inner.config.opening_hot_for,
    );
    if lead.is_zero() && hot_for.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(maps.refresh_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let events = match maps.opening(lead, hot_for).await {
            Ok(events) => events,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list the sales that open soon; trying again");
                continue;
            }
        };
        for event in events {
            if let Err(e) = maps.refresh(event).await {
                tracing::debug!(error = %e, event_id = %event, "seat map not refreshed; trying again");
            }
        }
    }
}
