//! Building and running the reporting service: connect (creating the
//! database on first start), migrate, bind, then project `ORDER_EVENTS`
//! and serve reports until shutdown.

use std::time::Duration;

use consumer::{Consumer, ConsumerSpec};
use messaging::StreamKind;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::http::{HttpState, router};
use crate::projection::{CONSUMER, LiveProjection};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Postgres is unreachable or the URL is wrong.
    #[error(transparent)]
    Postgres(#[from] pgkit::ConnectError),
    /// `NATS_URL` is unusable.
    #[error(transparent)]
    Nats(#[from] messaging::MessagingError),
    /// The keys for bearer tokens cannot be loaded.
    #[error(transparent)]
    Keys(#[from] httpkit::auth::KeysError),
    /// A migration failed.
    #[error("cannot migrate the reporting database")]
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
    router: axum::Router,
    serve_limits: httpkit::serve::ServeLimits,
    db: PgPool,
    js: async_nats::jetstream::Context,
    topology: messaging::Topology,
    consumer: Consumer<LiveProjection>,
}

impl Application {
    /// Connects, migrates and binds.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let db = pgkit::connect(&config.database_url, config.pool).await?;
        crate::MIGRATOR
            .run(&db)
            .await
            .map_err(StartupError::Migrate)?;
        let nats = messaging::connect(&config.nats_url, "reporting").await?;
        let js = async_nats::jetstream::new(nats.clone());
        let consumer = Consumer::new(
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents),
            db.clone(),
            js.clone(),
            config.topology.clone(),
            LiveProjection,
        );
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let router = httpkit::layers::standard(
            router(
                HttpState {
                    db: db.clone(),
                    nats,
                    js: js.clone(),
                    topology: config.topology.clone(),
                    consumer: consumer.metrics(),
                },
                verifier,
            ),
            httpkit::layers::HttpLimits {
                request_timeout: Duration::from_secs(10),
                body_limit: 1024,
            },
        );
        Ok(Self {
            listener,
            serve_limits: config.serve,
            router,
            db,
            js,
            topology: config.topology,
            consumer,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The database, JetStream and names a rebuild needs.
    pub fn rebuild_handles(&self) -> (PgPool, async_nats::jetstream::Context, messaging::Topology) {
        (self.db.clone(), self.js.clone(), self.topology.clone())
    }

    /// Projects and serves until `shutdown`; the message in hand finishes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        let consumer = self.consumer;
        let token = shutdown.clone();
        tasks.spawn(async move { consumer.run(token).await });
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "reporting listening"
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
        tracing::info!("reporting stopped");
        served
    }
}
