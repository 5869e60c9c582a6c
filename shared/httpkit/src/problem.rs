//! `application/problem+json` (RFC 9457) responses.
//!
//! Every error a client can see has a stable `type`, a relative URI under
//! `/problems/`, listed in `docs/api.md`. Clients branch on `type`, never on
//! `title` or `detail`, which are for humans and may change.
//!
//! [`Problem`] is also the `Problem` schema of every service's API
//! document (see [`crate::docs`]): the schema is derived from this type, so
//! it cannot drift from what the services send.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// A problem details response, sent as `application/problem+json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "/problems/invalid-field",
    "title": "A field is invalid",
    "status": 422,
    "detail": "\"ada at example\" is not an e-mail address",
    "field": "customer_email"
}))]
pub struct Problem {
    /// Stable identifier of the error kind, e.g. `/problems/invalid-field`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary of the kind; the same for every occurrence.
    pub title: String,
    /// The HTTP status, repeated for clients that lose headers.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time, for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// The request field at fault, as a path like `seats[0].hold_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// The dependency that is down, e.g. `postgres`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub dependency: Option<String>,
    /// Quote this when reporting a server error; it is the trace id, so it
    /// also finds the trace in Jaeger.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub correlation_id: Option<String>,
    /// Seconds after which a retry may succeed; sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    /// A problem of kind `/problems/{slug}`.
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            field: None,
            dependency: None,
            correlation_id: None,
            retry_after_secs: None,
        }
    }

    /// Adds the human-readable detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Overrides the status, keeping the kind (e.g. an invalid header is a
    /// 400 while an invalid body field is a 422).
    #[must_use]
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status.as_u16();
        self
    }

    /// Names the request field at fault.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Asks the client to retry after `secs` seconds.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 422: a field has the wrong shape or value.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "A field is invalid",
        )
        .field(field)
        .detail(reason)
    }

    /// 503: a dependency the request needs is unreachable.
    pub fn dependency_unavailable(dependency: &str) -> Self {
        let mut problem = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            "A dependency is unavailable",
        )
        .detail(format!("{dependency} is unreachable; retry shortly"))
        .retry_after(1);
        problem.dependency = Some(dependency.to_owned());
        problem
    }

    /// 500: logs `cause` with a correlation id and tells the client only
    /// that id. Internals never reach the client.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let correlation_id = telemetry::propagation::current_trace_id()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        tracing::error!(
            correlation_id,
            error = %ErrorChain(cause),
            "internal error"
        );
        let mut problem = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .detail("The error was logged; quote the correlation_id when reporting it.");
        problem.correlation_id = Some(correlation_id);
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after_secs;
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Displays an error with all its sources: `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
