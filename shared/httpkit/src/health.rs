//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process can serve HTTP: an orchestrator
//! restarts the process when it fails. `/readyz` checks the dependencies a
//! request needs: when it fails, traffic is routed elsewhere but the process
//! is left alone, because restarting it would not bring Postgres back.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value, json};

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The outcome of a readiness check, one entry per dependency.
#[derive(Debug, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the result of checking `dependency`.
    #[must_use]
    pub fn check(mut self, dependency: &'static str, result: Result<(), String>) -> Self {
        self.checks.push((dependency, result));
        self
    }
}

impl IntoResponse for Readiness {
    /// 200 when every dependency answered, else 503 naming the ones that did not.
    fn into_response(self) -> Response {
        let ready = self.checks.iter().all(|(_, r)| r.is_ok());
        let checks: Map<String, Value> = self
            .checks
            .into_iter()
            .map(|(name, result)| {
                let value = match result {
                    Ok(()) => json!("ok"),
                    Err(e) => json!(format!("unavailable: {e}")),
                };
                (name.to_owned(), value)
            })
            .collect();
        let (status, word) = if ready {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        };
        (status, Json(json!({ "status": word, "checks": checks }))).into_response()
    }
}
