//! What several commands share: where the servers are by default, the
//! options that name NATS and the signing key, and how a command connects
//! to Postgres or NATS or builds a signed-in HTTP client.
//!
//! Kept to what at least two commands use; a helper that serves one
//! command lives in that command's file.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use httpkit::auth::dev::{Issuer, TokenRequest};
use messaging::Topology;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// Where the servers are when neither a flag nor its environment variable
/// says otherwise: the ports compose publishes on the host's loopback
/// (README, quick start). One list, so a port changes in one place.
pub(crate) mod defaults {
    /// The Postgres server's maintenance database (where scratch databases
    /// are created).
    pub(crate) const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    /// The orders service's database (it holds an outbox).
    pub(crate) const ORDERS_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/orders";
    /// The reporting service's database (the read model).
    pub(crate) const REPORTING_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/reporting";
    /// The inventory service's database.
    pub(crate) const INVENTORY_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/inventory";
    /// The notification service's database.
    pub(crate) const NOTIFICATION_DATABASE: &str =
        "postgres://postgres@127.0.0.1:5432/notification";
    /// NATS with JetStream.
    pub(crate) const NATS: &str = "nats://127.0.0.1:4222";
    /// Redis.
    pub(crate) const REDIS: &str = "redis://127.0.0.1:6379";
    /// The orders API.
    pub(crate) const ORDERS_API: &str = "http://localhost:8080";
    /// The inventory API.
    pub(crate) const INVENTORY_API: &str = "http://localhost:8081";
    /// The reporting API.
    pub(crate) const REPORTING_API: &str = "http://localhost:8083";
    /// Jaeger's UI and query API.
    pub(crate) const JAEGER: &str = "http://localhost:16686";
}

/// How long a command waits for a server before saying it is not there:
/// an operator at a terminal wants an answer, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where NATS is and which names to use (`consumers`, `dlq`, `reporting`).
#[derive(Debug, Args)]
pub(crate) struct Nats {
    /// NATS with JetStream.
    #[arg(long, env = "NATS_URL", default_value = defaults::NATS)]
    nats_url: String,
    /// Prefix of stream and subject names.
    #[arg(long, env = "NATS_PREFIX", default_value = "")]
    nats_prefix: String,
}

impl Nats {
    /// A JetStream context and the stream names under the prefix.
    pub(crate) async fn connect(
        &self,
    ) -> anyhow::Result<(async_nats::jetstream::Context, Topology)> {
        let url = settings::SecretUrl::new(&self.nats_url);
        let (addresses, options) = messaging::options_for(&url)?;
        let client = options
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(addresses)
            .await
            .with_context(|| format!("cannot reach NATS at {url}"))?;
        let topology = Topology::new(&self.nats_prefix).map_err(anyhow::Error::msg)?;
        Ok((async_nats::jetstream::new(client), topology))
    }
}

/// A small pool on a service database; the error names the server with
/// its password masked.
pub(crate) async fn connect_postgres(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let url = settings::SecretUrl::new(url);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(url.expose())
        .await
        .with_context(|| format!("cannot reach Postgres at {url}"))
}

/// A duration option (`--older-than`, `--duration`) in the syntax of the
/// services' own durations (`500ms`, `30s`, `5m`, `1h`), read by the same
/// code (`settings`), so `PAID_DEADLINE` means here what it means to the
/// service. Clap names the flag or the variable in its error; the reason
/// is all this adds.
pub(crate) fn duration(raw: &str) -> Result<Duration, String> {
    const NAME: &str = "DURATION";
    settings::Env::from_pairs([(NAME, raw)])
        .duration_or(NAME, Duration::ZERO)
        .map_err(|e| match e {
            settings::ConfigError::Invalid { reason, .. } => reason,
            other @ settings::ConfigError::Missing { .. } => other.to_string(),
        })
}

/// The private key the commands sign with (`token`, `seed`, `demo`); see
/// `keygen` for where it comes from.
#[derive(Debug, Args)]
pub(crate) struct SigningKey {
    /// The development issuer's private key, as `keygen` wrote it.
    #[arg(
        long = "signing-key",
        env = "AUTH_SIGNING_KEY",
        default_value = ".keys/signing.pem"
    )]
    path: std::path::PathBuf,
}

impl SigningKey {
    /// The issuer, or an error that says how to make one.
    pub(crate) fn issuer(&self) -> anyhow::Result<Issuer> {
        Issuer::from_file(&self.path).with_context(|| {
            format!(
                "cannot read the signing key {}: run `ticketctl keygen` first \
                 (or set AUTH_SIGNING_KEY)",
                self.path.display()
            )
        })
    }

    /// An operator's token.
    pub(crate) fn operator_token(&self) -> anyhow::Result<String> {
        Ok(self.issuer()?.mint(&TokenRequest::operator("ticketctl"))?)
    }

    /// `customer`'s token.
    pub(crate) fn customer_token(&self, customer: Uuid) -> anyhow::Result<String> {
        Ok(self.issuer()?.mint(&TokenRequest::customer(customer))?)
    }
}

/// `builder` finished as a client that sends `token` on every request, so
/// a story or a benchmark acts as one caller throughout. The header is
/// marked sensitive: a debug print of a request shows no token.
pub(crate) fn signed_in_client(
    token: &str,
    builder: reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::Client> {
    let mut authorization: reqwest::header::HeaderValue = format!("Bearer {token}").parse()?;
    authorization.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, authorization);
    Ok(builder.default_headers(headers).build()?)
}
