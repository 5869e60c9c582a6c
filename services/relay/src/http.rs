//! Health and metrics endpoints of the relay (port 8084).
//!
//! `/readyz` is ready when Postgres answers, the NATS client is connected,
//! the streams are provisioned and the last pass succeeded; otherwise 503
//! naming what is wrong. `/openapi.json` and `/docs` describe these
//! routes ([`ApiDoc`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use httpkit::health::{Readiness, healthz};
use utoipa::OpenApi;

use crate::metrics::Metrics;
use crate::relay_loop::LoopHealth;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    /// Source database.
    pub db: sqlx::PgPool,
    /// NATS client.
    pub nats: async_nats::Client,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The relay loop's state.
    pub health: Arc<LoopHealth>,
    /// Metrics label.
    pub source: String,
}

/// The relay's `OpenAPI` document, served at `/openapi.json` and rendered
/// at `/docs` (`httpkit::docs`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Outbox relay",
        description = "Health and metrics of an outbox relay, which publishes the committed \
            rows of one database's outbox to NATS JetStream, in order per aggregate. It has no \
            business API.",
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

/// Every route [`router`] mounts, as `(method, path)`. The relay tests check
/// that [`ApiDoc`] documents exactly these: add a route here, in the router
/// and (with `#[utoipa::path]`) in [`ApiDoc`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/docs`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .route("/healthz", get(healthz))
        .merge(httpkit::docs::routes(&ApiDoc::openapi()))
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when Postgres answers within a second, the NATS client is connected, \
        the streams are provisioned and the last pass succeeded; otherwise 503 naming what is \
        wrong.",
    responses(
        (status = 200, description = "Ready.", body = httpkit::health::ReadinessReport),
        (status = 503, description = "Not ready; `checks` says why.",
            body = httpkit::health::ReadinessReport),
    ),
)]
async fn readyz(State(state): State<HttpState>) -> Readiness {
    let ping = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query!("select 1 as one from outbox limit 0").fetch_optional(&state.db),
    )
    .await;
    let postgres = match ping {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1s".to_owned()),
    };
    let nats = messaging::check_connected(&state.nats);
    let mut readiness = Readiness::new()
        .check("postgres", postgres)
        .check("nats", nats);
    for (name, problem) in state.health.problems() {
        readiness = readiness.check(name, Err(problem));
    }
    readiness
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Metrics",
    description = "Prometheus text: batches, rows published, duplicates, publish errors and \
        parked rows, the backlog and the age of the oldest pending row, labelled with \
        `RELAY_SOURCE`.",
    responses((status = 200, description = "The metrics.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    // The backlog is measured live; if Postgres is down the counters are
    // still worth reporting, so its absence is not an error here.
    let backlog = crate::store::backlog(&state.db).await.ok();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(&state.source, backlog),
    )
}
