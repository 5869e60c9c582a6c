//! Per-client rate limit: a token bucket per client, in this process.
//!
//! Each client has a bucket of `burst` tokens that refills at
//! `rate_per_second`; a request takes one token or is answered 429 at once
//! with `Retry-After` set to when the next token arrives. tower's own
//! `RateLimit` has one bucket for the whole service, which would let one
//! client spend everyone's allowance; this one is keyed by client.
//!
//! Who is a client, in order:
//! 1. the verified caller: the [`Identity`] that [`crate::auth::authenticate`]
//!    put in the request's extensions (the token's `sub`), so a client can
//!    neither spread its requests over made-up ids nor spend someone
//!    else's allowance;
//! 2. the peer IP from axum's `ConnectInfo<SocketAddr>` (an IPv6 client by
//!    its /64, which is what one subscriber is usually given), for
//!    anonymous reads such as the seat map;
//! 3. else one shared "unknown" bucket, and a warning in the log, because
//!    that means the server was not started with connect info.
//!
//! Nothing the client writes into a header is taken on trust. Behind a
//! reverse proxy the peer IP is the proxy's: `X-Forwarded-For` is not
//! read, as any client can forge it.
//!
//! Memory is bounded: a bucket that has refilled to full is the same as no
//! bucket, so full buckets are swept away when the map reaches 50 000
//! clients (at most once a second, so that a map full of active clients
//! cannot make every request pay for a sweep). New
//! clients that still find no room share one overflow bucket until the
//! next sweep: degraded fairness for newcomers during a flood of distinct
//! keys, instead of unbounded memory or an unchecked way in.
//!
//! A quarter of this file is its tests: the bucket arithmetic on a paused
//! clock, and the bound on tracked clients.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::{AdmissionMetrics, whole_seconds};
use crate::Problem;
use crate::auth::Identity;

/// Buckets kept before full ones are swept. A bucket is not full for at
/// most `burst / rate` seconds after its client's last request (2 s with
/// the defaults), so this many is far more distinct clients than one
/// instance serves in that time; the map then takes at most a few MB.
pub(crate) const MAX_TRACKED_CLIENTS: usize = 50_000;

/// The least time between two sweeps of a full map.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How fast tokens come back and how many a client may save up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    /// Tokens per second; finite and positive.
    pub(crate) rate: f64,
    /// Bucket size; at least 1.
    pub(crate) burst: f64,
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    Caller(Box<str>),
    Ip(IpAddr),
    Unknown,
}

impl ClientKey {
    /// The client a request comes from, as described in the module docs.
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        if let Some(identity) = request.extensions().get::<Identity>() {
            return Self::Caller(identity.subject.as_str().into());
        }
        match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => Self::Ip(network_of(addr.ip())),
            None => Self::Unknown,
        }
    }

    /// Who is over the limit, for the problem's detail: the kind of key,
    /// never the IP address itself (it would end up in client-side logs).
    fn describe(&self) -> &'static str {
        match self {
            Self::Caller(_) => "this customer",
            Self::Ip(_) => "this IP address",
            Self::Unknown => "clients without a known address",
        }
    }
}

/// The address a client is keyed by: IPv4 as is (also when it arrives
/// IPv4-mapped on a dual-stack socket), IPv6 by its /64, since one
/// subscriber usually holds a whole /64 and could otherwise rotate through
/// 2^64 addresses, each with a fresh bucket.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// One client's tokens as of `updated`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(quota: Quota, now: Instant) -> Self {
        Self {
            tokens: quota.burst,
            updated: now,
        }
    }

    fn tokens_at(&self, quota: Quota, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * quota.rate).min(quota.burst)
    }

    /// Takes a token, or says how long until the next one arrives.
    fn take(&mut self, quota: Quota, now: Instant) -> Result<(), Duration> {
        self.tokens = self.tokens_at(quota, now);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / quota.rate;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    fn is_full(&self, quota: Quota, now: Instant) -> bool {
        self.tokens_at(quota, now) >= quota.burst
    }
}

/// Every client's bucket. Shared by all the routes the layer wraps (axum
/// builds one service per route and method, so the state must live
/// outside the service).
#[derive(Debug)]
pub(crate) struct ClientLimiter {
    quota: Quota,
    capacity: usize,
    // A std Mutex, not tokio's: it is held for a hash lookup and never
    // across an await, which is what std's is for (and it is faster).
    buckets: Mutex<Buckets>,
    warned_unknown: AtomicBool,
}

#[derive(Debug)]
struct Buckets {
    // SipHash (std's default) on purpose: clients choose the keys, and a
    // weaker hash would let them choose collisions.
    by_client: HashMap<ClientKey, Bucket>,
    overflow: Option<Bucket>,
    last_sweep: Option<Instant>,
}

impl ClientLimiter {
    pub(crate) fn new(quota: Quota, capacity: usize) -> Self {
        Self {
            quota,
            capacity,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                overflow: None,
                last_sweep: None,
            }),
            warned_unknown: AtomicBool::new(false),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until it has one.
    pub(crate) fn check(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        if key == ClientKey::Unknown && !self.warned_unknown.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a request has neither a verified caller nor a peer address: serve with \
                 into_make_service_with_connect_info::<SocketAddr>(), or every such \
                 request shares one rate-limit bucket"
            );
        }
        let quota = self.quota;
        // A panic while the lock was held cannot leave a bucket half
        // updated in a way that matters (at worst one token), so a poisoned
        // lock is used as is rather than failing every later request.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let buckets = &mut *buckets;
        if let Some(bucket) = buckets.by_client.get_mut(&key) {
            return bucket.take(quota, now);
        }
        let sweep_due = buckets
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= SWEEP_INTERVAL);
        if buckets.by_client.len() >= self.capacity && sweep_due {
            buckets.by_client.retain(|_, b| !b.is_full(quota, now));
            buckets.last_sweep = Some(now);
        }
        if buckets.by_client.len() < self.capacity {
            buckets
                .by_client
                .entry(key)
                .or_insert_with(|| Bucket::full(quota, now))
                .take(quota, now)
        } else {
            buckets
                .overflow
                .get_or_insert_with(|| Bucket::full(quota, now))
                .take(quota, now)
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_client
            .len()
    }
}

/// Applies [`ClientLimiter`] to every service it wraps.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    limiter: Arc<ClientLimiter>,
    metrics: AdmissionMetrics,
}

impl RateLimitLayer {
    pub(crate) fn new(limiter: Arc<ClientLimiter>, metrics: AdmissionMetrics) -> Self {
        Self { limiter, metrics }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
            metrics: self.metrics.clone(),
        }
    }
}

/// The per-client rate limit in front of `S`.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit<S> {
    inner: S,
    limiter: Arc<ClientLimiter>,
    metrics: AdmissionMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    /// Always ready: whether the inner service is needed at all is only
    /// known in `call`, and asking it early could take a resource (an
    /// in-flight slot) for a request about to be refused.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let key = ClientKey::of(&request);
        let who = key.describe();
        match self.limiter.check(key, Instant::now()) {
            Ok(()) => {
                // The usual tower dance: the clone goes on serving, the
                // original (the one whose readiness `oneshot` will drive)
                // takes this request.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.oneshot(request))
            }
            Err(wait) => {
                self.metrics.count_rate_limited();
                let response = too_many_requests(who, wait, self.limiter.quota);
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

fn too_many_requests(who: &str, wait: Duration, quota: Quota) -> Response {
    let secs = whole_seconds(wait);
    tracing::debug!(who, retry_after = secs, "rate limited");
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
    )
    .detail(format!(
        "{who} is over its limit of {} requests per second (bursts of {}); \
         retry after {secs} s",
        quota.rate, quota.burst
    ))
    .retry_after(secs)
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        rate: 2.0,
        burst: 3.0,
    };

    fn customer(id: &str) -> ClientKey {
        ClientKey::Caller(id.into())
    }

    #[test]
    fn a_client_spends_its_burst_then_waits_for_the_next_token() {
        let limiter = ClientLimiter::new(QUOTA, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(customer("a"), t0), Ok(()));
        }
        assert_eq!(
            limiter.check(customer("a"), t0),
            Err(Duration::from_millis(500))
        );
        let later = t0 + Duration::from_millis(200);
        assert_eq!(
            limiter.check(customer("a"), later),
            Err(Duration::from_millis(300))
        );
        let refilled = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(customer("a"), refilled), Ok(()));
    }

    #[test]
    fn tokens_never_pile_up_beyond_the_burst() {
        let limiter = ClientLimiter::new(QUOTA, 10);
        let t0 = Instant::now();
        assert_eq!(limiter.check(customer("a"), t0), Ok(()));
        let much_later = t0 + Duration::from_hours(1);
        for _ in 0..3 {
            assert_eq!(limiter.check(customer("a"), much_later), Ok(()));
        }
        assert!(limiter.check(customer("a"), much_later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2_001)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn full_buckets_are_swept_when_the_map_is_full() {
        let limiter = ClientLimiter::new(QUOTA, 2);
        let t0 = Instant::now();
        assert!(limiter.check(customer("a"), t0).is_ok());
        assert!(limiter.check(customer("b"), t0).is_ok());
        // a and b are still refilling: nothing to sweep, so c goes to the
        // overflow bucket and the map does not grow.
        assert!(limiter.check(customer("c"), t0).is_ok());
        assert_eq!(limiter.tracked(), 2);
        // Once a and b are full again (0.5 s) and a sweep is due (1 s), d
        // sweeps them away and gets a bucket of its own.
        let later = t0 + SWEEP_INTERVAL;
        assert!(limiter.check(customer("d"), later).is_ok());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn newcomers_share_the_overflow_bucket_while_the_map_is_full_of_active_clients() {
        let limiter = ClientLimiter::new(QUOTA, 1);
        let t0 = Instant::now();
        assert!(limiter.check(customer("a"), t0).is_ok());
        for id in ["x", "y", "z"] {
            assert!(limiter.check(customer(id), t0).is_ok());
        }
        assert!(limiter.check(customer("w"), t0).is_err());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("an address");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("an address");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("an address");
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("an address");
        assert_eq!(
            network_of(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("an address")
        );
    }
}
