//! The one error type of the inventory API and its problem+json mapping.
//!
//! Every variant documents its status and `type`. A dependency that is
//! down is named (`postgres`, `redis`) with `Retry-After`; anything
//! unexpected is a 500 whose cause is logged with a correlation id.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use httpkit::Problem;
use uuid::Uuid;

use crate::catalog::{Concert, Sale};
use crate::holds::HoldError;
use crate::seat_map::SeatMapError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400 `/problems/invalid-field`: a path parameter or header is malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The parameter or header, e.g. `seat_id`.
        field: String,
        reason: String,
    },
    /// 422 `/problems/invalid-field`: a body field is invalid.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field path, e.g. `seats[2].price_cents`.
        field: String,
        reason: String,
    },
    /// 404 `/problems/event-not-found`.
    #[error("concert {0} not found")]
    EventNotFound(Uuid),
    /// 409 `/problems/sale-not-open` (with `Retry-After`: seconds until it
    /// opens) or `/problems/sale-closed` (the concert has started): holds
    /// and orders are taken only inside the concert's sale window.
    #[error("concert {} is not on sale", .concert.id)]
    SaleWindow {
        /// The concert, for its window.
        concert: Box<Concert>,
        sale: Sale,
    },
    /// 409 `/problems/event-exists` naming `id`: a concert with this id
    /// exists with other details or seats; nothing was changed.
    #[error("concert {0} exists with other details")]
    EventExists(Uuid),
    /// 404 `/problems/seat-not-found`, 409 `/problems/seat-sold`, 409
    /// `/problems/seat-held` (with `Retry-After`), 409
    /// `/problems/hold-superseded` (retry), 429
    /// `/problems/hold-limit-reached` (with `Retry-After`), 404
    /// `/problems/hold-not-found`, 503 naming `redis` or `postgres`.
    #[error(transparent)]
    Hold(#[from] HoldError),
    /// 409 `/problems/hold-not-valid`: an order presented a hold that is not
    /// live (lapsed, released, or someone else's).
    #[error("hold on seat {seat_id} is not valid")]
    HoldNotValid {
        seat_id: String,
        /// Its index in the request, for the field path.
        index: usize,
    },
    /// 503 naming `postgres`, or 503 `/problems/overloaded` when too many
    /// seat maps are being loaded at once.
    #[error(transparent)]
    SeatMap(#[from] SeatMapError),
    /// 503 naming `postgres`; 422 `/problems/invalid-field` for text
    /// Postgres cannot store (the safety net behind the handlers' checks);
    /// else 500.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    /// 422 naming a body field: `field` is its path, e.g. `seats[2].price_cents`.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn retry_secs(wait: Duration) -> u64 {
    // Round up: "retry after 0 s" invites a busy loop.
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::Invalid { field, reason } => {
                Problem::invalid_field(field, reason.clone()).status(StatusCode::BAD_REQUEST)
            }
            Self::InvalidField { field, reason } => Problem::invalid_field(field, reason.clone()),
            Self::SaleWindow { concert, sale } => sale_problem(concert, *sale),
            Self::EventExists(id) => Problem::new(
                StatusCode::CONFLICT,
                "event-exists",
                "A concert with this id exists with other details",
            )
            .detail(format!(
                "concert {id} exists with other details or seats; a retry must send the same \
                 body, and a new concert needs a new id (PATCH changes details)"
            ))
            .field("id"),
            Self::EventNotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "event-not-found", "Concert not found")
                    .detail(format!("there is no concert {id}"))
            }
            Self::HoldNotValid { seat_id, index } => Problem::new(
                StatusCode::CONFLICT,
                "hold-not-valid",
                "A hold is not valid",
            )
            .detail(format!(
                "seat {seat_id}: no live hold with this token (it lapsed, was released, or is someone else's)"
            ))
            .field(format!("seats[{index}].hold_token")),
            Self::Hold(e) => hold_problem(e),
            Self::SeatMap(SeatMapError::DatabaseUnavailable(_)) => {
                Problem::dependency_unavailable("postgres")
            }
            Self::SeatMap(SeatMapError::Busy) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many requests in progress",
            )
            .detail("too many seat maps are being loaded from the database; retry shortly")
            .retry_after(1),
            Self::Database(e) if pgkit::is_unavailable(e) => {
                Problem::dependency_unavailable("postgres")
            }
            Self::Database(e) if pgkit::is_unstorable_text(e) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "A field is invalid",
            )
            .detail("a text field holds a character that cannot be stored (e.g. NUL)"),
            Self::SeatMap(SeatMapError::Internal(_)) | Self::Database(_) => {
                Problem::internal(&self)
            }
        };
        problem.into_response()
    }
}

/// The 409 of a request outside a concert's sale window, naming the window.
fn sale_problem(concert: &Concert, sale: Sale) -> Problem {
    let window = format!(
        "the sale of concert {} runs from {} until it starts at {}",
        concert.id,
        concert.sale_opens_at.to_rfc3339(),
        concert.starts_at.to_rfc3339()
    );
    match sale {
        Sale::NotOpen(wait) => Problem::new(
            StatusCode::CONFLICT,
            "sale-not-open",
            "The sale has not opened yet",
        )
        .detail(format!("{window}; retry when it opens"))
        .retry_after(retry_secs(wait)),
        Sale::Open | Sale::Closed => {
            Problem::new(StatusCode::CONFLICT, "sale-closed", "The sale has closed")
                .detail(format!("{window}: it has started, nothing more is sold"))
        }
    }
}

fn hold_problem(e: &HoldError) -> Problem {
    match e {
        HoldError::SeatNotFound { event_id, seat_id } => {
            Problem::new(StatusCode::NOT_FOUND, "seat-not-found", "Seat not found")
                .detail(format!("concert {event_id} has no seat {seat_id}"))
        }
        HoldError::Sold(seat) => Problem::new(StatusCode::CONFLICT, "seat-sold", "Seat sold")
            .detail(format!("seat {seat} is sold")),
        HoldError::HeldByAnother {
            seat_id,
            retry_after,
        } => Problem::new(
            StatusCode::CONFLICT,
            "seat-held",
            "Seat held by another customer",
        )
        .detail(format!(
            "seat {seat_id} is held by another customer; the hold lapses within {} s unless they order",
            retry_secs(*retry_after)
        ))
        .retry_after(retry_secs(*retry_after)),
        HoldError::Superseded(seat) => Problem::new(
            StatusCode::CONFLICT,
            "hold-superseded",
            "A newer hold was granted first",
        )
        .detail(format!(
            "a newer hold on seat {seat} was granted while this request was on its way; the seat \
             may be free again: retry"
        ))
        .retry_after(1),
        HoldError::LimitReached { limit, retry_after } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "hold-limit-reached",
            "Too many holds",
        )
        .detail(format!(
            "a customer may hold {limit} seats at once; release one or wait for one to lapse"
        ))
        .retry_after(retry_secs(*retry_after)),
        HoldError::NotHeld(seat) => {
            Problem::new(StatusCode::NOT_FOUND, "hold-not-found", "Hold not found")
                .detail(format!("no live hold on seat {seat} with this token"))
        }
        HoldError::RedisUnavailable(_) => Problem::dependency_unavailable("redis")
            .detail("redis is unreachable: holds cannot be granted or checked right now; seat maps still work; retry shortly"),
        HoldError::Database(db) if pgkit::is_unavailable(db) => {
            Problem::dependency_unavailable("postgres")
        }
        HoldError::Database(_) => Problem::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_secs(Duration::from_millis(2001)), 3);
    }
}
