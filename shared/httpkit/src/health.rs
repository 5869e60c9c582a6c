//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process can serve HTTP: an orchestrator
//! restarts the process when it fails. `/readyz` checks the dependencies a
//! request needs: when it fails, traffic is routed elsewhere but the process
//! is left alone, because restarting it would not bring Postgres back.
//!
//! A dependency the service can do without (a cache in front of Postgres,
//! say) is checked with [`Readiness::degraded`]: when it fails the instance
//! still takes traffic, slower or with less, and says so (`"degraded"`), so
//! that an operator sees it without the load balancer draining every
//! instance at once over a cache outage.

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
    checks: Vec<Check>,
}

#[derive(Debug)]
struct Check {
    dependency: &'static str,
    result: Result<(), String>,
    /// Whether a failure makes the instance not ready (else: degraded).
    required: bool,
}

impl Readiness {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the result of checking `dependency`, which requests need:
    /// if it failed, the instance is not ready (503).
    #[must_use]
    pub fn check(mut self, dependency: &'static str, result: Result<(), String>) -> Self {
        self.checks.push(Check {
            dependency,
            result,
            required: true,
        });
        self
    }

    /// Records the result of checking an optional `dependency`, one the
    /// service can serve without: if it failed, the answer stays 200 with
    /// the status `"degraded"`, and its check reads `degraded: <error>`.
    #[must_use]
    pub fn degraded(mut self, dependency: &'static str, result: Result<(), String>) -> Self {
        self.checks.push(Check {
            dependency,
            result,
            required: false,
        });
        self
    }
}

impl IntoResponse for Readiness {
    /// 503 "not ready" when a required dependency failed; else 200, "ready"
    /// or "degraded" when an optional one failed. Every check is listed.
    fn into_response(self) -> Response {
        let failed = |required: bool| {
            self.checks
                .iter()
                .any(|c| c.required == required && c.result.is_err())
        };
        let (status, word) = if failed(true) {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        } else if failed(false) {
            (StatusCode::OK, "degraded")
        } else {
            (StatusCode::OK, "ready")
        };
        let checks: Map<String, Value> = self
            .checks
            .into_iter()
            .map(|check| {
                let value = match (check.result, check.required) {
                    (Ok(()), _) => json!("ok"),
                    (Err(e), true) => json!(format!("unavailable: {e}")),
                    (Err(e), false) => json!(format!("degraded: {e}")),
                };
                (check.dependency.to_owned(), value)
            })
            .collect();
        (status, Json(json!({ "status": word, "checks": checks }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(readiness: Readiness) -> (StatusCode, Value) {
        let response = readiness.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body is in memory");
        (status, serde_json::from_slice(&body).expect("a JSON body"))
    }

    #[tokio::test]
    async fn all_dependencies_up_is_ready() {
        let (status, body) = answer(
            Readiness::new()
                .check("postgres", Ok(()))
                .degraded("redis", Ok(())),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "status": "ready", "checks": { "postgres": "ok", "redis": "ok" } })
        );
    }

    #[tokio::test]
    async fn an_optional_dependency_down_is_degraded_but_still_200() {
        let (status, body) = answer(
            Readiness::new()
                .check("postgres", Ok(()))
                .degraded("redis", Err("connection refused".to_owned())),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["checks"]["redis"], "degraded: connection refused");
        assert_eq!(body["checks"]["postgres"], "ok");
    }

    #[tokio::test]
    async fn a_required_dependency_down_is_not_ready_whatever_the_optional_ones_say() {
        let (status, body) = answer(
            Readiness::new()
                .check("postgres", Err("timed out".to_owned()))
                .degraded("redis", Err("connection refused".to_owned())),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "not ready");
        assert_eq!(body["checks"]["postgres"], "unavailable: timed out");
        assert_eq!(body["checks"]["redis"], "degraded: connection refused");
    }
}
