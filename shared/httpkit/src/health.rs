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
//!
//! The answers are typed ([`Alive`], [`ReadinessReport`]) so that the
//! services' API documents describe exactly what is sent; `/healthz`
//! is documented here once ([`healthz`]), each service's `/readyz` next to
//! its own checks.

use std::collections::BTreeMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of `GET /healthz`: always `{"status":"ok"}`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    summary = "Liveness",
    description = "Answers as long as the process serves HTTP; checks no dependency. \
                   An orchestrator restarts the process when this fails.",
    responses((status = 200, description = "The process is alive.", body = Alive)),
)]
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// The body of a `/readyz` answer, whatever its status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "status": "degraded",
    "checks": { "postgres": "ok", "redis": "degraded: connection refused" }
}))]
pub struct ReadinessReport {
    /// The verdict.
    pub status: ReadinessStatus,
    /// One entry per dependency: `ok`, `unavailable: <error>` (a required
    /// one failed) or `degraded: <error>` (an optional one failed).
    pub checks: BTreeMap<String, String>,
}

/// The verdict of a readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ReadinessStatus {
    /// Every dependency answered (200).
    #[serde(rename = "ready")]
    Ready,
    /// Only optional dependencies failed: still serving (200).
    #[serde(rename = "degraded")]
    Degraded,
    /// A required dependency failed (503).
    #[serde(rename = "not ready")]
    NotReady,
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

impl Readiness {
    /// The checks of both reports, in order: readiness checks run
    /// separately (each within its own time limit) are answered together.
    #[must_use]
    pub fn merge(mut self, other: Self) -> Self {
        self.checks.extend(other.checks);
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
        let (code, status) = if failed(true) {
            (StatusCode::SERVICE_UNAVAILABLE, ReadinessStatus::NotReady)
        } else if failed(false) {
            (StatusCode::OK, ReadinessStatus::Degraded)
        } else {
            (StatusCode::OK, ReadinessStatus::Ready)
        };
        let checks = self
            .checks
            .into_iter()
            .map(|check| {
                let value = match (check.result, check.required) {
                    (Ok(()), _) => "ok".to_owned(),
                    (Err(e), true) => format!("unavailable: {e}"),
                    (Err(e), false) => format!("degraded: {e}"),
                };
                (check.dependency.to_owned(), value)
            })
            .collect();
        (code, Json(ReadinessReport { status, checks })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

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
