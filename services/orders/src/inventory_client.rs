//! The client orders uses to ask inventory whether a customer's holds are
//! live, and to get their fencing tokens.
//!
//! `POST /orders` calls [`InventoryClient::verify`] before it writes
//! anything: inventory answers `POST {INVENTORY_URL}/holds/verify` with each
//! hold's fencing token, or 409 naming the first hold that is not live. The
//! tokens are stored on the order lines and travel in the order's events;
//! at the sale inventory compares them with the seat's latest hold, so the
//! token, not this check, is what finally decides who gets a seat. The
//! check exists so that a customer learns about a lapsed hold now, with a
//! clear 409, instead of after paying, with a refund.
//!
//! When inventory is down (unreachable, too slow, or answering 5xx, its own
//! Redis outage included) no order can be created: the caller gets 503
//! naming `inventory`, with `Retry-After`, and nothing is written. Existing
//! orders can still be paid: paying does not re-verify, because the
//! fencing token decides at the sale.
//!
//! One call per order, bounded by `INVENTORY_TIMEOUT` (connecting included)
//! and never retried here: the customer's client retries with the same
//! `Idempotency-Key`, which is safe because a failed create stores nothing.
//!
//! Orders calls as the customer: it passes the customer's own bearer token
//! on, so inventory verifies the same identity, answers whether the holds
//! are *this customer's*, and charges this customer's rate limit. There is
//! no header orders could set (and so none a client could forge) that
//! names a customer.
//!
//! Each call is a client span (`inventory.verify_holds`) whose context goes
//! out in the `traceparent` header, so inventory's server span joins the
//! trace of the order request.
//!
//! Why one file: the request, the classification of every answer and its
//! unit tests belong together; about a third of it is tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::SeatRequest;

/// The path of inventory's verification endpoint.
const VERIFY_PATH: &str = "holds/verify";

/// The `Retry-After` suggested when inventory gave none.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// The longest `Retry-After` passed on from inventory: a bad header must
/// not tell customers to go away for a day.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Calls inventory; cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct InventoryClient {
    http: reqwest::Client,
    verify_url: reqwest::Url,
    timeout: Duration,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for inventory")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// A hold inventory confirmed as live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VerifiedHold {
    pub seat_id: String,
    /// The hold's fencing token: the order line stores it and the sale
    /// checks it.
    pub fencing_token: i64,
    /// When the hold lapses. Informational: an order created before that
    /// keeps its token whatever happens to the hold afterwards.
    pub expires_at: DateTime<Utc>,
}

/// Inventory's answer for an order's holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Each seat's hold, in the order of the request's seats.
    pub holds: Vec<VerifiedHold>,
    /// When the concert's sale closes (it starts): payments are refused
    /// from then on. `None` from an inventory that does not say.
    pub sale_closes_at: Option<DateTime<Utc>>,
}

/// Why holds could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Inventory says the hold on `seats[index]` is not live: it lapsed,
    /// was released, or the seat is held by someone else.
    #[error("the hold on seat {seat_id} (seats[{index}]) is not valid")]
    HoldNotValid {
        /// The seat's position in the order.
        index: usize,
        seat_id: String,
    },
    /// The concert is not on sale: `/problems/sale-not-open` (with the
    /// seconds until it opens) or `/problems/sale-closed`, passed on as
    /// inventory said it.
    #[error("{detail}")]
    SaleWindow {
        /// Inventory's problem type.
        kind: String,
        /// Its detail, which names the window.
        detail: String,
        /// Its `Retry-After`, if any.
        retry_after: Option<u64>,
    },
    /// Inventory could not be asked, or could not answer.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// Inventory answered something the contract does not allow (a 4xx
    /// other than 409 to input orders validated, or a body that does not
    /// match the request): a bug on one side, not an outage.
    #[error("inventory broke the verification contract: {0}")]
    Contract(String),
}

/// How inventory was unavailable; the `Display` text is the detail the
/// customer's client sees, so it says what happened in plain words.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// No answer within `INVENTORY_TIMEOUT`.
    #[error("inventory did not answer within {}", humanize(*.0))]
    Timeout(Duration),
    /// No connection: nothing listens at `INVENTORY_URL` (refused), or the
    /// name does not resolve.
    #[error("could not connect to inventory (connection refused or host unreachable)")]
    Connect(#[source] reqwest::Error),
    /// The connection broke before a whole answer arrived.
    #[error("the connection to inventory failed before it answered")]
    Transport(#[source] reqwest::Error),
    /// Inventory answered 5xx (or 429: it is shedding load).
    #[error("inventory answered {status}{}", cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Answered {
        status: StatusCode,
        /// What its problem body said, e.g. that its Redis is unavailable.
        cause: Option<String>,
        /// Its `Retry-After`, if any.
        retry_after: Option<u64>,
    },
}

impl Unavailable {
    /// Seconds the customer's client should wait before retrying.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::Answered {
                retry_after: Some(secs),
                ..
            } => (*secs).clamp(1, MAX_RETRY_AFTER_SECS),
            _ => DEFAULT_RETRY_AFTER_SECS,
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The body of `POST /holds/verify`.
#[derive(Serialize)]
struct VerifyRequest<'a> {
    event_id: Uuid,
    seats: &'a [SeatRequest],
}

/// The body of its 200.
#[derive(Deserialize)]
struct VerifyResponse {
    seats: Vec<VerifiedHold>,
    #[serde(default)]
    sale_closes_at: Option<DateTime<Utc>>,
}

/// The fields of inventory's problem+json this client reads.
#[derive(Deserialize, Default)]
struct InventoryProblem {
    #[serde(rename = "type")]
    kind: Option<String>,
    field: Option<String>,
    dependency: Option<String>,
    detail: Option<String>,
    correlation_id: Option<String>,
}

impl InventoryClient {
    /// A client for inventory at `base`, waiting at most `timeout` per call.
    pub fn new(base: &reqwest::Url, timeout: Duration) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Inventory is inside the deployment: an `HTTP_PROXY` meant for
            // the outside world must not reroute (or break) this call.
            .no_proxy()
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self {
            http,
            verify_url: endpoint(base, VERIFY_PATH),
            timeout,
        })
    }

    /// Verifies the holds on `seats` of concert `event_id` of the customer
    /// whose bearer token is `bearer`; returns the holds in the order of
    /// `seats`, with their fencing tokens.
    #[tracing::instrument(
        name = "inventory.verify_holds",
        skip_all,
        fields(
            otel.kind = "client",
            http.request.method = "POST",
            url.full = %self.verify_url,
            seats = seats.len(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    )]
    pub async fn verify(
        &self,
        event_id: Uuid,
        seats: &[SeatRequest],
        bearer: &str,
    ) -> Result<Verified, VerifyError> {
        let span = tracing::Span::current();
        let request = self
            .request(event_id, seats, bearer)
            .map_err(|e| VerifyError::Contract(format!("cannot build the request: {e}")))?;
        let outcome = match self.http.execute(request).await {
            Ok(response) => {
                span.record("http.response.status_code", response.status().as_u16());
                self.read(response, seats).await
            }
            Err(e) => Err(self.failed(e).into()),
        };
        if let Err(e) = &outcome {
            if !matches!(
                e,
                VerifyError::HoldNotValid { .. } | VerifyError::SaleWindow { .. }
            ) {
                span.record("otel.status_code", "ERROR");
            }
            tracing::info!(error = %e, "holds not verified");
        }
        outcome
    }

    /// The request, carrying the customer's token and the current span's
    /// trace context.
    fn request(
        &self,
        event_id: Uuid,
        seats: &[SeatRequest],
        bearer: &str,
    ) -> reqwest::Result<reqwest::Request> {
        let mut headers = HeaderMap::new();
        telemetry::propagation::inject_into_http(&mut headers);
        // The token was verified on the way in, so it is a valid header
        // value; should it not be, inventory answers 401 and says why.
        if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {bearer}")) {
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        self.http
            .post(self.verify_url.clone())
            .headers(headers)
            .json(&VerifyRequest { event_id, seats })
            .build()
    }

    /// Classifies a request that got no answer.
    fn failed(&self, e: reqwest::Error) -> Unavailable {
        if e.is_timeout() {
            Unavailable::Timeout(self.timeout)
        } else if e.is_connect() {
            Unavailable::Connect(e)
        } else {
            Unavailable::Transport(e)
        }
    }

    /// Reads an answer: the tokens, a refused hold, or an outage.
    async fn read(
        &self,
        response: reqwest::Response,
        seats: &[SeatRequest],
    ) -> Result<Verified, VerifyError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // The body is read under the same timeout as the headers.
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Err(self.failed(e).into()),
        };
        if status == StatusCode::OK {
            let answer: VerifyResponse = serde_json::from_slice(&body)
                .map_err(|e| VerifyError::Contract(format!("unreadable 200 body: {e}")))?;
            return Ok(Verified {
                holds: matched(answer.seats, seats)?,
                sale_closes_at: answer.sale_closes_at,
            });
        }
        let problem: InventoryProblem = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Unavailable::Answered {
                status,
                cause: cause(&problem),
                retry_after,
            }
            .into());
        }
        if status == StatusCode::CONFLICT
            && matches!(
                problem.kind.as_deref(),
                Some("/problems/sale-not-open" | "/problems/sale-closed")
            )
        {
            return Err(VerifyError::SaleWindow {
                kind: problem.kind.unwrap_or_default(),
                detail: problem.detail.unwrap_or_default(),
                retry_after,
            });
        }
        if status == StatusCode::CONFLICT
            && problem.kind.as_deref() == Some("/problems/hold-not-valid")
        {
            let index = problem
                .field
                .as_deref()
                .and_then(hold_index)
                .filter(|i| *i < seats.len())
                .ok_or_else(|| {
                    VerifyError::Contract(format!(
                        "409 hold-not-valid without a valid seats[i].hold_token field: {:?}",
                        problem.field
                    ))
                })?;
            return Err(VerifyError::HoldNotValid {
                index,
                seat_id: seats[index].seat_id.as_str().to_owned(),
            });
        }
        Err(VerifyError::Contract(format!(
            "unexpected {status} {}: {}",
            problem.kind.as_deref().unwrap_or("(no problem type)"),
            problem.detail.as_deref().unwrap_or("(no detail)")
        )))
    }
}

/// `base` joined with `path`, keeping any path prefix `base` has
/// (`http://gw/inventory` → `http://gw/inventory/holds/verify`).
fn endpoint(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// `i` from `seats[i].hold_token`.
fn hold_index(field: &str) -> Option<usize> {
    field
        .strip_prefix("seats[")?
        .strip_suffix("].hold_token")?
        .parse()
        .ok()
}

/// What an error answer said, in a few words: its dependency and detail,
/// and its correlation id, which finds inventory's log line.
fn cause(problem: &InventoryProblem) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(dependency) = &problem.dependency {
        parts.push(format!("its dependency {dependency} is unavailable"));
    } else if let Some(kind) = &problem.kind {
        parts.push(kind.trim_start_matches("/problems/").replace('-', " "));
    }
    if let Some(id) = &problem.correlation_id {
        parts.push(format!("correlation id {id}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Checks that inventory answered for exactly the seats asked, in order:
/// a token stored on the wrong line would fence the wrong seat.
fn matched(
    verified: Vec<VerifiedHold>,
    asked: &[SeatRequest],
) -> Result<Vec<VerifiedHold>, VerifyError> {
    let same = verified.len() == asked.len()
        && verified
            .iter()
            .zip(asked)
            .all(|(v, a)| v.seat_id == a.seat_id.as_str());
    if same {
        Ok(verified)
    } else {
        Err(VerifyError::Contract(format!(
            "answered for seats {:?}, asked for {:?}",
            verified.iter().map(|v| &v.seat_id).collect::<Vec<_>>(),
            asked.iter().map(|a| a.seat_id.as_str()).collect::<Vec<_>>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SeatId;

    fn seat(id: &str) -> SeatRequest {
        SeatRequest {
            seat_id: SeatId::try_from(id.to_owned()).unwrap(),
            hold_token: Uuid::new_v4(),
        }
    }

    fn client() -> InventoryClient {
        InventoryClient::new(
            &"http://127.0.0.1:8081".parse().unwrap(),
            Duration::from_secs(2),
        )
        .unwrap()
    }

    #[test]
    fn the_request_carries_the_customers_token_and_the_trace_of_the_current_span() {
        telemetry::init_for_tests();
        let span = tracing::info_span!("inventory.verify_holds");
        let _entered = span.enter();

        let request = client()
            .request(Uuid::new_v4(), &[seat("A-1")], "the.customers.token")
            .unwrap();

        let traceparent = request.headers()["traceparent"].to_str().unwrap();
        let ours = telemetry::propagation::TraceContext::of(&span);
        assert_eq!(ours.traceparent.as_deref(), Some(traceparent));
        assert_eq!(request.url().as_str(), "http://127.0.0.1:8081/holds/verify");
        let authorization = &request.headers()["authorization"];
        assert_eq!(authorization, "Bearer the.customers.token");
        assert!(authorization.is_sensitive(), "kept out of debug output");
        assert!(!request.headers().contains_key("x-customer-id"));
    }

    #[test]
    fn the_endpoint_keeps_a_path_prefix() {
        let base = "http://gw:80/inventory/".parse().unwrap();
        assert_eq!(
            endpoint(&base, VERIFY_PATH).as_str(),
            "http://gw/inventory/holds/verify"
        );
    }

    #[test]
    fn a_hold_index_comes_from_the_field_path() {
        assert_eq!(hold_index("seats[3].hold_token"), Some(3));
        assert_eq!(hold_index("seats[x].hold_token"), None);
        assert_eq!(hold_index("event_id"), None);
    }

    #[test]
    fn an_answer_for_other_seats_is_a_contract_breach() {
        let hold = |id: &str| VerifiedHold {
            seat_id: id.to_owned(),
            fencing_token: 1,
            expires_at: Utc::now(),
        };
        let asked = [seat("A-1"), seat("A-2")];
        assert!(matched(vec![hold("A-1"), hold("A-2")], &asked).is_ok());
        assert!(matched(vec![hold("A-2"), hold("A-1")], &asked).is_err());
        assert!(matched(vec![hold("A-1")], &asked).is_err());
    }

    #[test]
    fn retry_after_is_bounded() {
        let answered = |retry_after| Unavailable::Answered {
            status: StatusCode::SERVICE_UNAVAILABLE,
            cause: None,
            retry_after,
        };
        assert_eq!(answered(None).retry_after_secs(), 1);
        assert_eq!(answered(Some(0)).retry_after_secs(), 1);
        assert_eq!(answered(Some(5)).retry_after_secs(), 5);
        assert_eq!(answered(Some(86_400)).retry_after_secs(), 60);
        assert_eq!(
            Unavailable::Timeout(Duration::from_millis(300)).to_string(),
            "inventory did not answer within 300ms"
        );
    }
}
