//! Relay configuration, from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR`, `REQUEST_TIMEOUT`, `BODY_LIMIT_BYTES`, `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `0.0.0.0:8084`, `10s`, `1024`, `5s`, `1024` | the server of the operational routes (health, metrics, docs): see `service::HttpConfig` |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/orders` | the source database (its outbox table) |
//! | `RELAY_SOURCE` | the database name | label in logs and metrics, e.g. `orders` |
//! | `NATS_URL`, `NATS_PREFIX` | `nats://127.0.0.1:4222`, empty | NATS (a cluster: its servers' URLs, comma-separated), and the prefix of stream and subject names |
//! | `NATS_STREAM_REPLICAS` | `1` | copies of each stream the relay provisions (3 on a NATS cluster; see `messaging::topology`) |
//! | `RELAY_BATCH_SIZE` | `256` | rows claimed per pass |
//! | `RELAY_CONCURRENCY` | `2` | passes in flight per instance (one overlaps its database work with another's publishing) |
//! | `RELAY_WAKEUP` | `listen` | `listen`: `LISTEN outbox` plus polling; `poll`: polling only |
//! | `RELAY_POLL_INTERVAL` | `500ms` | pause when idle (the fallback when notifications are lost) |
//! | `RELAY_PUBLISH_TIMEOUT` | `5s` | wait for a PubAck |
//! | `RELAY_MAX_ATTEMPTS` | `10` | failures of one row before it is parked |
//! | `RELAY_BACKOFF_MAX` | `10s` | cap of the backoff while NATS or Postgres is down |
//! | `RELAY_DEDUP_WINDOW` | `10m` | JetStream duplicate window of the streams it provisions |
//! | `RELAY_RETENTION` | `0s` | `0s`: delete a row once acked; otherwise mark it and delete it this long after |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | logs and traces: see the `telemetry` crate (read by `service::run`) |

use std::time::Duration;

use messaging::NatsConfig;
use service::HttpConfig;
use settings::{ConfigError, Env, SecretUrl};

/// How the relay learns that there is work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// `LISTEN outbox`, with polling as the fallback.
    Listen,
    /// Polling only.
    Poll,
}

/// Everything the relay needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP server of the operational routes.
    pub http: HttpConfig,
    /// The source database (connected lazily, so no pool settings).
    pub database_url: SecretUrl,
    /// Name of the source in logs and metrics.
    pub source: String,
    pub nats: NatsConfig,
    /// Rows per pass.
    pub batch_size: i64,
    /// Concurrent passes.
    pub concurrency: usize,
    /// How the relay wakes up.
    pub wakeup: Wakeup,
    /// Idle pause.
    pub poll_interval: Duration,
    /// PubAck timeout.
    pub publish_timeout: Duration,
    /// Failures before a row is parked.
    pub max_attempts: i32,
    /// Backoff cap while a dependency is down.
    pub backoff_max: Duration,
    /// Duplicate window of provisioned streams.
    pub dedup_window: Duration,
    /// How long published rows are kept; zero deletes them once acked.
    pub retention: Duration,
}

impl Config {
    /// What the relay does with a row JetStream acknowledged.
    pub fn after_publish(&self) -> crate::store::AfterPublish {
        if self.retention.is_zero() {
            crate::store::AfterPublish::Delete
        } else {
            crate::store::AfterPublish::Mark
        }
    }
}

impl service::Configuration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let database_url = env.url_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orders");
        let default_source = database_url
            .expose()
            .rsplit('/')
            .next()
            .and_then(|db| db.split('?').next())
            .unwrap_or("outbox")
            .to_owned();
        let wakeup = match env.string_or("RELAY_WAKEUP", "listen").as_str() {
            "listen" => Wakeup::Listen,
            "poll" => Wakeup::Poll,
            other => {
                return Err(ConfigError::Invalid {
                    name: "RELAY_WAKEUP".into(),
                    value: other.into(),
                    reason: "expected listen or poll".into(),
                });
            }
        };
        let batch_size: i64 = env.parse_or("RELAY_BATCH_SIZE", 256)?;
        if !(1..=10_000).contains(&batch_size) {
            return Err(ConfigError::Invalid {
                name: "RELAY_BATCH_SIZE".into(),
                value: batch_size.to_string(),
                reason: "expected 1 to 10000".into(),
            });
        }
        Ok(Self {
            http: HttpConfig::from_env(env, 8084, 1024)?,
            source: env.string_or("RELAY_SOURCE", &default_source),
            database_url,
            nats: NatsConfig::from_env(env)?,
            batch_size,
            concurrency: match env.parse_or("RELAY_CONCURRENCY", 2_usize)? {
                n @ 1..=16 => n,
                n => {
                    return Err(ConfigError::Invalid {
                        name: "RELAY_CONCURRENCY".into(),
                        value: n.to_string(),
                        reason: "expected 1 to 16".into(),
                    });
                }
            },
            wakeup,
            poll_interval: env.duration_or("RELAY_POLL_INTERVAL", Duration::from_millis(500))?,
            publish_timeout: env.duration_or("RELAY_PUBLISH_TIMEOUT", Duration::from_secs(5))?,
            max_attempts: env.parse_or("RELAY_MAX_ATTEMPTS", 10)?,
            backoff_max: env.duration_or("RELAY_BACKOFF_MAX", Duration::from_secs(10))?,
            dedup_window: env.duration_or("RELAY_DEDUP_WINDOW", Duration::from_mins(10))?,
            retention: env.duration_or("RELAY_RETENTION", Duration::ZERO)?,
        })
    }

    fn http(&self) -> HttpConfig {
        self.http
    }
}

#[cfg(test)]
mod tests {
    use service::Configuration as _;

    use super::*;

    #[test]
    fn the_source_defaults_to_the_database_name() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://u@h/inventory?sslmode=disable")]);
        assert_eq!(Config::from_env(&env).unwrap().source, "inventory");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("RELAY_WAKEUP", "sometimes"),
            ("RELAY_BATCH_SIZE", "0"),
            ("NATS_PREFIX", "a.b"),
            ("RELAY_CONCURRENCY", "0"),
        ] {
            let err = Config::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
