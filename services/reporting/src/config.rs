//! Configuration of the reporting service, from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR`, `REQUEST_TIMEOUT`, `BODY_LIMIT_BYTES`, `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `0.0.0.0:8083`, `10s`, `1024`, `5s`, `1024` | the reports API's server: see `service::HttpConfig` |
//! | `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT`, `DB_CONNECT_DEADLINE`, `DB_CONSUMER_CONNECTIONS` | `postgres://postgres@127.0.0.1:5432/reporting`, `10`, `3s`, `30s`, `8` | its database, created if missing; the last is the pool of its event consumers: see `pgkit::DatabaseConfig` |
//! | `NATS_URL`, `NATS_PREFIX` | `nats://127.0.0.1:4222`, empty | NATS (a cluster: its servers' URLs, comma-separated), and the prefix of stream, subject and consumer names |
//! | `AUTH_JWKS_PATH` or `AUTH_JWKS_URL` | required | the keys bearer tokens are checked against, see `httpkit::auth` |
//! | `AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_LEEWAY` | `ticketing-dev`, `ticketing`, `30s` | what a token must say |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | logs and traces: see the `telemetry` crate (read by `service::run`) |

use messaging::NatsConfig;
use pgkit::DatabaseConfig;
use service::HttpConfig;
use settings::{ConfigError, Env};

/// Everything the reporting service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The reports API's server.
    pub http: HttpConfig,
    /// The read model's database.
    pub database: DatabaseConfig,
    /// Where the order events are.
    pub nats: NatsConfig,
    /// How bearer tokens are checked.
    pub auth: httpkit::auth::AuthConfig,
}

impl service::Configuration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(env, 8083, 1024)?,
            database: DatabaseConfig::from_env(env, "reporting")?,
            nats: NatsConfig::from_env(env)?,
            auth: httpkit::auth::AuthConfig::from_env(env)?,
        })
    }

    fn http(&self) -> HttpConfig {
        self.http
    }
}
