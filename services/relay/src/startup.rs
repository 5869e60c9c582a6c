//! Building the relay: a lazily connected pool, a NATS client, the relay
//! loop's passes and the retention sweeper as background tasks, and the
//! operational routes only (it has no business API). Serving, readiness,
//! metrics and stopping are `service`'s.
//!
//! Unlike a request-serving service, the relay starts even when Postgres or
//! NATS is down: both connections are lazy and retried by the relay loop, and
//! `/readyz` says what is missing: `postgres` and `nats` (the connections),
//! and the loop's own verdicts (`streams`, `publishing`, `claiming`:
//! [`LoopHealth::problems`]). A relay that crash-loops while the broker
//! restarts would only add noise to an outage.

use std::sync::Arc;
use std::time::Duration;

use service::{App, Builder, StartupError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::metrics::{BacklogGauges, Metrics};
use crate::publisher::{Publisher, PublisherSettings};
use crate::relay_loop::{LoopHealth, RelayLoop, run_retention};

/// The outbox relay, for one source database.
pub struct Relay;

/// The relay's `OpenAPI` document: its title only, as it has no business
/// API; `service` adds the operational routes.
#[derive(OpenApi)]
#[openapi(info(
    title = "Outbox relay",
    description = "Health and metrics of an outbox relay, which publishes the committed \
        rows of one database's outbox to NATS JetStream, in order per aggregate. It has no \
        business API.",
))]
pub struct ApiDoc;

/// How long a scrape waits for the backlog: as long as a readiness check
/// (`service::ops::CHECK_TIMEOUT`), not the pool's acquire timeout, so that
/// a scrape stays quick while Postgres is down.
const BACKLOG_TIMEOUT: Duration = service::ops::CHECK_TIMEOUT;

impl service::Service for Relay {
    const NAME: &'static str = "relay";
    type Config = Config;

    async fn build(config: Config, mut app: Builder) -> Result<App, StartupError> {
        let options: PgConnectOptions = config.database_url.expose().parse().map_err(|e| {
            StartupError::dependency(
                "`DATABASE_URL` is not a valid Postgres URL",
                format!("{}: {e}", config.database_url),
            )
        })?;
        // Per concurrent pass: its transaction and its LISTEN connection;
        // plus room for /readyz, /metrics and the retention sweeper.
        let connections = u32::try_from(config.concurrency * 2 + 2).unwrap_or(34);
        let db = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        // Ready when the source's outbox answers: a relay pointed at the
        // wrong database says so here, not at its first claim.
        let probe = db.clone();
        app.check("postgres", move || {
            let db = probe.clone();
            async move {
                sqlx::query!("select 1 as one from outbox limit 0")
                    .fetch_optional(&db)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        });
        app.close_at_stop(db.clone());
        // Named after the source: `relay-orders` in the server's connection list.
        let nats =
            messaging::connect(&config.nats.url, &format!("relay-{}", config.source)).await?;
        app.watch_nats(nats.clone());
        let js = async_nats::jetstream::context::ContextBuilder::new()
            .timeout(config.publish_timeout)
            // A pass sends a whole batch before awaiting acks; let it.
            .max_ack_inflight(
                usize::try_from(config.batch_size).unwrap_or(256) * config.concurrency * 2,
            )
            .backpressure_on_inflight(true)
            .build(nats.clone());

        let metrics = Arc::new(Metrics::default());
        metrics.register(app.registry(), &config.source);
        let gauges = BacklogGauges::default();
        gauges.register(app.registry(), &config.source);
        let measured = db.clone();
        app.on_scrape(move || {
            let (db, gauges) = (measured.clone(), gauges.clone());
            async move {
                let backlog =
                    tokio::time::timeout(BACKLOG_TIMEOUT, crate::store::backlog(&db)).await;
                gauges.set(backlog.ok().and_then(Result::ok));
            }
        });

        let health = Arc::new(LoopHealth::default());
        let problems = health.clone();
        app.readiness("relay loop", move || {
            let report = problems.problems().into_iter().fold(
                httpkit::health::Readiness::new(),
                |report, (name, problem)| report.check(name, Err(problem)),
            );
            async move { report }
        });
        let relay_loop = Arc::new(RelayLoop {
            publisher: Publisher::new(
                db.clone(),
                nats,
                js.clone(),
                PublisherSettings {
                    topology: config.nats.topology.clone(),
                    batch_size: config.batch_size,
                    max_attempts: config.max_attempts,
                    after_publish: config.after_publish(),
                },
                metrics.clone(),
            ),
            js,
            topology: config.nats.topology,
            dedup_window: config.dedup_window,
            wakeup: config.wakeup,
            poll_interval: config.poll_interval,
            backoff_max: config.backoff_max,
            health,
        });
        // Several passes in flight, like several instances in one process:
        // the claim query's row locks keep them apart.
        for _ in 0..config.concurrency {
            let relay_loop = relay_loop.clone();
            app.task(move |stop| async move { relay_loop.run(stop).await });
        }
        if !config.retention.is_zero() {
            let retention = config.retention;
            app.task(move |stop| run_retention(db, retention, stop));
        }
        // This instance's counters, for tests.
        app.lend(metrics);
        app.serve(OpenApiRouter::with_openapi(ApiDoc::openapi()))
            .await
    }
}
