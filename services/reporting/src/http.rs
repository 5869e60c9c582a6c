//! The reports API (port 8083).
//!
//! | route | what |
//! |---|---|
//! | `GET /reports/events/{id}` | tickets sold, revenue and refunds of a concert |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (Postgres, NATS) |
//! | `GET /metrics` | the projection consumer's counts and lag |

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use httpkit::Problem;
use httpkit::health::{Readiness, healthz};
use serde::Serialize;
use sqlx::PgPool;
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
#[derive(Debug, Serialize)]
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

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/reports/events/{id}", get(report))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
        .route("/healthz", get(healthz))
}

async fn report(
    State(state): State<Arc<HttpState>>,
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

async fn readyz(State(state): State<Arc<HttpState>>) -> Readiness {
    Readiness::new()
        .check("postgres", pgkit::ping(&state.db).await)
        .check("nats", messaging::check_connected(&state.nats))
}
