//! Configuration of the inventory service, from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR` | `0.0.0.0:8081` | health and metrics (the seat API comes later) |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/inventory` | created if missing |
//! | `DB_MAX_CONNECTIONS` | `10` | pool size |
//! | `NATS_URL` | `nats://127.0.0.1:4222` | |
//! | `NATS_PREFIX` | empty | prefix of stream, subject and consumer names |
//! | `OUTBOX_NOTIFY` | `true` | `NOTIFY` the relay on commit |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | see the `telemetry` crate |

use settings::{ConfigError, Env, SecretUrl};
use std::net::SocketAddr;
use telemetry::TelemetryConfig;

/// Everything the inventory service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port (tests).
    pub http_addr: SocketAddr,
    /// The inventory database.
    pub database_url: SecretUrl,
    /// Pool settings.
    pub pool: pgkit::PoolSettings,
    /// NATS.
    pub nats_url: SecretUrl,
    /// Stream, subject and consumer names.
    pub topology: messaging::Topology,
    /// Whether writes `NOTIFY` listening relays.
    pub outbox_notify: bool,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// Reads the configuration; a bad value is an error naming its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http_addr: env.parse_or("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            database_url: env.url_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/inventory",
            ),
            pool: pgkit::PoolSettings::from_env(env)?,
            nats_url: env.url_or("NATS_URL", "nats://127.0.0.1:4222"),
            topology: messaging::Topology::from_env(env)?,
            outbox_notify: env.flag_or("OUTBOX_NOTIFY", true)?,
            telemetry: TelemetryConfig::from_env("inventory", env)?,
        })
    }
}
