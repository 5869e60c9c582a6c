//! Building and running the notification service: connect (creating the
//! database on first start), migrate, bind, then run the translator and
//! `WORKERS` senders, and serve health and metrics (documented at
//! `/openapi.json` and `/docs`, [`ApiDoc`]) until shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use consumer::runtime::ConsumerMetrics;
use consumer::{Consumer, ConsumerSpec};
use httpkit::health::{Readiness, healthz};
use messaging::StreamKind;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::OpenApi;

use crate::Config;
use crate::commands::{self, EmailRequests};
use crate::mail::Mailer;
use crate::worker::{self, Sender};

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
    #[error("cannot migrate the notification database")]
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

/// The notification service's `OpenAPI` document: it has no business API,
/// only health and metrics.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Notification service",
        description = "Health and metrics of the notification service, which turns order \
            events into `SendEmail` commands on a work queue and sends them. It has no business \
            API.",
    ),
    paths(
        readyz,
        metrics,
        httpkit::health::healthz,
        httpkit::docs::openapi_json,
        httpkit::docs::docs_page,
    ),
    tags(
        (name = "ops", description = "Health and metrics, for orchestrators and operators."),
        (name = "docs", description = "This documentation."),
    ),
)]
pub struct ApiDoc;

/// Every route the service mounts, as `(method, path)`. The tests check
/// that [`ApiDoc`] documents exactly these: add a route here, in
/// [`Application::build`] and (with `#[utoipa::path]`) in [`ApiDoc`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// A built service, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    serve_limits: httpkit::serve::ServeLimits,
    db: PgPool,
    translator: Consumer<EmailRequests>,
    workers: Vec<Consumer<Sender>>,
}

struct HttpState {
    db: PgPool,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    topology: messaging::Topology,
    translator: Arc<ConsumerMetrics>,
    workers: Vec<Arc<ConsumerMetrics>>,
}

impl Application {
    /// Connects, migrates and binds.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let db = pgkit::connect(&config.database_url, config.pool).await?;
        crate::MIGRATOR
            .run(&db)
            .await
            .map_err(StartupError::Migrate)?;
        let nats = messaging::connect(&config.nats_url, "notification").await?;
        let js = async_nats::jetstream::new(nats.clone());
        let translator = Consumer::new(
            ConsumerSpec::new(commands::CONSUMER, StreamKind::OrderEvents),
            db.clone(),
            js.clone(),
            config.topology.clone(),
            EmailRequests {
                outbox: outbox::Writer::with_notify(true),
            },
        );
        let mailer = Arc::new(Mailer::new(
            &config.provider,
            &config.from,
            config.rate_per_second,
            config.fail_share,
        ));
        let retry_delays = (0..4)
            .map(|n| config.worker_retry_delay * 2_u32.pow(n))
            .collect();
        let worker_spec = ConsumerSpec {
            max_deliver: config.worker_max_deliver,
            retry_delays,
            ..ConsumerSpec::new(worker::CONSUMER, StreamKind::NotifyCommands)
        };
        let workers: Vec<Consumer<Sender>> = (0..config.workers.max(1))
            .map(|_| {
                Consumer::new(
                    worker_spec.clone(),
                    db.clone(),
                    js.clone(),
                    config.topology.clone(),
                    Sender {
                        mailer: mailer.clone(),
                    },
                )
            })
            .collect();
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let state = HttpState {
            db: db.clone(),
            nats,
            js,
            topology: config.topology.clone(),
            translator: translator.metrics(),
            workers: workers.iter().map(Consumer::metrics).collect(),
        };
        let router = Router::new()
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(Arc::new(state))
            .route("/healthz", get(healthz))
            .merge(httpkit::docs::routes(&ApiDoc::openapi()));
        let router = httpkit::layers::standard(
            router,
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
            translator,
            workers,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The notification database, for tests.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Runs until `shutdown`; every worker finishes the command in hand.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        let translator = self.translator;
        let token = shutdown.clone();
        tasks.spawn(async move { translator.run(token).await });
        for worker in self.workers {
            let token = shutdown.clone();
            tasks.spawn(async move { worker.run(token).await });
        }
        tracing::info!(
            port = self.listener.local_addr().map_or(0, |a| a.port()),
            "notification listening"
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
        tracing::info!("notification stopped");
        served
    }
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when Postgres answers and the NATS client is connected.",
    responses(
        (status = 200, description = "Ready.", body = httpkit::health::ReadinessReport),
        (status = 503, description = "Not ready: Postgres or NATS is unavailable.",
            body = httpkit::health::ReadinessReport),
    ),
)]
async fn readyz(State(state): State<Arc<HttpState>>) -> Readiness {
    Readiness::new()
        .check("postgres", pgkit::ping(&state.db).await)
        .check("nats", messaging::check_connected(&state.nats))
}

/// `GET /metrics`: both consumers' counts and lag (the workers summed).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Metrics",
    description = "Prometheus text: the counts and lag of the translator (order events to \
        commands) and of the workers that send (summed).",
    responses((status = 200, description = "The metrics.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn metrics(State(state): State<Arc<HttpState>>) -> impl axum::response::IntoResponse {
    let translator_lag = consumer::lag(
        &state.js,
        &state.topology,
        StreamKind::OrderEvents,
        commands::CONSUMER,
    )
    .await
    .ok();
    let workers_lag = consumer::lag(
        &state.js,
        &state.topology,
        StreamKind::NotifyCommands,
        worker::CONSUMER,
    )
    .await
    .ok();
    let workers = state
        .workers
        .iter()
        .fold(consumer::Counts::default(), |sum, m| {
            let c = m.snapshot();
            consumer::Counts {
                applied: sum.applied + c.applied,
                duplicates: sum.duplicates + c.duplicates,
                stale: sum.stale + c.stale,
                retried: sum.retried + c.retried,
                dead_lettered: sum.dead_lettered + c.dead_lettered,
            }
        });
    let body = consumer::render_metrics(&[
        (
            commands::CONSUMER,
            state.translator.snapshot(),
            translator_lag,
        ),
        (worker::CONSUMER, workers, workers_lag),
    ]);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}
