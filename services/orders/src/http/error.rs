//! The one error type of the orders API and its problem+json mapping.
//!
//! Each variant documents its status and `type`; clients branch on `type`.
//! Outages of what a request needs become 503 naming the dependency
//! (`postgres`, `inventory`) with `Retry-After`; anything unexpected becomes
//! a 500 whose cause is logged with a correlation id and never sent.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use httpkit::Problem;
use uuid::Uuid;

use crate::domain::{OrderStatus, Transition};
use crate::idempotency::IdempotencyError;
use crate::inventory_client::{Unavailable, VerifyError};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `/problems/idempotency-key-missing`: a POST without the header.
    #[error("Idempotency-Key header missing")]
    MissingIdempotencyKey,
    /// 400 `/problems/invalid-field` (field `Idempotency-Key`).
    #[error("invalid Idempotency-Key: {0}")]
    InvalidIdempotencyKey(String),
    /// 422 `/problems/idempotency-key-reused`: the key was used for a
    /// different request.
    #[error("Idempotency-Key reused for a different request")]
    IdempotencyKeyReused,
    /// 409 `/problems/idempotency-key-in-progress`, with `Retry-After`: a
    /// request with this key is still running after the wait limit.
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyKeyInProgress,
    /// 400 `/problems/invalid-field`: a path parameter is malformed.
    #[error("invalid path parameter {field}: {reason}")]
    InvalidPath {
        /// The parameter, e.g. `id`.
        field: &'static str,
        reason: String,
    },
    /// 422 `/problems/invalid-field`: Postgres refused a text value (a NUL
    /// byte or a character its encoding cannot hold) that the checks at
    /// the edge let through. A safety net: nothing was written.
    #[error("a text value cannot be stored")]
    UnstorableText,
    /// 409 `/problems/sale-not-open` (with `Retry-After`) or
    /// `/problems/sale-closed`: the concert is not on sale; creating an
    /// order (inventory says so) or paying it after the concert started.
    /// Nothing is written.
    #[error("not on sale: {detail}")]
    SaleWindow {
        /// Which.
        kind: SaleProblem,
        /// What the customer reads, naming the window.
        detail: String,
        /// Seconds until the sale opens.
        retry_after: Option<u64>,
    },
    /// 404 `/problems/order-not-found`.
    #[error("order {0} not found")]
    OrderNotFound(Uuid),
    /// 409 `/problems/invalid-transition`: e.g. paying a cancelled order.
    #[error("cannot {} order {order_id}: it is {status}", transition.verb())]
    InvalidTransition {
        order_id: Uuid,
        status: OrderStatus,
        transition: Transition,
    },
    /// 409 `/problems/hold-not-valid` naming the field
    /// `seats[i].hold_token`: inventory says the customer's hold on that
    /// seat is not live (it lapsed, was released, or is someone else's).
    /// Nothing is written; the customer holds the seat again and orders
    /// with the new token (and a new `Idempotency-Key`, as the body changed).
    #[error("the hold on seat {seat_id} is not valid")]
    HoldNotValid {
        /// The seat's position in the request.
        index: usize,
        seat_id: String,
    },
    /// 503 `/problems/dependency-unavailable` naming `inventory`, with
    /// `Retry-After`: the holds could not be verified (inventory refused
    /// the connection, did not answer in time, or answered 5xx). The detail
    /// says which. Nothing is written, so a retry with the same
    /// `Idempotency-Key` runs the request again.
    #[error(transparent)]
    InventoryUnavailable(Unavailable),
    /// 503 `/problems/dependency-unavailable` naming `postgres`, with
    /// `Retry-After`.
    #[error("postgres unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// 500 `/problems/internal`: logged with a correlation id.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(code) = e
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
        {
            if code == "55P03" {
                return Self::IdempotencyKeyInProgress;
            }
            if postgres_unavailable(&code) {
                return Self::DatabaseUnavailable(e);
            }
            if pgkit::is_unstorable_text(&e) {
                return Self::UnstorableText;
            }
        }
        match e {
            // The pool could not get a connection: Postgres is down or
            // saturated. Either way the client should retry, not give up.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::DatabaseUnavailable(e)
            }
            other => Self::Internal(other.into()),
        }
    }
}

/// Which side of its sale window a concert is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleProblem {
    /// Before `sale_opens_at`.
    NotOpen,
    /// At or after `starts_at`.
    Closed,
}

/// SQLSTATEs that mean "Postgres cannot serve this right now; retry",
/// rather than a bug: a restart or failover (57P01-57P03), lost or refused
/// connections (class 08), too many connections (53300), a statement
/// cancelled by a timeout (57014), and serialization failures or deadlocks
/// (40001, 40P01), whose whole transaction is safe to retry.
fn postgres_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "57014" | "40001" | "40P01"
        )
}

impl From<IdempotencyError> for ApiError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::Reused => Self::IdempotencyKeyReused,
            // 55P03 (the key's row lock timed out) and outages keep their
            // meaning through the sqlx mapping above.
            IdempotencyError::Storage(e) => Self::from(e),
            response @ IdempotencyError::Response(_) => Self::Internal(response.into()),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::HoldNotValid { index, seat_id } => Self::HoldNotValid { index, seat_id },
            VerifyError::SaleWindow {
                kind,
                detail,
                retry_after,
            } => Self::SaleWindow {
                kind: if kind == "/problems/sale-not-open" {
                    SaleProblem::NotOpen
                } else {
                    SaleProblem::Closed
                },
                detail,
                retry_after,
            },
            VerifyError::Unavailable(why) => Self::InventoryUnavailable(why),
            // Not the customer's fault and not an outage: a bug to log.
            contract @ VerifyError::Contract(_) => Self::Internal(contract.into()),
        }
    }
}

impl From<outbox::OutboxError> for ApiError {
    fn from(e: outbox::OutboxError) -> Self {
        match e {
            outbox::OutboxError::Insert { source, .. } => source.into(),
            other @ outbox::OutboxError::Serialize { .. } => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::MissingIdempotencyKey => Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency-key-missing",
                "Idempotency-Key header required",
            )
            .detail(
                "every POST needs an Idempotency-Key header, e.g. a fresh UUID per logical request",
            ),
            Self::InvalidIdempotencyKey(reason) => {
                Problem::invalid_field("Idempotency-Key", reason.clone())
                    .status(StatusCode::BAD_REQUEST)
            }
            Self::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused for a different request",
            )
            .field("Idempotency-Key")
            .detail(
                "this key was already used with a different method, path or body; use a new key",
            ),
            Self::IdempotencyKeyInProgress => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-progress",
                "A request with this Idempotency-Key is in progress",
            )
            .field("Idempotency-Key")
            .detail("retry with the same key shortly to get its response")
            .retry_after(1),
            Self::InvalidPath { field, reason } => {
                Problem::invalid_field(field, reason.clone()).status(StatusCode::BAD_REQUEST)
            }
            Self::UnstorableText => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "A field is invalid",
            )
            .detail("a text field holds a character that cannot be stored (e.g. NUL)"),
            Self::SaleWindow {
                kind,
                detail,
                retry_after,
            } => {
                let problem = match kind {
                    SaleProblem::NotOpen => Problem::new(
                        StatusCode::CONFLICT,
                        "sale-not-open",
                        "The sale has not opened yet",
                    ),
                    SaleProblem::Closed => {
                        Problem::new(StatusCode::CONFLICT, "sale-closed", "The sale has closed")
                    }
                }
                .detail(detail.clone());
                match retry_after {
                    Some(secs) => problem.retry_after(*secs),
                    None => problem,
                }
            }
            Self::OrderNotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "order-not-found", "Order not found")
                    .detail(format!("no order has id {id}"))
            }
            Self::InvalidTransition { .. } => Problem::new(
                StatusCode::CONFLICT,
                "invalid-transition",
                "The order is not in a state that allows this",
            )
            .detail(self.to_string()),
            Self::HoldNotValid { index, seat_id } => Problem::new(
                StatusCode::CONFLICT,
                "hold-not-valid",
                "A hold is not valid",
            )
            .field(format!("seats[{index}].hold_token"))
            .detail(format!(
                "seat {seat_id}: inventory has no live hold with this token (it lapsed, was \
                 released, or the seat is held by someone else); hold the seat again and order \
                 with the new hold_token"
            )),
            Self::InventoryUnavailable(why) => {
                tracing::warn!(error = %why, "inventory unavailable; order not created");
                Problem::dependency_unavailable("inventory")
                    .detail(format!(
                        "{why}; the holds could not be verified, so no order was created. \
                         Retry with the same Idempotency-Key."
                    ))
                    .retry_after(why.retry_after_secs())
            }
            Self::DatabaseUnavailable(e) => {
                tracing::warn!(error = %e, "postgres unavailable");
                Problem::dependency_unavailable("postgres")
            }
            Self::Internal(e) => Problem::internal(&**e),
        };
        problem.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::postgres_unavailable;

    #[test]
    fn restarts_and_lost_connections_are_unavailability_not_bugs() {
        for code in ["57P01", "08006", "08001", "53300", "40001", "40P01"] {
            assert!(postgres_unavailable(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
    }
}
