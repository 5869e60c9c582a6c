//! Building and running the inventory service: connect (creating the
//! database on first start), migrate, connect NATS and (in the background,
//! if it is not there yet) Redis, bind; then serve the API, consume
//! `ORDER_EVENTS`, listen for catalog changes and warm the seat-map cache,
//! until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use consumer::{Consumer, ConsumerSpec};
use messaging::StreamKind;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::allocation::{CONSUMER, SeatAllocation};
use crate::catalog::Catalog;
use crate::holds::Holds;
use crate::http::AppState;
use crate::redis_link::RedisLink;
use crate::seatmap::SeatMaps;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Postgres is unreachable or the URL is wrong.
    #[error(transparent)]
    Postgres(#[from] pgkit::ConnectError),
    /// `NATS_URL` is unusable.
    #[error(transparent)]
    Nats(#[from] messaging::MessagingError),
    /// NATS refused the catalog subscription.
    #[error("cannot subscribe to catalog changes")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// `REDIS_URL` does not parse (an unreachable Redis is not an error).
    #[error("REDIS_URL is invalid")]
    Redis(#[from] redis::RedisError),
    /// The keys for bearer tokens cannot be loaded.
    #[error(transparent)]
    Keys(#[from] httpkit::auth::KeysError),
    /// A migration failed.
    #[error("cannot migrate the inventory database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The listen address is taken.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
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
    state: AppState,
    consumer: Consumer<SeatAllocation>,
    catalog_changes: async_nats::Subscriber,
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
        let redis = RedisLink::new(
            config.redis_url.expose(),
            &config.redis_prefix,
            config.redis_timeout,
        )?;
        redis.connect().await;

        let seat_maps = SeatMaps::new(db.clone(), redis.clone(), config.seat_maps);
        let catalog = Catalog::new(
            db.clone(),
            nats.clone(),
            config.topology.prefix(),
            config.catalog_ttl,
        );
        let catalog_changes = catalog.subscribe().await?;
        let holds = Holds::new(
            db.clone(),
            redis.clone(),
            config.hold_ttl,
            config.hold_limit,
        );
        let consumer = Consumer::new(
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents),
            db.clone(),
            async_nats::jetstream::new(nats.clone()),
            config.topology.clone(),
            SeatAllocation {
                outbox: outbox::Writer::with_notify(config.outbox_notify),
                seat_maps: Some(seat_maps.clone()),
            },
        );
        let state = AppState {
            db,
            redis,
            nats,
            catalog,
            seat_maps,
            holds,
            warmup_window: config.warmup_window,
            consumer: consumer.metrics(),
            topology: config.topology.clone(),
            admission: httpkit::admission::AdmissionMetrics::default(),
        };
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let router = crate::http::router(
            state.clone(),
            verifier,
            httpkit::layers::HttpLimits {
                request_timeout: Duration::from_secs(10),
                body_limit: 1024 * 1024,
            },
            config.admission,
        );
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        Ok(Self {
            listener,
            serve_limits: config.serve,
            router,
            state,
            consumer,
            catalog_changes,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The connection pool, for tests that seed or inspect seats.
    pub fn db(&self) -> &PgPool {
        &self.state.db
    }

    /// The seat maps, for tests and benchmarks that count database loads.
    pub fn seat_maps(&self) -> &SeatMaps {
        &self.state.seat_maps
    }

    /// Serves, consumes and listens until `shutdown`; the message and the
    /// requests in hand finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        let consumer = self.consumer;
        let token = shutdown.clone();
        tasks.spawn(async move { consumer.run(token).await });
        let catalog = self.state.catalog.clone();
        let token = shutdown.clone();
        let changes = self.catalog_changes;
        tasks.spawn(async move { catalog.listen(changes, token).await });
        // Warm in the background: serving must not wait for it, and a cold
        // map is only slower, never wrong.
        let seat_maps = self.state.seat_maps.clone();
        let window = self.state.warmup_window;
        tasks.spawn(async move {
            if let Err(e) = seat_maps.warmup(window).await {
                tracing::warn!(error = %e, "seat-map warmup failed; maps load on first use");
            }
        });
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "inventory listening"
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
        self.state.db.close().await;
        tracing::info!("inventory stopped");
        served
    }
}
