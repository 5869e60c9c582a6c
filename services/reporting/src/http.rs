//! The reports API (port 8083).
//!
//! | route | what |
//! |---|---|
//! | `GET /reports/events/{id}` | operator: tickets sold, revenue and refunds of a concert |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (Postgres, NATS) |
//! | `GET /metrics` | the projection consumer's counts and lag |
//! | `GET /openapi.json`, `GET /docs` | this API's `OpenAPI` document and a page that renders it ([`ApiDoc`]) |
//!
//! Sales figures are the business's, not a customer's: the report needs an
//! operator's bearer token (`httpkit::auth::Operator`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use httpkit::Problem;
use httpkit::auth::{BearerScheme, NOT_OPERATOR, Operator, UNAUTHENTICATED, Verifier};
use httpkit::health::{Readiness, healthz};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// What the handlers share.
pub struct HttpState {
    /// The reporting database.
    pub db: PgPool,
    /// NATS, for readiness.
    pub nats: async_nats::Client,
    /// JetStream, for the consumer's lag.
    pub js: async_nats::jetstream::Context,
    /// Stream and consumer names.
    pub topology: messaging::Topology,
    /// The live projection's counts.
    pub consumer: Arc<consumer::runtime::ConsumerMetrics>,
}

/// A concert's sales.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesReport {
    /// The concert.
    pub event_id: Uuid,
    /// Seats of confirmed orders.
    pub tickets_sold: i64,
    /// What they cost together, in cents.
    pub revenue_cents: i64,
    /// Paid orders refunded because their seats were gone.
    pub refunds: i64,
    /// The read-model generation answering (changes with each rebuild).
    pub generation: i32,
}

/// The reports API's `OpenAPI` document, served at `/openapi.json` and
/// rendered at `/docs` (`httpkit::docs`).
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "Reporting API",
        description = "Sales per concert: a read model projected from the order events.\n\n\
            The numbers follow the events by a moment (eventual consistency), and the whole \
            model can be rebuilt by replaying the stream (`ticketctl reporting rebuild`), after \
            which `generation` changes. Reports need an operator's bearer token \
            (`role: operator`). Every error is `application/problem+json`.",
    ),
    paths(
        report,
        readyz,
        metrics,
        httpkit::health::healthz,
        httpkit::docs::openapi_json,
        httpkit::docs::docs_page,
    ),
    tags(
        (name = "reports", description = "Sales figures per concert."),
        (name = "ops", description = "Health and metrics, for orchestrators and operators."),
        (name = "docs", description = "This documentation."),
    ),
)]
pub struct ApiDoc;

/// Every route [`router`] mounts, as `(method, path)`. The API test checks
/// that [`ApiDoc`] documents exactly these: add a route here, in the router
/// and (with `#[utoipa::path]`) in [`ApiDoc`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/reports/events/{id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// The router: bearer tokens verified on the report route.
pub fn router(state: HttpState, verifier: Verifier) -> Router {
    Router::new()
        .route("/reports/events/{id}", get(report))
        .route_layer(axum::middleware::from_fn_with_state(
            verifier,
            httpkit::auth::authenticate,
        ))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
        .route("/healthz", get(healthz))
        .merge(httpkit::docs::routes(&ApiDoc::openapi()))
}

/// `GET /reports/events/{id}`.
#[utoipa::path(
    get,
    path = "/reports/events/{id}",
    tag = "reports",
    summary = "A concert's sales",
    description = "Tickets sold and revenue of the concert's confirmed orders, and how many \
        paid orders were refunded, from the active read-model generation.",
    params(("id" = Uuid, Path, description = "The concert's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report.", body = SalesReport),
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem,
            content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_OPERATOR, body = httpkit::Problem,
            content_type = "application/problem+json"),
        (status = 400, description = "`/problems/invalid-field` naming `id`: not a UUID.",
            body = httpkit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`/problems/report-not-found`: no confirmed or refunded \
            order for this concert yet.",
            body = httpkit::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, or \
            `/problems/timeout`.",
            body = httpkit::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
async fn report(
    State(state): State<Arc<HttpState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<SalesReport>, Problem> {
    let event_id = Uuid::parse_str(&id).map_err(|e| {
        Problem::invalid_field("id", format!("{id:?} is not a UUID: {e}"))
            .status(StatusCode::BAD_REQUEST)
    })?;
    let row = sqlx::query!(
        r#"
        select s.tickets_sold, s.revenue_cents, s.refunds, p.active_generation
        from projection_state p
        join sales s on s.generation = p.active_generation
        where s.event_id = $1
        "#,
        event_id,
    )
    .fetch_optional(&state.db)
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "reading the report failed");
        Problem::dependency_unavailable("postgres")
    })?
    .ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "report-not-found",
            "No sales for this event",
        )
        .detail(format!(
            "no confirmed or refunded order for event {event_id} yet"
        ))
    })?;
    Ok(Json(SalesReport {
        event_id,
        tickets_sold: row.tickets_sold,
        revenue_cents: row.revenue_cents,
        refunds: row.refunds,
        generation: row.active_generation,
    }))
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Metrics",
    description = "Prometheus text: the projection consumer's counts and lag.",
    responses((status = 200, description = "The metrics.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn metrics(State(state): State<Arc<HttpState>>) -> impl axum::response::IntoResponse {
    // Lag comes from the server; without NATS the counts are still worth showing.
    let lag = consumer::lag(
        &state.js,
        &state.topology,
        messaging::StreamKind::OrderEvents,
        crate::projection::CONSUMER,
    )
    .await
    .ok();
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        consumer::render_metrics(&[(crate::projection::CONSUMER, state.consumer.snapshot(), lag)]),
    )
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
