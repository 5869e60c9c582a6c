//! Building and running the service.
//!
//! Order: connect to Postgres (retrying, then failing with an error that
//! names it) → create the database if missing → migrate → bind → serve.
//! [`Application::build`] binds before returning so that tests can ask for
//! port 0 and read the real port from [`Application::port`].

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::http::{AppState, router};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `DATABASE_URL` is not a Postgres URL.
    #[error("DATABASE_URL {url} is not a valid Postgres URL")]
    InvalidDatabaseUrl {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// Postgres did not accept a connection before the deadline.
    #[error("cannot connect to postgres at {url} within {deadline:?}")]
    Postgres {
        /// The URL, password redacted.
        url: String,
        /// How long we tried.
        deadline: Duration,
        /// The last error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the orders database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A built service, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    db: PgPool,
}

impl Application {
    /// Connects, migrates and binds; see the module docs.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let db = connect(&config).await?;
        crate::MIGRATOR
            .run(&db)
            .await
            .map_err(StartupError::Migrate)?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let state = AppState {
            db: db.clone(),
            idempotency_key_ttl: config.idempotency_key_ttl,
            outbox: outbox::Writer::with_notify(config.outbox_notify),
        };
        Ok(Self {
            listener,
            router: router(state, config.http),
            db,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The connection pool, for tests that inspect the database.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight
    /// requests and background work and closes the pool.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        tasks.spawn(crate::idempotency::run_sweeper(
            self.db.clone(),
            Duration::from_mins(1),
            shutdown.clone(),
        ));
        tracing::info!(port = self.port(), "orders listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        self.db.close().await;
        tracing::info!("orders stopped");
        served
    }
}

/// Connects to the orders database, creating it if it does not exist, and
/// retries with backoff until `db_connect_deadline` (Postgres may still be
/// starting, e.g. under `docker compose up`).
async fn connect(config: &Config) -> Result<PgPool, StartupError> {
    let url = config.database_url.to_string();
    let options: PgConnectOptions = config.database_url.expose().parse().map_err(|source| {
        StartupError::InvalidDatabaseUrl {
            url: url.clone(),
            source,
        }
    })?;
    let options =
        options.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    let deadline = tokio::time::Instant::now() + config.db_connect_deadline;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            ensure_database(&options).await?;
            PgPoolOptions::new()
                .max_connections(config.db_max_connections)
                .acquire_timeout(config.db_acquire_timeout)
                .connect_with(options.clone())
                .await
        };
        match attempt.await {
            Ok(pool) => return Ok(pool),
            Err(source) if tokio::time::Instant::now() + delay > deadline => {
                return Err(StartupError::Postgres {
                    url,
                    deadline: config.db_connect_deadline,
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

/// Creates the service's database on first start, so a fresh Postgres
/// needs no manual step. Uses the server's `postgres` database to do it.
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
