//! The connection to Redis, and the names of every key inventory uses.
//!
//! Redis is an accelerator here, never the truth: the service must start,
//! serve and stay correct while Redis is down. So [`RedisLink`] connects in
//! the background (a missing Redis does not fail the start), every command
//! has a short timeout (a hung Redis costs milliseconds, not a request), and
//! once connected the `ConnectionManager` reconnects by itself when Redis
//! comes back.
//!
//! Keys of one concert share the hash tag `{<event id>}`, so the Lua scripts
//! that touch several of them stay on one slot should Redis become a
//! cluster. The customer's hold index is the exception (it spans
//! concerts); see [`crate::holds`].

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Redis could not be used; callers degrade (seat map) or answer 503 (holds).
#[derive(Debug, thiserror::Error)]
pub enum RedisUnavailable {
    /// The first connection has not been made yet.
    #[error("redis is not connected yet")]
    NotConnected,
    /// A command failed or timed out.
    #[error("redis command failed: {0}")]
    Command(#[from] redis::RedisError),
}

/// A shared, lazily connected handle to Redis.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    config: ConnectionManagerConfig,
    connection: OnceCell<ConnectionManager>,
    keys: Keys,
}

impl RedisLink {
    /// A link to `url`; nothing is connected until [`Self::connect`].
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnect quickly and give up quickly: a request must not wait
            // for Redis; the next one tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                connection: OnceCell::new(),
                keys: Keys {
                    prefix: prefix.to_owned(),
                },
            }),
        })
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Tries to make the first connection once, then, if Redis is not
    /// there, keeps trying in the background, so that a service started
    /// before Redis finds it once it is up. Only this makes connections:
    /// requests never wait on a connection attempt.
    pub async fn connect(&self) {
        if self.try_connect().await.is_ok() {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            while let Err(e) = link.try_connect().await {
                tracing::warn!(error = %e, "redis unreachable; serving without it for now");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            tracing::info!("redis connected");
        });
    }

    async fn try_connect(&self) -> Result<(), redis::RedisError> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(inner.client.clone(), inner.config.clone())
            })
            .await
            .map(drop)
    }

    /// The shared multiplexed connection (a cheap clone), or an error at
    /// once if the first connection has not been made yet.
    pub fn connection(&self) -> Result<ConnectionManager, RedisUnavailable> {
        self.inner
            .connection
            .get()
            .cloned()
            .ok_or(RedisUnavailable::NotConnected)
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        let mut connection = self.connection().map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Every key inventory writes, in one place, under a configurable prefix
/// (so several deployments, or parallel tests, can share one Redis).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The concert's current seat-map version, or `missing` (null caching).
    pub fn version(&self, event: Uuid) -> String {
        format!("{}event:{{{event}}}:version", self.prefix)
    }

    /// The prefix of the concert's seat-map keys; the version follows it.
    pub fn seat_map_prefix(&self, event: Uuid) -> String {
        format!("{}event:{{{event}}}:seatmap:", self.prefix)
    }

    /// The seat map of one version. Never overwritten with other data: a new
    /// version is a new key, which is what makes stale fills harmless.
    pub fn seat_map(&self, event: Uuid, version: i64) -> String {
        format!("{}{version}", self.seat_map_prefix(event))
    }

    /// The hold on one seat (expires by itself).
    pub fn hold(&self, event: Uuid, seat: &str) -> String {
        format!("{}event:{{{event}}}:hold:{seat}", self.prefix)
    }

    /// Index of the concert's holds: seat → expiry (ms), for the seat map.
    pub fn holds(&self, event: Uuid) -> String {
        format!("{}event:{{{event}}}:holds", self.prefix)
    }

    /// A customer's live holds on the concert: member = seat, score =
    /// expiry (ms). Under the concert's hash tag, like every other key the
    /// hold scripts touch, so they run on Redis Cluster; which is why the
    /// hold limit counts per concert.
    pub fn customer_holds(&self, event: Uuid, customer: Uuid) -> String {
        format!("{}event:{{{event}}}:customer:{customer}:holds", self.prefix)
    }
}
