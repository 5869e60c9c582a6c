//! Building and running the relay.
//!
//! Unlike a request-serving service, the relay starts even when Postgres or
//! NATS is down: both connections are lazy and retried by the relay loop, and
//! `/readyz` says what is missing. A relay that crash-loops while the
//! broker restarts would only add noise to an outage.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::http::{HttpState, router};
use crate::metrics::Metrics;
use crate::publisher::{Publisher, PublisherSettings};
use crate::relay_loop::{LoopHealth, RelayLoop, run_retention};

/// Why the relay could not start.
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
    /// `NATS_URL` is unusable.
    #[error(transparent)]
    Nats(#[from] messaging::MessagingError),
    /// The health port is taken.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A relay, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    serve_limits: httpkit::serve::ServeLimits,
    relay_loop: RelayLoop,
    concurrency: usize,
    db: sqlx::PgPool,
    retention: Duration,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Prepares connections (lazily) and binds the health port.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let options: PgConnectOptions = config.database_url.expose().parse().map_err(|source| {
            StartupError::InvalidDatabaseUrl {
                url: config.database_url.to_string(),
                source,
            }
        })?;
        // Per concurrent pass: its transaction and its LISTEN connection;
        // plus room for /readyz, /metrics and the retention sweeper.
        let connections = u32::try_from(config.concurrency * 2 + 2).unwrap_or(34);
        let db = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        let nats =
            messaging::connect(&config.nats_url, &format!("relay-{}", config.source)).await?;
        let js = async_nats::jetstream::context::ContextBuilder::new()
            .timeout(config.publish_timeout)
            // A pass sends a whole batch before awaiting acks; let it.
            .max_ack_inflight(
                usize::try_from(config.batch_size).unwrap_or(256) * config.concurrency * 2,
            )
            .backpressure_on_inflight(true)
            .build(nats.clone());
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(LoopHealth::default());
        let publisher = Publisher::new(
            db.clone(),
            nats.clone(),
            js.clone(),
            PublisherSettings {
                topology: config.topology.clone(),
                batch_size: config.batch_size,
                max_attempts: config.max_attempts,
                after_publish: config.after_publish(),
            },
            metrics.clone(),
        );
        let relay_loop = RelayLoop {
            publisher,
            js,
            topology: config.topology.clone(),
            dedup_window: config.dedup_window,
            wakeup: config.wakeup,
            poll_interval: config.poll_interval,
            backoff_max: config.backoff_max,
            health: health.clone(),
        };
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let router = httpkit::layers::standard(
            router(HttpState {
                db: db.clone(),
                nats,
                metrics: metrics.clone(),
                health,
                source: config.source.clone(),
            }),
            httpkit::layers::HttpLimits {
                request_timeout: Duration::from_secs(5),
                body_limit: 1024,
            },
        );
        Ok(Self {
            listener,
            serve_limits: config.serve,
            router,
            relay_loop,
            concurrency: config.concurrency,
            db,
            retention: config.retention,
            metrics,
        })
    }

    /// The bound health port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// This instance's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Relays until `shutdown`; the pass in flight finishes first.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        // Several passes in flight, like several instances in one process:
        // the claim query's row locks keep them apart.
        let relay_loop = Arc::new(self.relay_loop);
        for _ in 0..self.concurrency {
            let relay_loop = relay_loop.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { relay_loop.run(shutdown).await });
        }
        if !self.retention.is_zero() {
            tasks.spawn(run_retention(
                self.db.clone(),
                self.retention,
                shutdown.clone(),
            ));
        }
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "relay listening"
        );
        let served = httpkit::serve::serve(
            self.listener,
            self.router,
            self.serve_limits,
            shutdown.clone(),
        )
        .await;
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        self.db.close().await;
        tracing::info!("relay stopped");
        served
    }
}
