//! Configuration of the reporting service, from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR`, `REQUEST_TIMEOUT`, `BODY_LIMIT_BYTES`, `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `0.0.0.0:8083`, `10s`, `1024`, `5s`, `1024` | the reports API's server: see `service::HttpConfig` |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/reporting` | created if missing |
//! | `NATS_URL` | `nats://127.0.0.1:4222` | |
//! | `NATS_PREFIX` | empty | prefix of stream, subject and consumer names |
//! | `AUTH_JWKS_PATH` or `AUTH_JWKS_URL` | required | the keys bearer tokens are checked against, see `httpkit::auth` |
//! | `AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_LEEWAY` | `ticketing-dev`, `ticketing`, `30s` | what a token must say |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see the `telemetry` crate |

use settings::{ConfigError, Env, SecretUrl};
use telemetry::TelemetryConfig;

/// Everything the reporting service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP server.
    pub http: service::HttpConfig,
    /// The reporting database.
    pub database_url: SecretUrl,
    /// Pool settings.
    pub pool: pgkit::PoolSettings,
    /// NATS.
    pub nats_url: SecretUrl,
    /// Stream, subject and consumer names.
    pub topology: messaging::Topology,
    /// How bearer tokens are checked.
    pub auth: httpkit::auth::AuthConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// Reads the configuration; a bad value is an error naming its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http: service::HttpConfig::from_env(env, 8083, 1024)?,
            database_url: env.url_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/reporting",
            ),
            pool: pgkit::PoolSettings::from_env(env)?,
            nats_url: env.url_or("NATS_URL", "nats://127.0.0.1:4222"),
            topology: messaging::Topology::from_env(env)?,
            auth: httpkit::auth::AuthConfig::from_env(env)?,
            telemetry: TelemetryConfig::from_env("reporting", env)?,
        })
    }
}
