//! The catalog's routes: list and read concerts (anonymous), create and
//! change them (operators).

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use httpkit::auth::Operator;
use httpkit::{Problem, StrictJson};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Concert, ConcertChanges, Created, NewConcert, NewSeat};
use crate::api::params::{event_id, valid_seat_id};
use crate::api::problems::{
    BAD_EVENT_ID, BodyRefused, Internal, MALFORMED_JSON, NOT_OPERATOR, PROBLEM_JSON, PostgresDown,
    RateLimited, Unauthenticated,
};
use crate::api::{ApiError, AppState};

/// The catalog's routes, documented as they are mounted.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events, create_event))
        .routes(routes!(get_event, update_event))
}

/// Most seats in one concert created through the API.
const MAX_SEATS: usize = 10_000;

/// The default and the largest page of `GET /events`.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 200;

/// Body of a `GET /events` answer.
#[derive(Debug, Serialize, ToSchema)]
struct EventList<'a> {
    /// A page of concerts, soonest first.
    events: &'a [Concert],
    /// The `after` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<String>,
}

/// A position in the catalog's order, `(starts_at, id)`: the last concert
/// of a page, as `<starts_at in µs since 1970>_<id>`. Keyset, not an
/// offset, so a concert created or moved meanwhile neither repeats nor
/// hides another. Clients pass it back as it came; its form is in the
/// schema (the `after` parameter's pattern) so that a generated client can
/// validate it, and every string of that form is a position.
fn cursor_of(concert: &Concert) -> String {
    format!("{}_{}", concert.starts_at.timestamp_micros(), concert.id)
}

fn parse_cursor(cursor: &str) -> Option<(i64, Uuid)> {
    let (micros, id) = cursor.split_once('_')?;
    if micros.is_empty() || micros.len() > 18 || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((micros.parse().ok()?, Uuid::try_parse(id).ok()?))
}

/// `GET /events`.
#[utoipa::path(
    get,
    path = "/events",
    tag = "catalog",
    summary = "List the concerts",
    description = "The concerts, soonest first, a page at a time, from a local cache that other \
        instances invalidate by broadcast when a concert changes. Follow `next` (as `after`) \
        until it is absent.",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200,
            description = "Concerts per page, 1 to 200 (default 50)."),
        ("after" = Option<String>, Query, pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            description = "The `next` of the previous page: the page starts after it."),
    ),
    responses(
        (status = 200, description = "A page of the catalog.", body = EventList<'_>),
        (status = 400, description = "`/problems/invalid-field` naming `limit` (not 1 to 200) \
            or `after` (not a cursor this API gave).",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal, PostgresDown,
    ),
)]
async fn list_events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = match query.get("limit") {
        None => PAGE_DEFAULT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| ApiError::Invalid {
                field: "limit".into(),
                reason: format!("{raw:?} is not a page size from 1 to {PAGE_MAX}"),
            })?,
    };
    let after = match query.get("after") {
        None => None,
        Some(raw) => Some(parse_cursor(raw).ok_or_else(|| ApiError::Invalid {
            field: "after".into(),
            reason: "not a cursor from this API: pass the `next` of the previous page".into(),
        })?),
    };
    let concerts = state.catalog.list().await?;
    // The cached list is in catalog order, (starts_at, id): skip to the
    // first concert after the cursor.
    let start = after.map_or(0, |(micros, id)| {
        concerts.partition_point(|c| (c.starts_at.timestamp_micros(), c.id) <= (micros, id))
    });
    let page = &concerts[start..concerts.len().min(start + limit)];
    let next = (start + page.len() < concerts.len())
        .then(|| page.last().map(cursor_of))
        .flatten();
    Ok(Json(EventList { events: page, next }).into_response())
}

/// `GET /events/{id}`.
#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "catalog",
    summary = "Read a concert",
    params(
        ("id" = Uuid, Path, description = "The concert's id."),
    ),
    responses(
        (status = 200, description = "The concert.", body = Concert),
        (status = 400, description = BAD_EVENT_ID, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/event-not-found`.",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal, PostgresDown,
    ),
)]
async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    let concert = state
        .catalog
        .get(id)
        .await?
        .ok_or(ApiError::EventNotFound(id))?;
    Ok(Json(&*concert).into_response())
}

/// Body of `POST /events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateEvent {
    /// The concert's id; chosen by the service when left out. Choose it
    /// to make creation safe to retry.
    id: Option<Uuid>,
    /// Its name, 1 to 200 characters, not only spaces, no control
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    name: String,
    /// Where it takes place; as `name`.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    venue: String,
    /// When it starts.
    starts_at: DateTime<Utc>,
    /// When tickets go on sale; not after `starts_at`.
    sale_opens_at: DateTime<Utc>,
    /// 1 to 10 000 seats, each label once, prices not negative.
    #[schema(min_items = 1, max_items = 10000)]
    seats: Vec<NewSeat>,
}

/// A name or venue: 1 to 200 characters, not only whitespace, none of them a
/// control character. The schemas of `CreateEvent` and `ConcertChanges`
/// state the same rule as a pattern (keep them together).
/// NUL would reach Postgres, which refuses it (SQLSTATE 22021); the others
/// (newlines, escapes, bells) have no business in a concert's name and
/// would end up in every client's page and log line.
fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if !value.chars().any(|c| !c.is_whitespace()) || value.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ApiError::invalid(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

impl CreateEvent {
    fn validate(self) -> Result<NewConcert, ApiError> {
        check_text("name", &self.name)?;
        check_text("venue", &self.venue)?;
        if self.sale_opens_at > self.starts_at {
            return Err(ApiError::invalid(
                "sale_opens_at",
                "the sale must open before the concert starts",
            ));
        }
        if self.seats.is_empty() || self.seats.len() > MAX_SEATS {
            return Err(ApiError::invalid(
                "seats",
                format!("a concert has 1 to {MAX_SEATS} seats"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, seat) in self.seats.iter().enumerate() {
            if !valid_seat_id(&seat.seat_id) {
                return Err(ApiError::invalid(
                    format!("seats[{i}].seat_id"),
                    "1-16 letters, digits, '-' or '_'",
                ));
            }
            if !seen.insert(&seat.seat_id) {
                return Err(ApiError::invalid(
                    format!("seats[{i}].seat_id"),
                    format!("seat {} is listed twice", seat.seat_id),
                ));
            }
            if seat.price_cents < 0 {
                return Err(ApiError::invalid(
                    format!("seats[{i}].price_cents"),
                    "must not be negative",
                ));
            }
        }
        Ok(NewConcert {
            id: self.id.unwrap_or_else(Uuid::now_v7),
            name: self.name,
            venue: self.venue,
            starts_at: self.starts_at,
            sale_opens_at: self.sale_opens_at,
            seats: self.seats,
        })
    }
}

/// `POST /events`: 201 when created, 200 with the existing concert when
/// the same one exists (a retried creation), 409 when the id names another.
#[utoipa::path(
    post,
    path = "/events",
    tag = "catalog",
    summary = "Create a concert with its seats",
    description = "An operator's call. Idempotent by id: when a concert with this `id` exists \
        with the same details and seats (a retry), the answer is 200 with that concert and \
        nothing changes; with other details or seats, 409 `/problems/event-exists`.",
    security(("bearer" = [])),
    request_body = CreateEvent,
    responses(
        Unauthenticated,
        (status = 403, description = NOT_OPERATOR, body = Problem, content_type = PROBLEM_JSON),
        (status = 201, description = "Created.", body = Concert,
            headers(("Location" = String, description = "`/events/{id}`."))),
        (status = 200, description = "A concert with this id and the same content exists \
            already (a retry): it is returned.",
            body = Concert),
        (status = 409, description = "`/problems/event-exists` (field `id`): a concert with \
            this id exists with other details or seats; nothing changed.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 400, description = MALFORMED_JSON, body = Problem, content_type = PROBLEM_JSON),
        BodyRefused,
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. \
            `sale_opens_at` or `seats[2].price_cents`.",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal, PostgresDown,
    ),
)]
async fn create_event(
    State(state): State<AppState>,
    _: Operator,
    StrictJson(body): StrictJson<CreateEvent>,
) -> Result<Response, ApiError> {
    let concert = body.validate()?;
    match state.catalog.create(&concert).await? {
        Created::New(created) => {
            state
                .seat_maps
                .version_changed(created.id, created.version)
                .await;
            let location = HeaderValue::from_str(&format!("/events/{}", created.id))
                .map_err(|e| ApiError::invalid("id", e.to_string()))?;
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(created),
            )
                .into_response())
        }
        Created::Exists(existing) => Ok(Json(existing).into_response()),
        Created::Conflict(existing) => Err(ApiError::EventExists(existing.id)),
    }
}

/// `PATCH /events/{id}`.
#[utoipa::path(
    patch,
    path = "/events/{id}",
    tag = "catalog",
    summary = "Change a concert's details",
    description = "Changes the fields sent and bumps the concert's version, which retires its \
        cached seat maps and tells the other instances to drop their cached copy.",
    params(
        ("id" = Uuid, Path, description = "The concert's id."),
    ),
    security(("bearer" = [])),
    request_body = ConcertChanges,
    responses(
        Unauthenticated,
        (status = 403, description = NOT_OPERATOR, body = Problem, content_type = PROBLEM_JSON),
        (status = 200, description = "The concert as changed.", body = Concert),
        (status = 400, description = "`/problems/invalid-field` naming `id` (not a UUID), or \
            `/problems/malformed-json`.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/event-not-found`.",
            body = Problem, content_type = PROBLEM_JSON),
        BodyRefused,
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. `name`, \
            or `sale_opens_at` when the sale would open after the start.",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal, PostgresDown,
    ),
)]
async fn update_event(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
    StrictJson(changes): StrictJson<ConcertChanges>,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    for (field, value) in [("name", &changes.name), ("venue", &changes.venue)] {
        if let Some(value) = value {
            check_text(field, value)?;
        }
    }
    let updated = match state.catalog.update(id, &changes).await {
        Ok(Some(updated)) => updated,
        Ok(None) => return Err(ApiError::EventNotFound(id)),
        Err(e) if violates(&e, "events_sale_before_start_check") => {
            return Err(ApiError::invalid(
                "sale_opens_at",
                "the sale must open before the concert starts",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    state.seat_maps.version_changed(id, updated.version).await;
    Ok(Json(updated).into_response())
}

fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.constraint())
        .is_some_and(|c| c == constraint)
}
