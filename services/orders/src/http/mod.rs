//! The HTTP API of the orders service.
//!
//! | route | what |
//! |---|---|
//! | `POST /orders` | verify the holds with inventory, create an order (201, `PENDING`, `OrderCreated`) |
//! | `GET /orders/{id}` | read an order |
//! | `POST /orders/{id}/pay` | `PENDING → PAID`, `OrderPaid` |
//! | `POST /orders/{id}/cancel` | `PENDING → CANCELLED`, `OrderCancelled` |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (Postgres) |
//! | `GET /metrics` | the inventory-reactions consumer's counts and lag |
//! | `GET /openapi.json`, `GET /docs` | this API's `OpenAPI` document and a page that renders it ([`ApiDoc`]) |
//!
//! Every order route needs the customer's bearer token
//! (`httpkit::auth::Customer`), and an order exists only for the customer
//! who created it. Every POST requires an `Idempotency-Key` header (see
//! [`crate::idempotency`]). Errors are `application/problem+json`
//! ([`ApiError`]).

mod docs;
mod error;
mod orders;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use httpkit::admission::{AdmissionLimits, AdmissionMetrics};
use httpkit::auth::Verifier;
use httpkit::health::{Readiness, healthz};
use httpkit::layers::HttpLimits;
use sqlx::PgPool;
use utoipa::OpenApi as _;

pub use docs::ApiDoc;
pub use error::ApiError;

/// Every route [`router`] mounts, as `(method, path)`. The API tests check
/// that [`ApiDoc`] documents exactly these and that each one answers: add a
/// route here, in the router and (with `#[utoipa::path]`) in [`ApiDoc`].
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/orders"),
    ("GET", "/orders/{id}"),
    ("POST", "/orders/{id}/pay"),
    ("POST", "/orders/{id}/cancel"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The orders database.
    pub db: PgPool,
    /// How long idempotency keys replay.
    pub idempotency_key_ttl: Duration,
    /// Writes events into the outbox (and maybe notifies the relay).
    pub outbox: outbox::Writer,
    /// Verifies holds when an order is created.
    pub inventory: crate::inventory_client::InventoryClient,
    /// The inventory-reactions consumer, when it runs, for `/metrics`.
    pub consumer_metrics: Option<ConsumerMetricsHandle>,
    /// Admission rejections, for `/metrics`.
    pub admission: AdmissionMetrics,
}

/// What `/metrics` needs to report a consumer's counts and lag.
#[derive(Clone)]
pub struct ConsumerMetricsHandle {
    /// The consumer's counters.
    pub counts: Arc<consumer::runtime::ConsumerMetrics>,
    /// JetStream, for the lag.
    pub js: async_nats::jetstream::Context,
    /// Stream and consumer names.
    pub topology: messaging::Topology,
}

/// The complete router: bearer tokens verified on the order routes, then
/// admission control (a per-customer rate limit and an in-flight limit that
/// sheds at once, so a flood neither queues on the connection pool nor
/// reaches inventory), and the standard middleware around everything.
pub fn router(
    state: AppState,
    verifier: Verifier,
    limits: HttpLimits,
    admission: AdmissionLimits,
) -> Router {
    let orders =
        httpkit::admission::admission(orders::routes(), admission, &state.admission).layer(
            axum::middleware::from_fn_with_state(verifier, httpkit::auth::authenticate),
        );
    let api = Router::new()
        .merge(orders)
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
        .route("/healthz", get(healthz))
        .merge(httpkit::docs::routes(&ApiDoc::openapi()));
    httpkit::layers::standard(api, limits)
}

type SharedState = State<Arc<AppState>>;

/// `GET /metrics`: admission control's refusals, and the
/// inventory-reactions consumer's counts and lag (when it runs).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Metrics",
    description = "Prometheus text: requests refused by admission control, and the \
        inventory-reactions consumer's counts and lag (when the consumer runs).",
    responses((status = 200, description = "The metrics.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn metrics(State(state): SharedState) -> impl axum::response::IntoResponse {
    let consumer = match &state.consumer_metrics {
        Some(handle) => {
            let name = crate::reactions::CONSUMER;
            let lag = consumer::lag(
                &handle.js,
                &handle.topology,
                messaging::StreamKind::InventoryEvents,
                name,
            )
            .await
            .ok();
            consumer::render_metrics(&[(name, handle.counts.snapshot(), lag)])
        }
        None => String::new(),
    };
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.admission.render() + &consumer,
    )
}

/// `GET /readyz`: 200 when Postgres answers within a second, else 503.
/// (NATS only carries inventory's answers to this service, which wait in
/// the stream while it is away; it does not decide readiness.)
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when Postgres answers within a second. NATS does not decide readiness: \
        inventory's answers wait in the stream while it is away.",
    responses(
        (status = 200, description = "Ready.", body = httpkit::health::ReadinessReport),
        (status = 503, description = "Not ready: Postgres did not answer.",
            body = httpkit::health::ReadinessReport),
    ),
)]
async fn readyz(State(state): SharedState) -> Readiness {
    Readiness::new().check("postgres", pgkit::ping(&state.db).await)
}
