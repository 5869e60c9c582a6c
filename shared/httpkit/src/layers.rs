//! The middleware stack every service puts around its router.
//!
//! From the outside in:
//! 1. tracing: one server span per request, continuing the caller's trace
//!    when a `traceparent` header arrives (so a client's trace, a load
//!    test's or another service's, includes ours);
//! 2. panics become a 500 problem instead of a dropped connection;
//! 3. a request timeout: a request that runs too long is answered 503 with
//!    `Retry-After` and its handler future is dropped, which rolls back an
//!    open transaction. If the timeout strikes while the commit is on its
//!    way, the change may have happened: the answer says the outcome is
//!    unknown, and a retry with the same `Idempotency-Key` tells which;
//! 4. the body size limit, enforced by [`crate::StrictJson`].

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::Problem;

/// Limits that every service configures.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest time a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
}

/// Wraps `router` in the standard stack described in the module docs.
pub fn standard(router: Router, limits: HttpLimits) -> Router {
    router
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_response(record_response),
                )
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(HandleErrorLayer::new(timeout_response))
                .timeout(limits.request_timeout),
        )
}

fn make_span(request: &Request<Body>) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        // The verified caller (`auth::authenticate` records it).
        enduser.id = tracing::field::Empty,
    );
    telemetry::propagation::continue_from_http(&span, request.headers());
    span
}

fn record_response<B>(response: &http::Response<B>, latency: Duration, span: &Span) {
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(status = response.status().as_u16(), ?latency, "response");
}

async fn timeout_response(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long",
        )
        .detail("the outcome is unknown; retry with the same Idempotency-Key to learn it")
        .retry_after(1)
        .into_response()
    } else {
        Problem::internal(&*error).into_response()
    }
}

#[allow(clippy::needless_pass_by_value)] // the signature CatchPanicLayer::custom expects
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned());
    Problem::internal(&Panicked(message)).into_response()
}

/// A handler panicked; the message goes to the log, never to the client.
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handler panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}
