//! The holds' routes: a customer holds and releases seats, and orders
//! (with that customer's token) verifies their holds before it takes an
//! order. All three need a customer's bearer token and the concert's sale
//! to be open.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use httpkit::auth::Customer;
use httpkit::{Problem, StrictJson};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Hold, HoldError, VerifiedHold};
use crate::api::params::{event_id, seat_id, valid_seat_id};
use crate::api::problems::{
    BodyRefused, Internal, MALFORMED_JSON, NOT_CUSTOMER, PROBLEM_JSON, RateLimited, RedisDown,
    Unauthenticated,
};
use crate::api::{ApiError, AppState};
use crate::catalog::{Concert, Sale};

/// The holds' routes, documented as they are mounted.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(hold, release))
        .routes(routes!(verify))
}

/// Most seats verified in one call (an order has at most 10).
const MAX_VERIFY: usize = 10;

/// `POST /events/{id}/seats/{seat}/hold`.
#[utoipa::path(
    post,
    path = "/events/{id}/seats/{seat}/hold",
    tag = "holds",
    summary = "Hold a seat",
    description = "Holds the seat for the calling customer (the token's `sub`; no body) for \
        `HOLD_TTL`. The `hold_token` releases the hold (with the same customer's token) and \
        goes into the order; the `fencing_token` decides the sale: only the \
        latest hold's token can buy the seat, so a hold that lapsed and was granted to \
        someone else loses it even if it is paid first.",
    params(
        ("id" = Uuid, Path, description = "The concert's id."),
        ("seat" = String, Path, pattern = "^[A-Za-z0-9_-]{1,16}$",
            description = "The seat's label, 1 to 16 letters, digits, `-` or `_`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Held.", body = Hold),
        Unauthenticated,
        (status = 403, description = NOT_CUSTOMER, body = Problem, content_type = PROBLEM_JSON),
        (status = 400, description = "`/problems/invalid-field` naming `id` or `seat`.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/seat-not-found`: no such concert or seat.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`/problems/seat-sold`; `/problems/seat-held`: another \
            customer holds it; it is free again after `Retry-After` at the latest unless they \
            order; `/problems/hold-superseded`: a newer hold was granted while this request was \
            on its way (the seat may be free again; retry after `Retry-After`); \
            `/problems/sale-not-open` (retry after `Retry-After`) or \
            `/problems/sale-closed` (the concert has started): holds are taken only from \
            `sale_opens_at` until `starts_at`.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "With `seat-held`: seconds until the other hold lapses; with `hold-superseded`: 1; with `sale-not-open`: until the sale opens."))),
        // Not `RateLimited`: the hold limit answers 429 too.
        (status = 429, description = "`/problems/hold-limit-reached`: the customer holds as many \
            seats as allowed; release one or wait for one to lapse. Or `/problems/rate-limited`.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until a hold lapses, or until this client may send again."))),
        Internal,
        // Not `RedisDown`: a hold also needs Postgres, for its fencing token.
        (status = 503, description = "`/problems/dependency-unavailable` naming `redis` (holds \
            cannot be granted; seat maps still work) or `postgres`, `/problems/overloaded` or \
            `/problems/timeout`.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
async fn hold(
    State(state): State<AppState>,
    customer: Customer,
    Path((id, seat)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    let seat = seat_id(seat)?;
    on_sale(&state, id).await?;
    let hold = state.holds.acquire(id, &seat, customer.id).await?;
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

/// Refuses a hold or a verification outside the concert's sale window
/// (409 naming the window). An unknown concert passes: the hold or the
/// verification then answers "no such seat" or "no live hold" itself.
///
/// The window comes from the local catalog cache, which a change to the
/// concert invalidates on every instance within a second.
async fn on_sale(state: &AppState, id: Uuid) -> Result<Option<Arc<Concert>>, ApiError> {
    let Some(concert) = state.catalog.get(id).await? else {
        return Ok(None);
    };
    match concert.sale_at(Utc::now()) {
        Sale::Open => Ok(Some(concert)),
        sale => Err(ApiError::SaleWindow {
            concert: Box::new((*concert).clone()),
            sale,
        }),
    }
}

/// `DELETE /events/{id}/seats/{seat}/hold` with header `Hold-Token`:
/// 204, or 404 if that token holds nothing there.
#[utoipa::path(
    delete,
    path = "/events/{id}/seats/{seat}/hold",
    tag = "holds",
    summary = "Release a hold",
    description = "Releases the calling customer's hold granted with `Hold-Token`; the seat is \
        free at once. The token alone is not enough: another customer's release is a 404.",
    params(
        ("id" = Uuid, Path, description = "The concert's id."),
        ("seat" = String, Path, pattern = "^[A-Za-z0-9_-]{1,16}$", description = "The seat's label."),
        ("Hold-Token" = Uuid, Header, description = "The `hold_token` the hold was granted with."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Released."),
        Unauthenticated,
        (status = 403, description = NOT_CUSTOMER, body = Problem, content_type = PROBLEM_JSON),
        (status = 400, description = "`/problems/invalid-field` naming `id`, `seat` or \
            `Hold-Token` (missing or not a UUID).",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/hold-not-found`: this token holds nothing on \
            that seat held by this customer (it lapsed, was released, or is someone else's).",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal, RedisDown,
    ),
)]
async fn release(
    State(state): State<AppState>,
    customer: Customer,
    Path((id, seat)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    let seat = seat_id(seat)?;
    let token = headers
        .get("hold-token")
        .ok_or_else(|| ApiError::Invalid {
            field: "Hold-Token".into(),
            reason: "the header is required: the hold_token the hold was granted with".into(),
        })?
        .to_str()
        .ok()
        .and_then(|t| t.parse::<Uuid>().ok())
        .ok_or_else(|| ApiError::Invalid {
            field: "Hold-Token".into(),
            reason: "not a UUID".into(),
        })?;
    if state.holds.release(id, &seat, token, customer.id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(HoldError::NotHeld(seat).into())
    }
}

/// Body of `POST /holds/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// The concert.
    event_id: Uuid,
    /// 1 to 10 seats with the tokens of their holds, each seat once.
    #[schema(min_items = 1, max_items = 10)]
    seats: Vec<VerifySeat>,
}

/// A seat and the hold presented for it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifySeat {
    /// The seat's label.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,16}$")]
    seat_id: String,
    /// The `hold_token` the hold was granted with.
    hold_token: Uuid,
}

/// Body of a successful `POST /holds/verify`.
#[derive(Debug, Serialize, ToSchema)]
struct VerifiedHolds {
    /// Each seat's live hold, in the order asked.
    seats: Vec<VerifiedHold>,
    /// When the concert's sale closes (it starts): orders refuses payments
    /// from then on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sale_closes_at: Option<DateTime<Utc>>,
}

/// `POST /holds/verify`: 200 `{seats: [{seat_id, fencing_token,
/// expires_at}]}`, or 409 naming the first seat whose hold is not live.
#[utoipa::path(
    post,
    path = "/holds/verify",
    tag = "holds",
    summary = "Verify holds",
    description = "Orders calls this before it creates an order, with the customer's own token: \
        are these holds live and the calling customer's, and what are their fencing tokens? \
        Reads only.",
    security(("bearer" = [])),
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Every hold is live and the customer's.", body = VerifiedHolds),
        Unauthenticated,
        (status = 403, description = NOT_CUSTOMER, body = Problem, content_type = PROBLEM_JSON),
        (status = 400, description = MALFORMED_JSON, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`/problems/hold-not-valid` naming the first seat whose hold \
            is not live or not this customer's (field `seats[i].hold_token`); or \
            `/problems/sale-not-open` / `/problems/sale-closed`: outside the concert's sale \
            window.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "With `sale-not-open`: seconds until the sale opens."))),
        BodyRefused,
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. `seats` \
            (not 1 to 10 seats) or `seats[0].seat_id`.",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal, RedisDown,
    ),
)]
async fn verify(
    State(state): State<AppState>,
    customer: Customer,
    StrictJson(body): StrictJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    if body.seats.is_empty() || body.seats.len() > MAX_VERIFY {
        return Err(ApiError::invalid(
            "seats",
            format!("1 to {MAX_VERIFY} seats"),
        ));
    }
    let mut seats = Vec::with_capacity(body.seats.len());
    for (i, seat) in body.seats.into_iter().enumerate() {
        if !valid_seat_id(&seat.seat_id) {
            return Err(ApiError::invalid(
                format!("seats[{i}].seat_id"),
                "1-16 letters, digits, '-' or '_'",
            ));
        }
        // A seat listed twice would make "which hold is not valid" ambiguous.
        if seats.iter().any(|(s, _)| *s == seat.seat_id) {
            return Err(ApiError::invalid(
                format!("seats[{i}].seat_id"),
                format!("seat {} is listed twice", seat.seat_id),
            ));
        }
        seats.push((seat.seat_id, seat.hold_token));
    }
    let sale_closes_at = on_sale(&state, body.event_id)
        .await?
        .map(|concert| concert.starts_at);
    match state.holds.verify(body.event_id, &seats, customer.id).await {
        Ok(verified) => Ok(Json(VerifiedHolds {
            seats: verified,
            sale_closes_at,
        })
        .into_response()),
        Err(HoldError::NotHeld(seat_id)) => {
            let index = seats.iter().position(|(s, _)| *s == seat_id).unwrap_or(0);
            Err(ApiError::HoldNotValid { seat_id, index })
        }
        Err(e) => Err(e.into()),
    }
}
