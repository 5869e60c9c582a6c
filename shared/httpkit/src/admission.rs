//! Admission control: which requests reach a handler at all.
//!
//! When a sale opens, thousands of clients press "buy" in the same second.
//! Two guards stand in front of the API handlers, and both answer at once
//! rather than queue: a queued request still holds a connection and memory,
//! its client has often given up and retried by the time it runs, and the
//! queue hides the overload from everyone until it is too late.
//!
//! 1. A per-client rate limit ([`rate_limit`]): a token bucket per client
//!    (the verified caller, else the peer IP), so that one client (a script, a
//!    retry loop) cannot spend the capacity everyone shares. Over it: 429
//!    `/problems/rate-limited` with `Retry-After` set to when that client's
//!    next token arrives.
//! 2. Load shedding: at most `max_in_flight` requests inside the handlers,
//!    whoever sends them. Beyond that: 503 `/problems/overloaded` with
//!    `Retry-After`. This is what protects the process (memory, the
//!    database pool) whatever the mix of clients.
//!
//! The rate limit is the outer one. It costs a hash lookup under a lock
//! held for no await, so checking it first is free, and a request it
//! refuses never takes an in-flight slot: a flooding client gets the 429
//! that tells it what it did, and cannot crowd well-behaved clients out of
//! the slots. The price is that a request admitted by the rate limit and
//! then shed has spent its token; under overload that errs on the side of
//! less traffic, which is the right side.
//!
//! Shedding is tower's `ConcurrencyLimit` under `LoadShed`, with axum's
//! `HandleErrorLayer` turning `Overloaded` into the 503. The limit is the
//! *global* flavour (one semaphore shared by every service the layer
//! builds): `Router::layer` wraps each route and method separately, and
//! the plain `ConcurrencyLimitLayer` would give each its own semaphore, so
//! the real limit would be `max_in_flight` per route. A slot is held until
//! the handler's future completes or is dropped (by the request timeout
//! of [`crate::layers::standard`], which sits outside this).
//!
//! # Wiring
//!
//! Wrap the API routes only: `/healthz`, `/readyz` and `/metrics` stay
//! outside, so that a busy instance still answers its orchestrator (a
//! probe that is shed looks like a dead process and gets it restarted at
//! the worst moment) and can still be observed. The peer IP comes from
//! axum's `ConnectInfo`, so the server must be started with
//! `into_make_service_with_connect_info::<SocketAddr>()`; without it,
//! every anonymous request shares one bucket. The verified caller comes
//! from [`crate::auth::authenticate`], which must wrap this layer (be
//! added after it), so that the rate limit sees the identity.
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use httpkit::admission::{AdmissionLimits, AdmissionMetrics, admission};
//! use utoipa_axum::router::OpenApiRouter;
//!
//! /// `GET /orders`.
//! #[utoipa::path(get, path = "/orders", responses((status = 200, body = String)))]
//! async fn list_orders() -> &'static str {
//!     "[]"
//! }
//!
//! # async fn run(env: settings::Env) -> Result<(), Box<dyn std::error::Error>> {
//! let limits = AdmissionLimits::from_env(&env)?;
//! let metrics = AdmissionMetrics::default();
//! let mut registry = prometheus_client::registry::Registry::default();
//! metrics.register(&mut registry); // `http_admission_rejected_total` at /metrics
//! let orders = OpenApiRouter::new().routes(utoipa_axum::routes!(list_orders));
//! let (api, _document) = admission(orders, limits, &metrics).split_for_parts();
//! let router = Router::new()
//!     .merge(api)
//!     .route("/healthz", get(httpkit::health::healthz));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Per instance, on purpose
//!
//! Buckets and the in-flight count live in this process. With N instances
//! behind a load balancer a client may get up to N times its rate, and
//! each instance sheds by its own load, which is what shedding is for.
//! Keeping the limit local costs no network round trip per request and adds
//! no dependency whose outage would take the API down with it. A fleet-wide
//! per-client limit needs shared state, a token bucket in Redis updated by
//! a script per request, and would sit where [`rate_limit`] sits.
//!
//! About half of this file is its tests (paused-clock rate-limit and
//! shedding cases); the limiter itself is in [`rate_limit`].

pub mod rate_limit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use settings::{ConfigError, Env};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, ServiceBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::Problem;
use rate_limit::{ClientLimiter, MAX_TRACKED_CLIENTS, Quota, RateLimitLayer};

/// How much traffic an instance admits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionLimits {
    /// Sustained requests per second per client (`RATE_LIMIT_PER_SECOND`,
    /// default 20); finite and above zero.
    pub rate_per_second: f64,
    /// Requests a client may send at once after being idle
    /// (`RATE_LIMIT_BURST`, default 40); at least 1.
    pub burst: u32,
    /// Requests inside the handlers at once, all clients together
    /// (`MAX_IN_FLIGHT`, default 256); at least 1.
    pub max_in_flight: usize,
    /// The `Retry-After` sent with a shed request (`SHED_RETRY_AFTER`,
    /// default 1s), rounded up to whole seconds, at least 1.
    pub retry_after: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            rate_per_second: 20.0,
            burst: 40,
            max_in_flight: 256,
            retry_after: Duration::from_secs(1),
        }
    }
}

impl AdmissionLimits {
    /// Reads `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`, `MAX_IN_FLIGHT`
    /// and `SHED_RETRY_AFTER`, each defaulting as documented on its field.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let limits = Self {
            rate_per_second: env.parse_or("RATE_LIMIT_PER_SECOND", defaults.rate_per_second)?,
            burst: env.parse_or("RATE_LIMIT_BURST", defaults.burst)?,
            max_in_flight: env.parse_or("MAX_IN_FLIGHT", defaults.max_in_flight)?,
            retry_after: env.duration_or("SHED_RETRY_AFTER", defaults.retry_after)?,
        };
        match limits.problem() {
            None => Ok(limits),
            Some((name, reason)) => Err(ConfigError::Invalid {
                name: name.to_owned(),
                value: env.get(name).unwrap_or_default().to_owned(),
                reason: reason.to_owned(),
            }),
        }
    }

    /// The first value that cannot work, as (variable, reason).
    fn problem(&self) -> Option<(&'static str, &'static str)> {
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0) {
            Some((
                "RATE_LIMIT_PER_SECOND",
                "expected a number of requests per second above 0",
            ))
        } else if self.burst == 0 {
            Some(("RATE_LIMIT_BURST", "expected at least 1"))
        } else if self.max_in_flight == 0 {
            Some(("MAX_IN_FLIGHT", "expected at least 1"))
        } else {
            None
        }
    }
}

/// Counts of refused requests, for `/metrics`. Cloning shares the counts.
#[derive(Debug, Clone, Default)]
pub struct AdmissionMetrics {
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    rate_limited: AtomicU64,
    shed: AtomicU64,
}

impl AdmissionMetrics {
    /// Requests answered 429 by the per-client rate limit.
    pub fn rate_limited(&self) -> u64 {
        // Relaxed: each counter is read on its own; nothing is ordered by it.
        self.counts.rate_limited.load(Ordering::Relaxed)
    }

    /// Requests answered 503 because `max_in_flight` were already inside.
    pub fn shed(&self) -> u64 {
        self.counts.shed.load(Ordering::Relaxed)
    }

    /// Reports the counts in `registry`, e.g.
    /// `http_admission_rejected_total{reason="rate_limited"} 3`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    fn count_rate_limited(&self) {
        self.counts.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    fn count_shed(&self) {
        self.counts.shed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Collector for AdmissionMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "http_admission_rejected",
            "Requests refused before reaching a handler.",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in [("rate_limited", self.rate_limited()), ("shed", self.shed())] {
            ConstCounter::new(count).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

/// Wraps every route of `router` (the API routes, see the module docs) in
/// the per-client rate limit and then load shedding, counting refusals in
/// `metrics`. Routes added to the router afterwards are not wrapped.
///
/// # Panics
///
/// When `limits` cannot work (a rate that is not above zero, a burst or
/// `max_in_flight` of zero): [`AdmissionLimits::from_env`] never returns
/// such limits, so this is a bug in the caller, found at startup.
pub fn admission<S>(
    router: OpenApiRouter<S>,
    limits: AdmissionLimits,
    metrics: &AdmissionMetrics,
) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    if let Some((name, reason)) = limits.problem() {
        panic!("invalid admission limits ({name}: {reason}): {limits:?}");
    }
    let quota = Quota {
        rate: limits.rate_per_second,
        burst: f64::from(limits.burst),
    };
    let limiter = Arc::new(ClientLimiter::new(quota, MAX_TRACKED_CLIENTS));
    let retry_after = whole_seconds(limits.retry_after);
    let shed_metrics = metrics.clone();
    let on_error =
        move |error: BoxError| async move { shed_response(&error, &shed_metrics, retry_after) };
    // ServiceBuilder lists layers outside in: the rate limit sees the
    // request first (see the module docs for why).
    router.layer(
        ServiceBuilder::new()
            .layer(RateLimitLayer::new(limiter, metrics.clone()))
            .layer(HandleErrorLayer::new(on_error))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight)),
    )
}

fn shed_response(error: &BoxError, metrics: &AdmissionMetrics, retry_after: u64) -> Response {
    if error.is::<Overloaded>() {
        metrics.count_shed();
        tracing::debug!(retry_after, "shed: too many requests in flight");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "The service is at capacity",
        )
        .detail("too many requests are in progress on this instance; retry after the delay given")
        .retry_after(retry_after)
        .into_response()
    } else {
        // The handlers' errors are already responses; nothing else in the
        // stack fails, so this is a bug worth a 500 and a log line.
        Problem::internal(&**error).into_response()
    }
}

/// `d` rounded up to whole seconds, at least 1: `Retry-After` takes whole
/// seconds, and 0 would invite an immediate retry.
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

#[cfg(test)]
// Tests of the plumbing mount throwaway routes that no document describes.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use http::{Request, header};
    use serde_json::Value;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    const CUSTOMER_A: &str = "0190a5e4-0000-7000-8000-00000000000a";
    const CUSTOMER_B: &str = "0190a5e4-0000-7000-8000-00000000000b";

    fn limits(rate_per_second: f64, burst: u32, max_in_flight: usize) -> AdmissionLimits {
        AdmissionLimits {
            rate_per_second,
            burst,
            max_in_flight,
            retry_after: Duration::from_secs(3),
        }
    }

    /// `routes` behind admission control, as a plain router to call.
    fn admitted(routes: Router, limits: AdmissionLimits, metrics: &AdmissionMetrics) -> Router {
        admission(OpenApiRouter::from(routes), limits, metrics).into()
    }

    fn app(limits: AdmissionLimits, metrics: &AdmissionMetrics) -> Router {
        admitted(
            Router::new().route("/", get(|| async { "ok" })),
            limits,
            metrics,
        )
    }

    /// A request from a verified `customer` (what `auth::authenticate`
    /// leaves in the extensions), from `peer`.
    fn request(customer: Option<&str>, peer: Option<&str>) -> Request<Body> {
        let mut request = Request::get("/")
            .body(Body::empty())
            .expect("a valid request");
        if let Some(id) = customer {
            request
                .extensions_mut()
                .insert(crate::auth::Identity::verified(id, None, "token"));
        }
        if let Some(peer) = peer {
            let addr: SocketAddr = peer.parse().expect("a socket address");
            request.extensions_mut().insert(ConnectInfo(addr));
        }
        request
    }

    async fn send(app: &Router, request: Request<Body>) -> Response {
        app.clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
    }

    async fn problem(response: Response) -> Value {
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body is in memory");
        serde_json::from_slice(&body).expect("a JSON problem")
    }

    fn retry_after(response: &Response) -> &str {
        response.headers()[header::RETRY_AFTER]
            .to_str()
            .expect("an ASCII header")
    }

    // The clock is paused in these tests, so no token arrives unless a
    // test advances time: what they assert cannot depend on how fast the
    // machine runs them.

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_burst_then_429_with_retry_after_until_its_next_token() {
        let metrics = AdmissionMetrics::default();
        let app = app(limits(0.5, 2, 16), &metrics);

        for _ in 0..2 {
            let ok = send(&app, request(Some(CUSTOMER_A), None)).await;
            assert_eq!(ok.status(), StatusCode::OK);
        }
        let refused = send(&app, request(Some(CUSTOMER_A), None)).await;

        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // One token every 2 s, and the bucket is empty.
        assert_eq!(retry_after(&refused), "2");
        let body = problem(refused).await;
        assert_eq!(body["type"], "/problems/rate-limited");
        assert_eq!(body["status"], 429);
        let detail = body["detail"].as_str().expect("a detail");
        assert!(detail.contains("customer"), "{detail}");
        assert_eq!(metrics.rate_limited(), 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        let ok = send(&app, request(Some(CUSTOMER_A), None)).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn each_customer_has_its_own_bucket_even_from_one_address() {
        let metrics = AdmissionMetrics::default();
        let app = app(limits(1.0, 1, 16), &metrics);
        let peer = Some("192.0.2.1:40000");

        let first_a = send(&app, request(Some(CUSTOMER_A), peer)).await;
        let second_a = send(&app, request(Some(CUSTOMER_A), peer)).await;
        let first_b = send(&app, request(Some(CUSTOMER_B), peer)).await;

        assert_eq!(first_a.status(), StatusCode::OK);
        assert_eq!(second_a.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(first_b.status(), StatusCode::OK);
        assert_eq!(metrics.rate_limited(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_verified_caller_the_peer_ip_is_the_key_and_is_not_disclosed() {
        let metrics = AdmissionMetrics::default();
        let app = app(limits(1.0, 1, 16), &metrics);

        let first = send(&app, request(None, Some("192.0.2.1:40000"))).await;
        // Another connection from the same address, naming a customer in a
        // header: a header the client writes is not an identity.
        let mut forged = request(None, Some("192.0.2.1:40001"));
        forged
            .headers_mut()
            .insert("x-customer-id", http::HeaderValue::from_static(CUSTOMER_B));
        let second = send(&app, forged).await;
        let other_ip = send(&app, request(None, Some("192.0.2.2:40000"))).await;

        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(other_ip.status(), StatusCode::OK);
        let detail = problem(second).await["detail"].to_string();
        assert!(detail.contains("IP address"), "{detail}");
        assert!(!detail.contains("192.0.2.1"), "{detail}");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_with_no_address_share_the_unknown_bucket() {
        let metrics = AdmissionMetrics::default();
        let app = app(limits(1.0, 1, 16), &metrics);

        let first = send(&app, request(None, None)).await;
        let second = send(&app, request(None, None)).await;

        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_beyond_max_in_flight_is_answered_503_at_once_not_queued() {
        let metrics = AdmissionMetrics::default();
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (inside, gate) = (Arc::clone(&entered), Arc::clone(&release));
        let routes = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    inside.notify_one();
                    gate.notified().await;
                    "done"
                }),
            )
            .route("/fast", get(|| async { "ok" }));
        let app = admitted(routes, limits(1_000.0, 1_000, 1), &metrics);
        let slow = Request::get("/slow")
            .body(Body::empty())
            .expect("a request");
        let blocked = tokio::spawn(app.clone().oneshot(slow));
        entered.notified().await;

        // With the clock paused, a request that waited for the slot would
        // leave the runtime idle, the clock would jump to the deadline and
        // this would fail at once: it proves "no queueing" without timing.
        let fast = Request::get("/fast")
            .body(Body::empty())
            .expect("a request");
        let shed = tokio::time::timeout(Duration::from_secs(1), send(&app, fast))
            .await
            .expect("the request over the limit is answered without waiting");

        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&shed), "3");
        let body = problem(shed).await;
        assert_eq!(body["type"], "/problems/overloaded");
        assert_eq!(metrics.shed(), 1);
        assert!(!blocked.is_finished(), "the first request is still inside");

        release.notify_one();
        let done = blocked.await.expect("the task ran").expect("infallible");
        assert_eq!(done.status(), StatusCode::OK);
        let fast = Request::get("/fast")
            .body(Body::empty())
            .expect("a request");
        assert_eq!(send(&app, fast).await.status(), StatusCode::OK);
        assert_eq!(metrics.shed(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_counted_per_reason_and_rendered_for_prometheus() {
        let metrics = AdmissionMetrics::default();
        let app = app(limits(1.0, 1, 16), &metrics);
        for _ in 0..3 {
            send(&app, request(Some(CUSTOMER_A), None)).await;
        }
        metrics.count_shed();

        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();

        assert_eq!((metrics.rate_limited(), metrics.shed()), (2, 1));
        assert!(
            text.contains("# TYPE http_admission_rejected_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("http_admission_rejected_total{reason=\"rate_limited\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("http_admission_rejected_total{reason=\"shed\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn limits_default_when_unset_and_read_the_environment() {
        let unset = AdmissionLimits::from_env(&Env::default()).expect("defaults are valid");
        assert_eq!(unset, AdmissionLimits::default());
        let env = Env::from_pairs([
            ("RATE_LIMIT_PER_SECOND", "2.5"),
            ("RATE_LIMIT_BURST", "5"),
            ("MAX_IN_FLIGHT", "8"),
            ("SHED_RETRY_AFTER", "2s"),
        ]);
        assert_eq!(
            AdmissionLimits::from_env(&env).expect("valid limits"),
            AdmissionLimits {
                rate_per_second: 2.5,
                burst: 5,
                max_in_flight: 8,
                retry_after: Duration::from_secs(2),
            }
        );
    }

    #[test]
    fn limits_that_cannot_work_are_refused_naming_the_variable() {
        for (name, value) in [
            ("RATE_LIMIT_PER_SECOND", "0"),
            ("RATE_LIMIT_PER_SECOND", "NaN"),
            ("RATE_LIMIT_PER_SECOND", "inf"),
            ("RATE_LIMIT_PER_SECOND", "fast"),
            ("RATE_LIMIT_BURST", "0"),
            ("MAX_IN_FLIGHT", "0"),
            ("MAX_IN_FLIGHT", "-1"),
        ] {
            let err = AdmissionLimits::from_env(&Env::from_pairs([(name, value)]))
                .expect_err("an invalid value");
            let message = err.to_string();
            assert!(
                message.contains(name) && message.contains(value),
                "{message}"
            );
        }
    }
}
