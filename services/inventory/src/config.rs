//! Configuration of the inventory service, from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR`, `REQUEST_TIMEOUT`, `BODY_LIMIT_BYTES`, `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `0.0.0.0:8081`, `10s`, `1048576` (1 MiB), `5s`, `1024` | the API's server: see `service::HttpConfig` |
//! | `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT`, `DB_CONNECT_DEADLINE`, `DB_CONSUMER_CONNECTIONS` | `postgres://postgres@127.0.0.1:5432/inventory`, `10`, `3s`, `30s`, `8` | its database, created if missing; the last is the pool of its event consumers: see `pgkit::DatabaseConfig` |
//! | `NATS_URL`, `NATS_PREFIX` | `nats://127.0.0.1:4222`, empty | NATS (a cluster: its servers' URLs, comma-separated), and the prefix of stream, subject and consumer names |
//! | `OUTBOX_NOTIFY` | `true` | `NOTIFY` the relay on commit |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` | seat-map cache and holds; optional at start |
//! | `REDIS_PREFIX` | `ticketing:` | prefix of every Redis key |
//! | `REDIS_TIMEOUT` | `500ms` | connect and command timeout: a slow Redis costs this, no more |
//! | `CATALOG_TTL` | `30s` | life of local catalog entries (bounds divergence if a broadcast is lost) |
//! | `SEATMAP_TTL` | `5m` | life of a cached seat map, ±10 % jitter |
//! | `SEATMAP_VERSION_TTL` | `60s` | life of a version key (bounds staleness if a bump was lost) |
//! | `SEATMAP_NULL_TTL` | `5s` | how long "no such concert" is cached |
//! | `SEATMAP_DB_CONCURRENCY`, `SEATMAP_DB_WAIT` | `4`, `2s` | most concurrent seat-map loads from Postgres, and how long a load waits for its turn before answering 503 |
//! | `SEATMAP_COALESCE` | `true` | coalesce concurrent misses (off only to measure a stampede) |
//! | `SEATMAP_OPENING_LEAD`, `SEATMAP_OPENING_HOT_FOR` | `5m`, `10m` | keep a sale's map hot from this long before it opens until this long after (both `0s`: off), see `seat_map::opening` |
//! | `HOLD_TTL` | `5m` | how long a hold lasts |
//! | `HOLD_LIMIT` | `10` | most live holds per customer and concert |
//! | `WARMUP_WINDOW` | `24h` | warm seat maps of concerts whose sale opens within this |
//! | `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`, `MAX_IN_FLIGHT`, `SHED_RETRY_AFTER` | `20`, `40`, `256`, `1s` | admission control of the catalog, seat-map and hold routes, see `httpkit::admission` |
//! | `AUTH_JWKS_PATH` or `AUTH_JWKS_URL` | required | the keys bearer tokens are checked against, see `httpkit::auth` |
//! | `AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_LEEWAY` | `ticketing-dev`, `ticketing`, `30s` | what a token must say |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | logs and traces: see the `telemetry` crate (read by `service::run`) |

use std::time::Duration;

use messaging::NatsConfig;
use pgkit::DatabaseConfig;
use service::HttpConfig;
use settings::{ConfigError, Env, SecretUrl};

use crate::seat_map::SeatMapConfig;

/// Everything the inventory service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    /// The inventory database and its pool.
    pub database: DatabaseConfig,
    /// NATS: the order events, and catalog changes between instances.
    pub nats: NatsConfig,
    /// Whether writes `NOTIFY` listening relays.
    pub outbox_notify: bool,
    /// Redis.
    pub redis_url: SecretUrl,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Redis connect and command timeout.
    pub redis_timeout: Duration,
    /// Life of local catalog entries.
    pub catalog_ttl: Duration,
    /// The seat-map cache.
    pub seat_maps: SeatMapConfig,
    /// How long a hold lasts.
    pub hold_ttl: Duration,
    /// Most live holds per customer and concert.
    pub hold_limit: u32,
    /// Warm seat maps of concerts whose sale opens within this.
    pub warmup_window: Duration,
    /// Rate limit and load shedding of the API.
    pub admission: httpkit::admission::AdmissionLimits,
    /// How bearer tokens are checked.
    pub auth: httpkit::auth::AuthConfig,
}

impl service::Configuration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = SeatMapConfig::default();
        Ok(Self {
            // Concerts are created with up to 10 000 seats in one body.
            http: HttpConfig::from_env(env, 8081, 1024 * 1024)?,
            database: DatabaseConfig::from_env(env, "inventory")?,
            nats: NatsConfig::from_env(env)?,
            outbox_notify: env.flag_or("OUTBOX_NOTIFY", true)?,
            redis_url: env.url_or("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_prefix: env.string_or("REDIS_PREFIX", "ticketing:"),
            redis_timeout: env.duration_or("REDIS_TIMEOUT", Duration::from_millis(500))?,
            catalog_ttl: env.duration_or("CATALOG_TTL", Duration::from_secs(30))?,
            seat_maps: SeatMapConfig {
                ttl: env.duration_or("SEATMAP_TTL", defaults.ttl)?,
                version_ttl: env.duration_or("SEATMAP_VERSION_TTL", defaults.version_ttl)?,
                null_ttl: env.duration_or("SEATMAP_NULL_TTL", defaults.null_ttl)?,
                db_concurrency: env.parse_or("SEATMAP_DB_CONCURRENCY", defaults.db_concurrency)?,
                db_wait: env.duration_or("SEATMAP_DB_WAIT", defaults.db_wait)?,
                coalesce: env.flag_or("SEATMAP_COALESCE", defaults.coalesce)?,
                opening_lead: env.duration_or("SEATMAP_OPENING_LEAD", defaults.opening_lead)?,
                opening_hot_for: env
                    .duration_or("SEATMAP_OPENING_HOT_FOR", defaults.opening_hot_for)?,
                ..defaults
            },
            hold_ttl: env.duration_or("HOLD_TTL", Duration::from_mins(5))?,
            hold_limit: env.parse_or("HOLD_LIMIT", 10)?,
            warmup_window: env.duration_or("WARMUP_WINDOW", Duration::from_hours(24))?,
            admission: httpkit::admission::AdmissionLimits::from_env(env)?,
            auth: httpkit::auth::AuthConfig::from_env(env)?,
        })
    }

    fn http(&self) -> HttpConfig {
        self.http
    }
}
