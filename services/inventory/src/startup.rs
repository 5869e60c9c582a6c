//! Building and running the inventory service: connect (creating the
//! database on first start), migrate, bind, then consume `ORDER_EVENTS` and
//! serve health until shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use consumer::{Consumer, ConsumerSpec};
use httpkit::health::{Readiness, healthz};
use messaging::StreamKind;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::allocation::{CONSUMER, SeatAllocation};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Postgres is unreachable or the URL is wrong.
    #[error(transparent)]
    Postgres(#[from] pgkit::ConnectError),
    /// `NATS_URL` is unusable.
    #[error(transparent)]
    Nats(#[from] messaging::MessagingError),
    /// A migration failed.
    #[error("cannot migrate the inventory database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The listen address is taken.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A built service, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: PgPool,
    consumer: Consumer<SeatAllocation>,
}

struct HealthState {
    db: PgPool,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    topology: messaging::Topology,
    consumer: Arc<consumer::runtime::ConsumerMetrics>,
}

impl Application {
    /// Connects, migrates and binds.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let db = pgkit::connect(&config.database_url, config.pool).await?;
        crate::MIGRATOR
            .run(&db)
            .await
            .map_err(StartupError::Migrate)?;
        let nats = messaging::connect(&config.nats_url, "inventory").await?;
        let consumer = Consumer::new(
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents),
            db.clone(),
            async_nats::jetstream::new(nats.clone()),
            config.topology.clone(),
            SeatAllocation {
                outbox: outbox::Writer::with_notify(config.outbox_notify),
            },
        );
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let router = Router::new()
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(Arc::new(HealthState {
                db: db.clone(),
                js: async_nats::jetstream::new(nats.clone()),
                nats,
                topology: config.topology.clone(),
                consumer: consumer.metrics(),
            }))
            .route("/healthz", get(healthz));
        let router = httpkit::layers::standard(
            router,
            httpkit::layers::HttpLimits {
                request_timeout: Duration::from_secs(10),
                body_limit: 64 * 1024,
            },
        );
        Ok(Self {
            listener,
            router,
            db,
            consumer,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The connection pool, for tests that seed or inspect seats.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Consumes and serves until `shutdown`; the message in hand finishes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        let consumer = self.consumer;
        let token = shutdown.clone();
        tasks.spawn(async move { consumer.run(token).await });
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "inventory listening"
        );
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        self.db.close().await;
        tracing::info!("inventory stopped");
        served
    }
}

/// `GET /metrics`: the consumer's counts and lag (Prometheus text).
async fn metrics(State(state): State<Arc<HealthState>>) -> impl axum::response::IntoResponse {
    // Lag comes from the server; without NATS the counts are still worth showing.
    let lag = consumer::lag(
        &state.js,
        &state.topology,
        StreamKind::OrderEvents,
        CONSUMER,
    )
    .await
    .ok();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        consumer::render_metrics(&[(CONSUMER, state.consumer.snapshot(), lag)]),
    )
}

/// `GET /readyz`: Postgres answers and the NATS client is connected.
async fn readyz(State(state): State<Arc<HealthState>>) -> Readiness {
    Readiness::new()
        .check("postgres", pgkit::ping(&state.db).await)
        .check("nats", messaging::check_connected(&state.nats))
}
