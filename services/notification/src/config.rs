//! Configuration of the notification service, from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR`, `REQUEST_TIMEOUT`, `BODY_LIMIT_BYTES`, `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `0.0.0.0:8082`, `10s`, `1024`, `5s`, `1024` | the server of the operational routes (health, metrics, docs): see `service::HttpConfig` |
//! | `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT`, `DB_CONNECT_DEADLINE`, `DB_CONSUMER_CONNECTIONS` | `postgres://postgres@127.0.0.1:5432/notification`, `10`, `3s`, `30s`, `8` | its database, created if missing; the last is the pool of its event consumers: see `pgkit::DatabaseConfig` |
//! | `NATS_URL`, `NATS_PREFIX` | `nats://127.0.0.1:4222`, empty | NATS (a cluster: its servers' URLs, comma-separated), and the prefix of stream, subject and consumer names |
//! | `EMAIL_PROVIDER` | `log` | `log` (JSON lines to `EMAIL_LOG_PATH`, or the log) or `smtp` |
//! | `EMAIL_LOG_PATH` | unset | file the `log` provider appends to |
//! | `SMTP_HOST`, `SMTP_PORT` | `127.0.0.1`, `1025` | plain SMTP (a mail catcher such as Mailpit) |
//! | `SMTP_LOOKUP_URL` | unset | the provider's message API (Mailpit's, e.g. `http://mailpit:8025`), asked whether it accepted an e-mail whose worker died mid-send (`crate::mail`); unset: such an e-mail is sent again |
//! | `EMAIL_FROM` | `tickets@example.com` | sender |
//! | `EMAIL_RATE_PER_SECOND` | `20` | what the provider allows, for all workers together |
//! | `EMAIL_FAIL_SHARE` | `0` | share of sends that fail on purpose (0 to 1), to watch retries and dead letters |
//! | `WORKERS` | `2` | concurrent senders |
//! | `WORKER_MAX_DELIVER` | `5` | attempts before a command is dead-lettered |
//! | `WORKER_RETRY_DELAY` | `2s` | first retry delay; it doubles per attempt |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | logs and traces: see the `telemetry` crate (read by `service::run`) |

use std::path::PathBuf;
use std::time::Duration;

use messaging::NatsConfig;
use pgkit::DatabaseConfig;
use service::HttpConfig;
use settings::{ConfigError, Env};

/// Where e-mails go.
#[derive(Debug, Clone)]
pub enum Provider {
    /// Append to a file (or log) instead of sending.
    Log {
        /// The file, or `None` for the log.
        path: Option<PathBuf>,
    },
    /// Plain SMTP.
    Smtp {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The provider's message API, if it has one that says whether it
        /// accepted a message (Mailpit's `/api/v1/search`).
        lookup: Option<String>,
    },
}

/// Everything the notification service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP server of the operational routes.
    pub http: HttpConfig,
    /// Its database: the `notifications` rows and the outbox.
    pub database: DatabaseConfig,
    /// Where the order events and the commands are.
    pub nats: NatsConfig,
    /// Where e-mails go.
    pub provider: Provider,
    pub from: String,
    /// Sends per second across all workers.
    pub rate_per_second: u32,
    /// Share of sends failed on purpose.
    pub fail_share: f64,
    /// Concurrent senders.
    pub workers: usize,
    /// Attempts before a command is dead-lettered.
    pub worker_max_deliver: i64,
    /// First retry delay.
    pub worker_retry_delay: Duration,
}

impl service::Configuration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let invalid = |name: &str, value: String, reason: &str| ConfigError::Invalid {
            name: name.into(),
            value,
            reason: reason.into(),
        };
        let provider = match env.string_or("EMAIL_PROVIDER", "log").as_str() {
            "log" => Provider::Log {
                path: env.get("EMAIL_LOG_PATH").map(PathBuf::from),
            },
            "smtp" => Provider::Smtp {
                host: env.string_or("SMTP_HOST", "127.0.0.1"),
                port: env.parse_or("SMTP_PORT", 1025)?,
                lookup: env
                    .get("SMTP_LOOKUP_URL")
                    .map(|url| url.trim_end_matches('/').to_owned()),
            },
            other => {
                return Err(invalid(
                    "EMAIL_PROVIDER",
                    other.into(),
                    "expected log or smtp",
                ));
            }
        };
        let fail_share: f64 = env.parse_or("EMAIL_FAIL_SHARE", 0.0)?;
        if !(0.0..=1.0).contains(&fail_share) {
            return Err(invalid(
                "EMAIL_FAIL_SHARE",
                fail_share.to_string(),
                "expected 0 to 1",
            ));
        }
        let rate_per_second: u32 = env.parse_or("EMAIL_RATE_PER_SECOND", 20)?;
        if rate_per_second == 0 {
            return Err(invalid(
                "EMAIL_RATE_PER_SECOND",
                "0".into(),
                "expected at least 1",
            ));
        }
        Ok(Self {
            http: HttpConfig::from_env(env, 8082, 1024)?,
            database: DatabaseConfig::from_env(env, "notification")?,
            nats: NatsConfig::from_env(env)?,
            provider,
            from: env.string_or("EMAIL_FROM", "tickets@example.com"),
            rate_per_second,
            fail_share,
            workers: env.parse_or("WORKERS", 2)?,
            worker_max_deliver: env.parse_or("WORKER_MAX_DELIVER", 5)?,
            worker_retry_delay: env.duration_or("WORKER_RETRY_DELAY", Duration::from_secs(2))?,
        })
    }

    fn http(&self) -> HttpConfig {
        self.http
    }
}
