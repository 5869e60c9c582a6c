//! The operational routes every service serves, outside admission control
//! (an overloaded instance must still report its state and describe its
//! API) and without authentication (orchestrators and scrapers hold no
//! customer token; nothing here is a customer's data):
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness: the process serves HTTP (`httpkit::health`) |
//! | `GET /readyz` | readiness, from the checks the service declared on its [`Builder`] |
//! | `GET /metrics` | Prometheus text: RED metrics per route, and the service's own |
//! | `GET /openapi.json`, `GET /docs` | the API document, produced by the router, and a page that renders it (`httpkit::docs`) |
//!
//! A path that no route matches gets a 404 problem (`/problems/no-such-route`)
//! rather than an empty body, and [`route_report`] uses that answer to
//! check, from the router itself, that the documented operations are
//! mounted and that no undocumented method sits on a documented path.
//!
//! [`Builder`]: crate::Builder

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{StatusCode, header};
use httpkit::Problem;
use httpkit::health::Readiness;
use tower::ServiceExt as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics::Metrics;

/// How long a readiness check may take before it counts as failed: an
/// orchestrator's probe must get an answer, and a dependency that takes
/// longer is not one a request can use.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One declared readiness check: it adds its verdicts to a report.
pub(crate) struct Check {
    /// Named in the `/readyz` description and on a timeout.
    pub(crate) name: &'static str,
    /// Whether a failure makes the instance not ready (else: degraded).
    pub(crate) required: bool,
    pub(crate) probe: Arc<dyn Fn() -> BoxFuture<'static, Readiness> + Send + Sync>,
}

/// What the operational routes read.
#[derive(Clone)]
pub(crate) struct Ops {
    pub(crate) checks: Arc<[Check]>,
    pub(crate) metrics: Metrics,
}

/// `/healthz`, `/readyz` and `/metrics`, documented as they are mounted.
pub(crate) fn routes(ops: Ops) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .with_state(ops)
        .routes(routes!(httpkit::health::healthz))
}

/// Completes the document of these routes: the `ops` tag, and a `/readyz`
/// description that lists the checks the service declared.
pub(crate) fn document(checks: &[Check], openapi: &mut OpenApi) {
    #[derive(utoipa::OpenApi)]
    #[openapi(tags((name = "ops", description = "Health and metrics, for orchestrators and operators.")))]
    struct OpsTag;
    openapi.merge(<OpsTag as utoipa::OpenApi>::openapi());
    let list = checks
        .iter()
        .map(|c| {
            let kind = if c.required {
                "required"
            } else {
                "optional: only degrades"
            };
            format!("`{}` ({kind})", c.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(get) = openapi
        .paths
        .paths
        .get_mut("/readyz")
        .and_then(|item| item.get.as_mut())
    {
        get.description = Some(format!(
            "Checks, each within {}s: {list}. 503 when a required one fails; 200 with \
             `degraded` when only optional ones do.",
            CHECK_TIMEOUT.as_secs()
        ));
    }
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    responses(
        (status = 200, description = "Ready, or degraded (an optional dependency is down).",
            body = httpkit::health::ReadinessReport),
        (status = 503, description = "Not ready; `checks` says why.",
            body = httpkit::health::ReadinessReport),
    ),
)]
async fn readyz(State(ops): State<Ops>) -> Readiness {
    let reports = futures::future::join_all(ops.checks.iter().map(|check| async move {
        if let Ok(report) = tokio::time::timeout(CHECK_TIMEOUT, (check.probe)()).await {
            report
        } else {
            let late = Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs()));
            if check.required {
                Readiness::new().check(check.name, late)
            } else {
                Readiness::new().degraded(check.name, late)
            }
        }
    }))
    .await;
    reports.into_iter().fold(Readiness::new(), Readiness::merge)
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Metrics",
    description = "Prometheus text: `http_requests_total` and \
        `http_request_duration_seconds` per route, and the service's own metrics \
        (docs/operations.md lists them).",
    responses((status = 200, description = "The metrics.",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
async fn metrics(State(ops): State<Ops>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        ops.metrics.scrape().await,
    )
        .into_response()
}

/// The answer to a path no route matches.
pub(crate) async fn no_such_route() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-such-route",
        "No route matches this path",
    )
}

/// The methods [`route_report`] tries on each documented path.
const METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
];

/// Where the router and its document disagree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteReport {
    /// `METHOD /path` that the router answers but the document lacks.
    pub undocumented: BTreeSet<String>,
    /// `METHOD /path` that the document describes but no route answers.
    pub unmounted: BTreeSet<String>,
}

/// Asks `router` about every documented path with every method: a 405 or
/// the no-such-route 404 means "not mounted", anything else (401, 400, 200,
/// a 404 problem of the service's own) means a route answered. The requests
/// carry no credentials and no body, so they change nothing.
///
/// What it finds: documented operations that are not mounted, and
/// undocumented methods on documented paths. A path missing from the
/// document altogether cannot be probed (a router does not list its
/// routes); that case is kept out by construction instead: the document is
/// produced by the router (`routes!`), and `clippy.toml` forbids the ways
/// of mounting a route around it.
///
/// # Panics
///
/// When a probe is refused by the rate limit (429): the report would be a
/// guess. Run it on a service whose limits let a few dozen requests
/// through.
pub async fn route_report(router: &Router, openapi: &OpenApi) -> RouteReport {
    let mut report = RouteReport::default();
    for (path, item) in &openapi.paths.paths {
        // Any value matches a parameter; a route's own validation answers 4xx.
        let concrete = path
            .split('/')
            .map(|part| if part.starts_with('{') { "0" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let documented = match method.as_str() {
                "GET" => item.get.is_some(),
                "POST" => item.post.is_some(),
                "PUT" => item.put.is_some(),
                "PATCH" => item.patch.is_some(),
                _ => item.delete.is_some(),
            };
            let request = http::Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .body(Body::empty())
                .expect("a path from the document is a valid URI");
            let response = router
                .clone()
                .oneshot(request)
                .await
                .expect("a router is infallible");
            assert!(
                response.status() != StatusCode::TOO_MANY_REQUESTS,
                "{method} {path}: rate limited, so the route report cannot tell; \
                 lift the limits of the service under test"
            );
            let mounted = response.status() != StatusCode::METHOD_NOT_ALLOWED
                && !is_no_such_route(response).await;
            let name = format!("{method} {path}");
            match (mounted, documented) {
                (true, false) => report.undocumented.insert(name),
                (false, true) => report.unmounted.insert(name),
                _ => false,
            };
        }
    }
    report
}

async fn is_no_such_route(response: Response) -> bool {
    if response.status() != StatusCode::NOT_FOUND {
        return false;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&body).contains("/problems/no-such-route")
}
