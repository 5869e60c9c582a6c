//! Connecting a service to its own Postgres database.
//!
//! [`connect`] retries with backoff until a deadline (under
//! `docker compose up`, Postgres may still be starting), creates the
//! service's database on first start (so a fresh server needs no manual
//! step), and fails with an error that names Postgres and the URL, password
//! redacted.

#![warn(missing_docs)]

use std::time::Duration;

use settings::SecretUrl;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};

/// Pool settings from a service's configuration.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a request waits for a connection before giving up (503).
    pub acquire_timeout: Duration,
    /// How long start-up keeps retrying the first connection.
    pub connect_deadline: Duration,
}

impl PoolSettings {
    /// Reads `DB_MAX_CONNECTIONS` (10), `DB_ACQUIRE_TIMEOUT` (3s) and
    /// `DB_CONNECT_DEADLINE` (30s).
    pub fn from_env(env: &settings::Env) -> Result<Self, settings::ConfigError> {
        Ok(Self {
            max_connections: env.parse_or("DB_MAX_CONNECTIONS", 10)?,
            acquire_timeout: env.duration_or("DB_ACQUIRE_TIMEOUT", Duration::from_secs(3))?,
            connect_deadline: env.duration_or("DB_CONNECT_DEADLINE", Duration::from_secs(30))?,
        })
    }
}

/// A service's own database: where it is, and the pool's settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`; the database is created on first start.
    pub url: SecretUrl,
    /// The pool.
    pub pool: PoolSettings,
    /// `DB_CONSUMER_CONNECTIONS` (8): the size of a second pool, for the
    /// service's event consumers alone, so that a burst of requests cannot
    /// starve the saga of connections, nor a backlog the requests. Each
    /// consumer runs as many lanes as half of it allows (`consumer` crate,
    /// `runtime::lanes`).
    pub consumer_connections: u32,
}

impl DatabaseConfig {
    /// Reads `DATABASE_URL` (default: database `name` on the local server,
    /// `postgres://postgres@127.0.0.1:5432/<name>`) and the pool's variables
    /// ([`PoolSettings::from_env`]), and `DB_CONSUMER_CONNECTIONS`.
    pub fn from_env(env: &settings::Env, name: &str) -> Result<Self, settings::ConfigError> {
        Ok(Self {
            url: env.url_or(
                "DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:5432/{name}"),
            ),
            pool: PoolSettings::from_env(env)?,
            consumer_connections: env.parse_or("DB_CONSUMER_CONNECTIONS", 8)?,
        })
    }
}

/// The database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Postgres URL.
    #[error("{url} is not a valid Postgres URL")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The parser's complaint.
        #[source]
        source: sqlx::Error,
    },
    /// Postgres did not accept a connection before the deadline.
    #[error("cannot connect to postgres at {url} within {deadline:?}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// How long it was tried.
        deadline: Duration,
        /// The last error.
        #[source]
        source: sqlx::Error,
    },
}

/// Connects to `url`, creating its database if missing; see the module docs.
pub async fn connect(url: &SecretUrl, settings: PoolSettings) -> Result<PgPool, ConnectError> {
    let options: PgConnectOptions =
        url.expose()
            .parse()
            .map_err(|source| ConnectError::InvalidUrl {
                url: url.to_string(),
                source,
            })?;
    let deadline = tokio::time::Instant::now() + settings.connect_deadline;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            ensure_database(&options).await?;
            PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(options.clone())
                .await
        };
        match attempt.await {
            Ok(pool) => return Ok(pool),
            Err(source) if tokio::time::Instant::now() + delay > deadline => {
                return Err(ConnectError::Unreachable {
                    url: url.to_string(),
                    deadline: settings.connect_deadline,
                    source,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "postgres not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Creates the database named in `options` if it does not exist, through
/// the server's `postgres` database.
async fn ensure_database(options: &PgConnectOptions) -> sqlx::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool = sqlx::query_scalar!(
        r#"select exists(select 1 from pg_database where datname = $1) as "exists!""#,
        name
    )
    .fetch_one(&mut admin)
    .await?;
    if !exists {
        // Identifiers cannot be bound as parameters; quote it ourselves.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = name, "created database"),
            // Another instance created it between our check and our create.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Readiness probe: Postgres answers `select 1` within a second. The error
/// says why not, for `/readyz`.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query_scalar!(r#"select 1 as "one!""#).fetch_one(pool),
    )
    .await;
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1s".to_owned()),
    }
}

/// Whether Postgres refused a value's text: 22021 (a NUL byte, or a byte
/// sequence invalid in the database's encoding) or 22P05 (a character the
/// encoding cannot hold). The handlers refuse control characters before
/// they reach SQL; this is the safety net that turns anything they miss
/// into the client's 422, not a 500.
pub fn is_unstorable_text(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| matches!(c.as_ref(), "22021" | "22P05")))
}

/// Whether `error` means Postgres is unreachable or refusing connections
/// (an outage to wait out, answered 503 or retried later), as opposed to a
/// bug or a constraint violation.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // Class 08: connection exceptions; 57P01-03: admin shutdown, crash
        // shutdown, cannot connect now (starting up).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
