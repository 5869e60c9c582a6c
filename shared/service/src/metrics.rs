//! Metrics: one Prometheus registry per service, scraped at `/metrics`.
//!
//! The registry is `prometheus-client`'s, and it is per service rather than
//! global, so that a test process can run several services without their
//! counts mixing. Parts register their own metrics on the [`Builder`]
//! (`builder.registry()`): counters and gauges they update as they work.
//! A value that is measured rather than counted (a backlog, a consumer's
//! lag) is refreshed by a scrape hook (`builder.on_scrape`) just before
//! the registry is encoded, so every scrape reports the truth of that
//! moment.
//!
//! Every route gets RED metrics from [`HttpMetrics`]:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//!
//! `route` is the route template (`/events/{id}`), never the raw path, and
//! `unmatched` for a path that no route matched; `method` is a standard
//! method or `other`. A client requesting random paths or inventing methods
//! must not create a series per request.
//!
//! [`Builder`]: crate::Builder

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A hook run before each scrape, to refresh measured gauges.
pub(crate) type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The content type of Prometheus text exposition 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A service's registry, frozen once built, and its scrape hooks.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    hooks: Arc<[ScrapeHook]>,
}

impl Metrics {
    pub(crate) fn new(registry: Registry, hooks: Vec<ScrapeHook>) -> Self {
        Self {
            registry: Arc::new(registry),
            hooks: hooks.into(),
        }
    }

    /// Refreshes the measured values, then renders everything as
    /// Prometheus text.
    pub async fn scrape(&self) -> String {
        futures::future::join_all(self.hooks.iter().map(|hook| hook())).await;
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The labels of `http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// The labels of `http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s, doubling: enough resolution around the 10-100 ms
    // where these services answer, and the request timeout (10 s) inside.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// RED metrics for every route: rate and errors by status, duration.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status.",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to its response's headers, by route template.",
            metrics.duration.clone(),
        );
        metrics
    }

    /// The middleware that counts and times each request; install it with
    /// `Router::layer`, so that it runs after routing and sees the route.
    pub async fn record(State(metrics): State<Self>, request: Request, next: Next) -> Response {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
        let method = method_label(request.method()).to_owned();
        let started = Instant::now();
        let response = next.run(request).await;
        metrics
            .duration
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status: response.status().as_u16(),
            })
            .inc();
        response
    }
}

/// The method as a label: the standard ones by name, any other token
/// (hyper accepts any) as `other`, so that invented methods, like invented
/// paths, make no new series.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
// A throwaway route, measured, not documented.
#[allow(clippy::disallowed_methods)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    async fn scrape_after(requests: &[(&str, &str)]) -> String {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let router = Router::new()
            .route("/events/{id}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                http,
                HttpMetrics::record,
            ));
        for (method, path) in requests {
            let request = http::Request::builder()
                .method(*method)
                .uri(*path)
                .body(Body::empty())
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        Metrics::new(registry, Vec::new()).scrape().await
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let text = scrape_after(&[
            ("GET", "/events/1"),
            ("GET", "/events/2"),
            ("GET", "/nowhere/3"),
            ("BREW", "/nowhere/4"),
        ])
        .await;
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/events/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("/nowhere"),
            "raw paths make no series: {text}"
        );
    }

    #[tokio::test]
    async fn each_route_has_a_latency_histogram() {
        let text = scrape_after(&[("GET", "/events/1")]).await;
        assert!(
            text.contains(
                r#"http_request_duration_seconds_count{method="GET",route="/events/{id}"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    }
}
