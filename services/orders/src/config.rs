//! Configuration of the orders service, read from the environment once at
//! start. Every variable has a local-development default.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR`, `REQUEST_TIMEOUT`, `BODY_LIMIT_BYTES`, `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `0.0.0.0:8080`, `10s`, `65536`, `5s`, `1024` | the orders API's server: see `service::HttpConfig` |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/orders` | the orders database (created if missing) |
//! | `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT`, `DB_CONNECT_DEADLINE`, `DB_CONSUMER_CONNECTIONS` | `10`, `3s`, `30s`, `8` | pool size, wait for a pooled connection before answering 503, how long start-up retries connecting, and the pool of the inventory-events consumer: see `pgkit::DatabaseConfig` |
//! | `IDEMPOTENCY_KEY_TTL` | `24h` | how long a key replays its response |
//! | `OUTBOX_NOTIFY` | `true` | `NOTIFY` the relay on commit (see the `outbox` crate for the cost) |
//! | `NATS_URL`, `NATS_PREFIX` | `nats://127.0.0.1:4222`, empty | NATS (a cluster: its servers' URLs, comma-separated), for inventory's events; the prefix of stream, subject and consumer names |
//! | `CONSUME_INVENTORY_EVENTS` | `true` | run the reaction to inventory's answers |
//! | `PAID_DEADLINE` | `5m` | how long a `PAID` order may wait for inventory's answer before `/metrics` counts it as stuck (`orders_stuck_paid`, see [`crate::stuck`]) |
//! | `INVENTORY_URL` | `http://127.0.0.1:8081` | inventory's API, where `POST /orders` verifies the customer's holds (plain `http`) |
//! | `INVENTORY_TIMEOUT` | `2s` | longest wait for inventory's answer (connecting included); past it the create answers 503 |
//! | `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`, `MAX_IN_FLIGHT`, `SHED_RETRY_AFTER` | `20`, `40`, `256`, `1s` | admission control of the order routes, per verified customer: see `httpkit::admission` |
//! | `AUTH_JWKS_PATH` or `AUTH_JWKS_URL` | required | the keys bearer tokens are checked against, see `httpkit::auth` |
//! | `AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_LEEWAY` | `ticketing-dev`, `ticketing`, `30s` | what a token must say |
//! | `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT` | | logs and traces: see the `telemetry` crate (read by `service::run`) |

use std::fmt;
use std::time::Duration;

use messaging::NatsConfig;
use pgkit::DatabaseConfig;
use service::HttpConfig;
use settings::{ConfigError, Env};

/// `PAID_DEADLINE` unless set: longer than a healthy saga ever takes. Each
/// of its two hops (inventory's consumer of `OrderPaid`, orders' consumer
/// of the answer) retries a failing message for about a minute (1, 5, 30,
/// 30 s: `consumer::ConsumerSpec`) before dead-lettering it, so an order
/// still PAID after five minutes is one whose messages stopped moving, not
/// one on its retries. `ticketctl orders stuck` uses it too.
pub const DEFAULT_PAID_DEADLINE: Duration = Duration::from_mins(5);

/// Everything the orders service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP server: address, request timeout, body limit, header-read
    /// timeout and connection cap.
    pub http: HttpConfig,
    /// The orders database and its pool.
    pub database: DatabaseConfig,
    /// How long an idempotency key replays its stored response.
    pub idempotency_key_ttl: Duration,
    /// Whether state changes `NOTIFY` listening relays.
    pub outbox_notify: bool,
    /// NATS, for consuming inventory's events.
    pub nats: NatsConfig,
    /// Whether to consume inventory's events (off for API-only tests).
    pub consume_inventory_events: bool,
    /// How long a paid order may wait for inventory's answer before it
    /// counts as a stuck saga.
    pub paid_deadline: Duration,
    /// Inventory's API, for verifying holds.
    pub inventory_url: HttpUrl,
    /// Longest wait for an answer from inventory.
    pub inventory_timeout: Duration,
    /// How bearer tokens are checked.
    pub auth: httpkit::auth::AuthConfig,
    /// Per-customer rate limit and load shedding of the order routes.
    pub admission: httpkit::admission::AdmissionLimits,
}

impl service::Configuration for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(env, 8080, 64 * 1024)?,
            database: DatabaseConfig::from_env(env, "orders")?,
            idempotency_key_ttl: env
                .duration_or("IDEMPOTENCY_KEY_TTL", Duration::from_hours(24))?,
            outbox_notify: env.flag_or("OUTBOX_NOTIFY", true)?,
            nats: NatsConfig::from_env(env)?,
            consume_inventory_events: env.flag_or("CONSUME_INVENTORY_EVENTS", true)?,
            paid_deadline: env.duration_or("PAID_DEADLINE", DEFAULT_PAID_DEADLINE)?,
            inventory_url: inventory_url(env)?,
            inventory_timeout: env.duration_or("INVENTORY_TIMEOUT", Duration::from_secs(2))?,
            auth: httpkit::auth::AuthConfig::from_env(env)?,
            admission: httpkit::admission::AdmissionLimits::from_env(env)?,
        })
    }

    fn http(&self) -> HttpConfig {
        self.http
    }
}

/// A plain `http://` URL; logged as the URL itself.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(reqwest::Url);

impl HttpUrl {
    /// The URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

/// `INVENTORY_URL`: an `http` URL. The client is built without TLS (the
/// call stays inside the deployment), so `https` is refused here rather
/// than failing on the first order.
fn inventory_url(env: &Env) -> Result<HttpUrl, ConfigError> {
    const NAME: &str = "INVENTORY_URL";
    let url: reqwest::Url = env.parse_or(NAME, "http://127.0.0.1:8081".parse().expect("valid"))?;
    if url.scheme() != "http" || url.host().is_none() {
        return Err(ConfigError::Invalid {
            name: NAME.to_owned(),
            value: url.to_string(),
            reason: "expected http://host:port (this build has no TLS)".to_owned(),
        });
    }
    Ok(HttpUrl(url))
}

#[cfg(test)]
mod tests {
    use service::Configuration as _;

    use super::*;

    #[test]
    fn defaults_point_at_local_servers() {
        // The keys have no default: a service that trusts no key is useless.
        let config = Config::from_env(&Env::from_pairs([("AUTH_JWKS_PATH", "jwks.json")])).unwrap();
        assert_eq!(config.http.addr.port(), 8080);
        assert_eq!(config.http.limits.body_limit, 64 * 1024);
        assert_eq!(config.idempotency_key_ttl, Duration::from_hours(24));
        assert_eq!(
            format!("{:?}", config.inventory_url),
            "\"http://127.0.0.1:8081/\""
        );
        assert_eq!(config.inventory_timeout, Duration::from_secs(2));
        assert_eq!(config.paid_deadline, Duration::from_mins(5));
    }

    #[test]
    fn an_inventory_url_must_be_plain_http() {
        for bad in ["https://inventory:8081", "inventory:8081", "not a url"] {
            let env = Env::from_pairs([("INVENTORY_URL", bad)]);
            let err = Config::from_env(&env).unwrap_err().to_string();
            assert!(err.contains("INVENTORY_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_token_keys_are_required() {
        let err = Config::from_env(&Env::default()).unwrap_err().to_string();
        assert!(err.contains("AUTH_JWKS_PATH"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let env = Env::from_pairs([("IDEMPOTENCY_KEY_TTL", "forever")]);
        let err = Config::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("IDEMPOTENCY_KEY_TTL"), "{err}");
    }
}
