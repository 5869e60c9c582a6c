//! Health and metrics endpoints of the relay (port 8084).
//!
//! `/readyz` is ready when Postgres answers, the NATS client is connected,
//! the streams are provisioned and the last pass succeeded; otherwise 503
//! naming what is wrong.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use httpkit::health::{Readiness, healthz};

use crate::metrics::Metrics;
use crate::worker::WorkerHealth;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    /// Source database.
    pub db: sqlx::PgPool,
    /// NATS client.
    pub nats: async_nats::Client,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Worker state.
    pub health: Arc<WorkerHealth>,
    /// Metrics label.
    pub source: String,
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .route("/healthz", get(healthz))
}

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
