//! How a buyer speaks HTTP: every request goes through [`Buyer::send`],
//! which
//!
//! - records each answer per route template and status, with its latency
//!   from the request's scheduled start, and each transport failure
//!   (connection refused or reset, timeout: a fault is running) as status
//!   0;
//! - sends the same request again after a transport failure, after a
//!   pause (so a pay is retried with its `Idempotency-Key`, as a client
//!   does after a lost response), and gives up after a few;
//! - comes back once after a `Retry-After` that invites it (admission
//!   control, a same-key request still running, a superseded hold);
//! - turns an answer that breaks the API's promises into a violation: a
//!   5xx other than 503 with `Retry-After`, a 4xx that only a malformed or
//!   unauthorised request earns (see [`is_violation`]), or a 2xx without
//!   the fields `docs/api.md` promises.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Buyer, Journal};

/// How many times a buyer sends a request whose transport fails
/// (connection refused or reset, timeout: a fault is running) before it
/// gives up the rest of its script. With [`TRANSPORT_PAUSE`] the buyer
/// waits 5 s in all: long enough to ride out a killed service's restart
/// (a few seconds here), short enough that a service that stays down
/// does not keep buyers around for the rest of the run.
const TRANSPORT_ATTEMPTS: u32 = 5;
/// The pause before the first resend after a transport failure; it grows
/// by this much with each one, so a restarting service is not hammered.
const TRANSPORT_PAUSE: Duration = Duration::from_millis(500);
/// The longest `Retry-After` a buyer waits out before its one retry: a
/// `seat-held` says when another customer's hold lapses, minutes away, and
/// is not retried at all (see [`invites_retry`]), but a misbehaving server
/// must not park a buyer for long either.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A route of the public APIs, named by its template so that answers
/// aggregate per route, not per URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Route {
    SeatMap,
    Hold,
    CreateOrder,
    Pay,
    Cancel,
}

/// The API a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Inventory,
    Orders,
}

impl Route {
    /// The method, the path template and the API: the one place a route
    /// is spelled, so the name it is reported under and the URL it is sent
    /// to cannot drift apart.
    fn parts(self) -> (Method, &'static str, Api) {
        match self {
            Self::SeatMap => (Method::GET, "/events/{id}/seats", Api::Inventory),
            Self::Hold => (
                Method::POST,
                "/events/{id}/seats/{seat}/hold",
                Api::Inventory,
            ),
            Self::CreateOrder => (Method::POST, "/orders", Api::Orders),
            Self::Pay => (Method::POST, "/orders/{id}/pay", Api::Orders),
            Self::Cancel => (Method::POST, "/orders/{id}/cancel", Api::Orders),
        }
    }

    /// e.g. `POST /orders/{id}/pay`.
    pub(crate) fn template(self) -> String {
        let (method, path, _) = self.parts();
        format!("{method} {path}")
    }

    /// The path with `ids` in the template's `{…}` segments, in order.
    pub(super) fn path(self, ids: &[&str]) -> String {
        let (_, template, _) = self.parts();
        let mut ids = ids.iter();
        template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    ids.next().copied().unwrap_or(segment)
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// One answer, or one transport failure (status 0), as it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) route: Route,
    /// The HTTP status; 0 for a transport failure.
    pub(crate) status: u16,
    /// From the request's scheduled start to the end of the answer.
    pub(crate) micros: u64,
}

impl Buyer<'_> {
    /// A request on `route` with `ids` in its path, signed in as this
    /// buyer.
    pub(super) fn request(&self, route: Route, ids: &[&str]) -> reqwest::RequestBuilder {
        let (method, _, api) = route.parts();
        let base = match api {
            Api::Inventory => &self.sale.inventory_url,
            Api::Orders => &self.sale.orders_url,
        };
        self.sale
            .http
            .request(method, format!("{base}{}", route.path(ids)))
            .bearer_auth(&self.token)
    }

    /// Sends `request`, records every answer, and judges the last one; see
    /// the module docs.
    pub(super) async fn send<T: DeserializeOwned>(
        &self,
        route: Route,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Outcome<T>> {
        let request = request.build().context("building a buyer's request")?;
        // Latency runs from the scheduled start, across transport retries:
        // a stalled system shows its stall (no coordinated omission).
        let mut due = self.due();
        let mut failures = 0;
        let mut retried = false;
        loop {
            let attempt = request
                .try_clone()
                .context("a buyer's request cannot be sent twice")?;
            let received = match receive::<T>(&self.sale.http, attempt).await {
                Ok(received) => received,
                Err(error) => {
                    self.record(route, 0, due);
                    self.lock_journal().transport.push(format!(
                        "{}: {}",
                        route.template(),
                        error_chain(&error)
                    ));
                    failures += 1;
                    if failures == TRANSPORT_ATTEMPTS {
                        return Ok(Outcome::Lost);
                    }
                    tokio::time::sleep(TRANSPORT_PAUSE * failures).await;
                    continue;
                }
            };
            self.record(route, received.status, due);
            if let Some(wait) = received.retry_after
                && !retried
                && invites_retry(received.status, received.problem())
            {
                // Admission control said when: one retry, due when it may
                // go (the wait is the server's answer, already recorded).
                retried = true;
                tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                due = Instant::now();
                continue;
            }
            return Ok(self.judge(route, received));
        }
    }

    /// What the buyer's script gets from an answer, with a violation
    /// recorded when the answer breaks a promise.
    fn judge<T>(&self, route: Route, received: Received<T>) -> Outcome<T> {
        let status = received.status;
        match received.body {
            Body::Promised(body) => Outcome::Done {
                body,
                replayed: received.replayed,
            },
            Body::Broken(error) => {
                self.violation(format!(
                    "{}: {status} without the promised fields: {error}",
                    route.template()
                ));
                Outcome::Lost
            }
            Body::Problem(problem) if is_violation(status, received.retry_after.is_some()) => {
                self.violation(format!("{}: {status} {problem}", route.template()));
                Outcome::Lost
            }
            Body::Problem(problem) => Outcome::Refused { status, problem },
        }
    }

    /// When the next request is due: the buyer's slot for the first, now
    /// for the others.
    fn due(&self) -> Instant {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(Instant::now)
    }

    fn record(&self, route: Route, status: u16, due: Instant) {
        if status == 0 || status >= 500 {
            self.sale.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.lock_journal().answers.push(Answer {
            route,
            status,
            micros,
        });
    }

    /// Records a violation on `route` unless `kept`.
    pub(super) fn promise(&self, route: Route, kept: bool, broken: impl FnOnce() -> String) {
        if !kept {
            self.violation(format!("{}: {}", route.template(), broken()));
        }
    }

    pub(super) fn violation(&self, line: String) {
        self.lock_journal().violations.push(line);
    }

    pub(super) fn lock_journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a buyer's script learns from a request.
pub(super) enum Outcome<T> {
    /// A 2xx with the fields the docs promise.
    Done { body: T, replayed: bool },
    /// Another answer the API documents for a well-formed request: a 409,
    /// or a 429 or 503 with `Retry-After` (after the one retry).
    Refused { status: u16, problem: String },
    /// No usable answer: every attempt failed in transport, or the answer
    /// was a violation (recorded).
    Lost,
}

/// One answer as it arrived.
struct Received<T> {
    status: u16,
    /// `Retry-After` in seconds; present but unreadable counts as 1 s.
    retry_after: Option<Duration>,
    /// `Idempotent-Replayed: true`: orders answered from a stored response.
    replayed: bool,
    body: Body<T>,
}

enum Body<T> {
    /// A 2xx that reads as `T`.
    Promised(T),
    /// A 2xx that does not: why.
    Broken(String),
    /// Not a 2xx: the problem's `type` (empty without a problem body).
    Problem(String),
}

impl<T> Received<T> {
    fn problem(&self) -> &str {
        match &self.body {
            Body::Problem(problem) => problem,
            Body::Promised(_) | Body::Broken(_) => "",
        }
    }
}

/// Sends one attempt and reads the whole answer; an error is a transport
/// failure (no answer, or one cut off).
/// An error and its causes, `: `-separated: reqwest's own message says
/// only "error sending request"; the cause says why (refused, reset, timed
/// out, closed before the answer).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

async fn receive<T: DeserializeOwned>(
    http: &reqwest::Client,
    request: reqwest::Request,
) -> reqwest::Result<Received<T>> {
    let response = http.execute(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers();
    let retry_after = headers.get(reqwest::header::RETRY_AFTER).map(|value| {
        let seconds = value.to_str().ok().and_then(|v| v.trim().parse().ok());
        Duration::from_secs(seconds.unwrap_or(1))
    });
    let replayed = headers
        .get("idempotent-replayed")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let bytes = response.bytes().await?;
    let body = if (200..300).contains(&status) {
        match serde_json::from_slice(&bytes) {
            Ok(body) => Body::Promised(body),
            Err(error) => Body::Broken(error.to_string()),
        }
    } else {
        Body::Problem(
            serde_json::from_slice::<Problem>(&bytes)
                .map(|p| p.kind)
                .unwrap_or_default(),
        )
    };
    Ok(Received {
        status,
        retry_after,
        replayed,
        body,
    })
}

/// Whether an answer that carries `Retry-After` asks the buyer to come
/// back: admission control (429, 503), a same-key request still running,
/// a hold superseded on its way. Not a `seat-held` (409 with the time the
/// other customer's hold lapses) nor a `sale-not-open`: the seat or the
/// sale will not be there for this buyer in a few seconds.
fn invites_retry(status: u16, problem: &str) -> bool {
    match status {
        429 | 503 => true,
        409 => {
            problem.ends_with("/idempotency-key-in-progress")
                || problem.ends_with("/hold-superseded")
        }
        _ => false,
    }
}

/// Whether an answer breaks the API's promises:
/// - a 5xx, except a 503 that says when to come back (admission control,
///   a dependency away, a timeout);
/// - a 4xx other than 409 and 429: the API gives those only to a request
///   that is malformed, unauthorised or about something that does not
///   exist, and a buyer sends none (its own token, fresh keys, seats and
///   orders it was given), so one is a broken promise or a driver bug, and
///   either must show. 409 (taken, sold, paid, lapsed) and 429 (over a
///   limit) are what contention and load rightly bring.
fn is_violation(status: u16, has_retry_after: bool) -> bool {
    match status {
        503 => !has_retry_after,
        409 | 429 => false,
        _ => (400..600).contains(&status),
    }
}

pub(super) fn is_invalid_transition(problem: &str) -> bool {
    problem.ends_with("/invalid-transition")
}

/// The fields of a problem body the buyer branches on.
#[derive(Deserialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_by_their_templates_and_sent_to_their_paths() {
        assert_eq!(Route::SeatMap.template(), "GET /events/{id}/seats");
        assert_eq!(
            Route::Hold.template(),
            "POST /events/{id}/seats/{seat}/hold"
        );
        assert_eq!(Route::CreateOrder.template(), "POST /orders");
        assert_eq!(Route::Pay.template(), "POST /orders/{id}/pay");
        assert_eq!(Route::Cancel.template(), "POST /orders/{id}/cancel");
        assert_eq!(
            Route::Hold.path(&["c1", "A-7"]),
            "/events/c1/seats/A-7/hold"
        );
        assert_eq!(Route::Pay.path(&["o1"]), "/orders/o1/pay");
        assert_eq!(Route::CreateOrder.path(&[]), "/orders");
    }

    #[test]
    fn only_admission_control_and_same_key_waits_invite_a_retry() {
        assert!(invites_retry(429, "/problems/rate-limited"));
        assert!(invites_retry(503, "/problems/overloaded"));
        assert!(invites_retry(409, "/problems/idempotency-key-in-progress"));
        assert!(invites_retry(409, "/problems/hold-superseded"));
        assert!(!invites_retry(409, "/problems/seat-held"));
        assert!(!invites_retry(409, "/problems/sale-not-open"));
        assert!(!invites_retry(500, "/problems/internal"));
    }

    #[test]
    fn a_5xx_is_a_violation_unless_it_is_a_503_that_says_when() {
        assert!(!is_violation(503, true));
        assert!(is_violation(503, false));
        assert!(is_violation(500, true));
        assert!(is_violation(502, false));
        assert!(!is_violation(200, false));
        assert!(!is_violation(201, false));
    }

    #[test]
    fn a_4xx_is_a_violation_unless_contention_or_load_explains_it() {
        assert!(!is_violation(409, true));
        assert!(!is_violation(429, true));
        for status in [400, 401, 403, 404, 413, 415, 422] {
            assert!(is_violation(status, false), "{status}");
        }
    }
}
