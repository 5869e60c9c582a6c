//! Building and running the service.
//!
//! Order: connect to Postgres (retrying, then failing with an error that
//! names it) → create the database if missing → migrate → bind → serve.
//! [`Application::build`] binds before returning so that tests can ask for
//! port 0 and read the real port from [`Application::port`].

use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use consumer::{Consumer, ConsumerSpec};
use messaging::StreamKind;

use crate::Config;
use crate::http::{AppState, router};
use crate::inventory_client::InventoryClient;
use crate::reactions::InventoryReactions;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Postgres is unreachable or the URL is wrong.
    #[error(transparent)]
    Postgres(#[from] pgkit::ConnectError),
    /// `NATS_URL` is unusable.
    #[error(transparent)]
    Nats(#[from] messaging::MessagingError),
    /// The HTTP client for inventory could not be built.
    #[error(transparent)]
    InventoryClient(#[from] crate::inventory_client::ClientBuildError),
    /// The keys for bearer tokens cannot be loaded.
    #[error(transparent)]
    Keys(#[from] httpkit::auth::KeysError),
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
    serve_limits: httpkit::serve::ServeLimits,
    db: PgPool,
    reactions: Option<Consumer<InventoryReactions>>,
}

impl Application {
    /// Connects, migrates and binds; see the module docs.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let db = pgkit::connect(
            &config.database_url,
            pgkit::PoolSettings {
                max_connections: config.db_max_connections,
                acquire_timeout: config.db_acquire_timeout,
                connect_deadline: config.db_connect_deadline,
            },
        )
        .await?;
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
        let (reactions, consumer_metrics) = if config.consume_inventory_events {
            let nats = messaging::connect(&config.nats_url, "orders").await?;
            let js = async_nats::jetstream::new(nats);
            let consumer = Consumer::new(
                ConsumerSpec::new(crate::reactions::CONSUMER, StreamKind::InventoryEvents),
                db.clone(),
                js.clone(),
                config.topology.clone(),
                InventoryReactions {
                    outbox: outbox::Writer::with_notify(config.outbox_notify),
                },
            );
            let metrics = crate::http::ConsumerMetricsHandle {
                counts: consumer.metrics(),
                js,
                topology: config.topology.clone(),
            };
            (Some(consumer), Some(metrics))
        } else {
            (None, None)
        };
        let state = AppState {
            db: db.clone(),
            idempotency_key_ttl: config.idempotency_key_ttl,
            outbox: outbox::Writer::with_notify(config.outbox_notify),
            inventory: InventoryClient::new(config.inventory_url.url(), config.inventory_timeout)?,
            consumer_metrics,
            admission: httpkit::admission::AdmissionMetrics::default(),
        };
        Ok(Self {
            listener,
            serve_limits: config.serve,
            router: router(state, verifier, config.http, config.admission),
            db,
            reactions,
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
        if let Some(reactions) = self.reactions {
            let shutdown = shutdown.clone();
            // Finishes the message in hand when `shutdown` is cancelled.
            tasks.spawn(async move { reactions.run(shutdown).await });
        }
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "orders listening"
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
        tracing::info!("orders stopped");
        served
    }
}
