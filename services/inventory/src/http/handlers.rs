//! Request handlers: parse and validate, call the domain, shape the answer.
//!
//! Why one long file: catalog, seat map, holds and ops handlers with their
//! `OpenAPI` annotations (most of the length); #12 moves each feature into a
//! folder of its own with its router.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use httpkit::StrictJson;
use httpkit::auth::{Customer, Operator};
use httpkit::health::Readiness;
use serde::Deserialize;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::docs::{
    BAD_EVENT_ID, INTERNAL, MALFORMED_JSON, NOT_CUSTOMER, NOT_OPERATOR, PROBLEM_JSON, RATE_LIMITED,
    TOO_LARGE, UNAUTHENTICATED, UNSUPPORTED_MEDIA_TYPE,
};
use super::{ApiError, AppState};
use crate::catalog::{Concert, ConcertChanges, Created, NewConcert, NewSeat, Sale};
use crate::holds::{Hold, HoldError, VerifiedHold};
use crate::seatmap::{HoldsKnown, SeatMap, SeatStatus};

/// Browsers and CDNs may reuse a map for 2 s and serve it stale for 10 s
/// more while they revalidate: holds change every second, so longer would
/// show too many seats as free that are not.
const SEAT_MAP_CACHE_CONTROL: &str = "public, max-age=2, stale-while-revalidate=10";
/// Without Redis, holds are unknown: make clients come back soon.
const DEGRADED_CACHE_CONTROL: &str = "no-cache";

/// Most seats in one concert created through the API.
const MAX_SEATS: usize = 10_000;
/// Most seats verified in one call (an order has at most 10).
const MAX_VERIFY: usize = 10;

fn event_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::Invalid {
        field: "id".into(),
        reason: format!("{raw:?} is not a UUID"),
    })
}

/// Seat labels as orders accepts them: 1–16 letters, digits, `-` or `_`.
fn valid_seat_id(seat: &str) -> bool {
    (1..=16).contains(&seat.len())
        && seat
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn seat_id(raw: String) -> Result<String, ApiError> {
    if valid_seat_id(&raw) {
        Ok(raw)
    } else {
        Err(ApiError::Invalid {
            field: "seat".into(),
            reason: format!("{raw:?} is not a seat id (1-16 letters, digits, '-' or '_')"),
        })
    }
}

// ---- catalog ---------------------------------------------------------------

/// Body of a `GET /events` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventList<'a> {
    /// A page of concerts, soonest first.
    events: &'a [Concert],
    /// The `after` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<String>,
}

/// The default and the largest page of `GET /events`.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 200;

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
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn list_events(
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
        (status = 400, description = BAD_EVENT_ID, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/event-not-found`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn get_event(
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
pub(super) struct CreateEvent {
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

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A name or venue: 1 to 200 characters, not only whitespace, none of them a
/// control character. The schemas of `CreateEvent` and `ConcertChanges`
/// state the same rule as a pattern (keep them together).
/// NUL would reach Postgres, which refuses it (SQLSTATE 22021); the others
/// (newlines, escapes, bells) have no business in a concert's name and
/// would end up in every client's page and log line.
fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if !value.chars().any(|c| !c.is_whitespace()) || value.chars().count() > 200 {
        return Err(invalid(field, "must be 1 to 200 characters"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(
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
            return Err(invalid(
                "sale_opens_at",
                "the sale must open before the concert starts",
            ));
        }
        if self.seats.is_empty() || self.seats.len() > MAX_SEATS {
            return Err(invalid(
                "seats",
                format!("a concert has 1 to {MAX_SEATS} seats"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, seat) in self.seats.iter().enumerate() {
            if !valid_seat_id(&seat.seat_id) {
                return Err(invalid(
                    format!("seats[{i}].seat_id"),
                    "1-16 letters, digits, '-' or '_'",
                ));
            }
            if !seen.insert(&seat.seat_id) {
                return Err(invalid(
                    format!("seats[{i}].seat_id"),
                    format!("seat {} is listed twice", seat.seat_id),
                ));
            }
            if seat.price_cents < 0 {
                return Err(invalid(
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
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_OPERATOR, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 201, description = "Created.", body = Concert,
            headers(("Location" = String, description = "`/events/{id}`."))),
        (status = 200, description = "A concert with this id and the same content exists \
            already (a retry): it is returned.",
            body = Concert),
        (status = 409, description = "`/problems/event-exists` (field `id`): a concert with \
            this id exists with other details or seats; nothing changed.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 400, description = MALFORMED_JSON, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 413, description = TOO_LARGE, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. \
            `sale_opens_at` or `seats[2].price_cents`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn create_event(
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
                .map_err(|e| invalid("id", e.to_string()))?;
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
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_OPERATOR, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 200, description = "The concert as changed.", body = Concert),
        (status = 400, description = "`/problems/invalid-field` naming `id` (not a UUID), or \
            `/problems/malformed-json`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/event-not-found`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 413, description = TOO_LARGE, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. `name`, \
            or `sale_opens_at` when the sale would open after the start.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn update_event(
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
            return Err(invalid(
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

// ---- seat map --------------------------------------------------------------

/// The strong validator of a seat map: its Postgres version plus a digest
/// of the seats held right now (holds change without a version bump).
fn etag(map: &SeatMap) -> String {
    match map.holds {
        HoldsKnown::Unknown => format!("\"v{}-nh\"", map.version),
        HoldsKnown::Live => {
            let mut held: Vec<&str> = map
                .seats
                .iter()
                .filter(|s| s.status == SeatStatus::Held)
                .map(|s| s.seat_id.as_str())
                .collect();
            held.sort_unstable();
            let digest = Sha256::digest(held.join(",").as_bytes());
            let mut short = String::with_capacity(12);
            for byte in &digest[..6] {
                let _ = write!(short, "{byte:02x}");
            }
            format!("\"v{}-{short}\"", map.version)
        }
    }
}

/// Whether `If-None-Match` lists `etag` (or `*`); weak comparison, as RFC
/// 9110 prescribes for this header.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// `GET /events/{id}/seats`.
#[utoipa::path(
    get,
    path = "/events/{id}/seats",
    tag = "seat map",
    summary = "Read a concert's seat map",
    description = "Each seat with its price and status (available, held or sold), cache-aside \
        in Redis. Revalidate with `If-None-Match`: an unchanged map answers 304 without a body. \
        Without Redis the map comes from Postgres with `holds: unknown` (held seats show as \
        available) and `Cache-Control: no-cache`.",
    params(
        ("id" = Uuid, Path, description = "The concert's id."),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "`ETag`s of maps the client has; `*` matches any."),
    ),
    responses(
        (status = 200, description = "The seat map.", body = SeatMap, headers(
            ("ETag" = String, description = "A strong validator: the concert's version and a \
                digest of the seats held right now, e.g. `\"v3-9f86d081884c\"`."),
            ("Cache-Control" = String, description = "`public, max-age=2, \
                stale-while-revalidate=10`, or `no-cache` when holds are unknown."),
        )),
        (status = 304, description = "Not modified: `If-None-Match` lists the current `ETag`.",
            headers(
                ("ETag" = String, description = "The current validator."),
                ("Cache-Control" = String, description = "As on a 200."),
            )),
        (status = 400, description = BAD_EVENT_ID, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/event-not-found`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` (too many requests in progress, or too many maps loading \
            from Postgres while Redis cannot help) or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn seat_map(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    let map = state
        .seat_maps
        .get(id)
        .await?
        .ok_or(ApiError::EventNotFound(id))?;
    let etag = etag(&map);
    let cache_control = match map.holds {
        HoldsKnown::Live => SEAT_MAP_CACHE_CONTROL,
        HoldsKnown::Unknown => DEGRADED_CACHE_CONTROL,
    };
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| invalid("etag", e.to_string()))?;
    let headers_out = [
        (header::ETAG, etag_value),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
    ];
    if none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, headers_out).into_response());
    }
    Ok((headers_out, Json(map)).into_response())
}

// ---- holds -----------------------------------------------------------------

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
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_CUSTOMER, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 400, description = "`/problems/invalid-field` naming `id` or `seat`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/seat-not-found`: no such concert or seat.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`/problems/seat-sold`; `/problems/seat-held`: another \
            customer holds it; it is free again after `Retry-After` at the latest unless they \
            order; `/problems/sale-not-open` (retry after `Retry-After`) or \
            `/problems/sale-closed` (the concert has started): holds are taken only from \
            `sale_opens_at` until `starts_at`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "With `seat-held`: seconds until the other hold lapses; with `sale-not-open`: until the sale opens."))),
        (status = 429, description = "`/problems/hold-limit-reached`: the customer holds as many \
            seats as allowed; release one or wait for one to lapse. Or `/problems/rate-limited`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until a hold lapses, or until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `redis` (holds \
            cannot be granted; seat maps still work) or `postgres`, `/problems/overloaded` or \
            `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn hold(
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
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_CUSTOMER, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 400, description = "`/problems/invalid-field` naming `id`, `seat` or \
            `Hold-Token` (missing or not a UUID).",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/hold-not-found`: this token holds nothing on \
            that seat held by this customer (it lapsed, was released, or is someone else's).",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `redis`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn release(
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
pub(super) struct VerifyRequest {
    /// The concert.
    event_id: Uuid,
    /// 1 to 10 seats with the tokens of their holds, each seat once.
    #[schema(min_items = 1, max_items = 10)]
    seats: Vec<VerifySeat>,
}

/// A seat and the hold presented for it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifySeat {
    /// The seat's label.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,16}$")]
    seat_id: String,
    /// The `hold_token` the hold was granted with.
    hold_token: Uuid,
}

/// Body of a successful `POST /holds/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VerifiedHolds {
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
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_CUSTOMER, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 400, description = MALFORMED_JSON, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`/problems/hold-not-valid` naming the first seat whose hold \
            is not live or not this customer's (field `seats[i].hold_token`); or \
            `/problems/sale-not-open` / `/problems/sale-closed`: outside the concert's sale \
            window.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "With `sale-not-open`: seconds until the sale opens."))),
        (status = 413, description = TOO_LARGE, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. `seats` \
            (not 1 to 10 seats) or `seats[0].seat_id`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 429, description = RATE_LIMITED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until this client may send again."))),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `redis`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    customer: Customer,
    StrictJson(body): StrictJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    if body.seats.is_empty() || body.seats.len() > MAX_VERIFY {
        return Err(invalid("seats", format!("1 to {MAX_VERIFY} seats")));
    }
    let mut seats = Vec::with_capacity(body.seats.len());
    for (i, seat) in body.seats.into_iter().enumerate() {
        if !valid_seat_id(&seat.seat_id) {
            return Err(invalid(
                format!("seats[{i}].seat_id"),
                "1-16 letters, digits, '-' or '_'",
            ));
        }
        // A seat listed twice would make "which hold is not valid" ambiguous.
        if seats.iter().any(|(s, _)| *s == seat.seat_id) {
            return Err(invalid(
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

// ---- ops, health, metrics ----------------------------------------------------

/// Body of a `POST /ops/warmup` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Warmup {
    /// Seat maps loaded into Redis.
    warmed: usize,
    /// The window: concerts whose sale opens within it were warmed.
    window_seconds: u64,
}

/// `POST /ops/warmup`: loads the seat maps of concerts whose sale opens
/// within the warmup window.
#[utoipa::path(
    post,
    path = "/ops/warmup",
    tag = "ops",
    summary = "Warm the seat-map cache",
    description = "Loads into Redis the seat maps of the concerts whose sale opens within \
        `WARMUP_WINDOW` (and that have not started), so the first buyers hit a warm cache. \
        Not behind admission control. An operator's call.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Warmed.", body = Warmup),
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_OPERATOR, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 500, description = INTERNAL, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` or `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
pub(super) async fn warmup(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Response, ApiError> {
    let warmed = state.seat_maps.warmup(state.warmup_window).await?;
    Ok(Json(Warmup {
        warmed,
        window_seconds: state.warmup_window.as_secs(),
    })
    .into_response())
}

/// `GET /readyz`: Postgres and NATS are required; without Redis the
/// service still serves (slower), so it reports itself degraded, not down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    description = "Postgres and NATS are required. Without Redis the service still serves \
        (slower, holds refused), so it answers 200 `degraded` rather than failing.",
    responses(
        (status = 200, description = "Ready, or degraded (Redis down).",
            body = httpkit::health::ReadinessReport),
        (status = 503, description = "Not ready: Postgres or NATS is unavailable.",
            body = httpkit::health::ReadinessReport),
    ),
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Readiness {
    Readiness::new()
        .check("postgres", pgkit::ping(&state.db).await)
        .check("nats", messaging::check_connected(&state.nats))
        .degraded("redis", state.redis.ping().await)
}

/// `GET /metrics`: seat-map cache, admission control and the allocation
/// consumer (Prometheus text).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Metrics",
    description = "Prometheus text: seat-map cache hits, misses and loads, admission \
        rejections, and the allocation consumer's counts and lag.",
    responses((status = 200, description = "The metrics.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let js = async_nats::jetstream::new(state.nats.clone());
    let lag = consumer::lag(
        &js,
        &state.topology,
        messaging::StreamKind::OrderEvents,
        crate::allocation::CONSUMER,
    )
    .await
    .ok();
    let body = [
        state.seat_maps.metrics().render(),
        state.admission.render(),
        consumer::render_metrics(&[(crate::allocation::CONSUMER, state.consumer.snapshot(), lag)]),
    ]
    .concat();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"v1-aa\", W/\"v2-bb\""),
        );
        assert!(none_match(&headers, "\"v2-bb\""));
        assert!(none_match(&headers, "\"v1-aa\""));
        assert!(!none_match(&headers, "\"v3-cc\""));
        assert!(!none_match(&HeaderMap::new(), "\"v1-aa\""));
    }

    #[test]
    fn seat_ids_are_short_labels() {
        assert!(valid_seat_id("A-12"));
        assert!(!valid_seat_id(""));
        assert!(!valid_seat_id("A 1"));
        assert!(!valid_seat_id(&"x".repeat(17)));
    }
}
