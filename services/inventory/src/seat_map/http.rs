//! The seat map's routes: `GET /events/{id}/seats` with HTTP caching
//! (`ETag`, 304, `Cache-Control`), and the operators' `POST /ops/warmup`,
//! which is mounted outside admission control.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use httpkit::Problem;
use httpkit::auth::Operator;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{HoldsKnown, SeatMap};
use crate::api::params::event_id;
use crate::api::problems::{
    BAD_EVENT_ID, Internal, NOT_OPERATOR, PROBLEM_JSON, PostgresDown, RateLimited, Unauthenticated,
};
use crate::api::{ApiError, AppState};

/// `GET /events/{id}/seats`, documented as it is mounted.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(seat_map))
}

/// `POST /ops/warmup`, documented as it is mounted.
pub(crate) fn ops_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(warmup))
}

/// Browsers and CDNs may reuse a map for 2 s and serve it stale for 10 s
/// more while they revalidate: holds change every second, so longer would
/// show too many seats as free that are not.
const SEAT_MAP_CACHE_CONTROL: &str = "public, max-age=2, stale-while-revalidate=10";
/// Without Redis, holds are unknown: make clients come back soon.
const DEGRADED_CACHE_CONTROL: &str = "no-cache";

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
        (status = 400, description = BAD_EVENT_ID, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`/problems/event-not-found`.",
            body = Problem, content_type = PROBLEM_JSON),
        RateLimited, Internal,
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, \
            `/problems/overloaded` (too many requests in progress, or too many maps loading \
            from Postgres while Redis cannot help) or `/problems/timeout`.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
async fn seat_map(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    let map = state
        .seat_maps
        .rendered(id)
        .await?
        .ok_or(ApiError::EventNotFound(id))?;
    let cache_control = match map.holds {
        HoldsKnown::Live => SEAT_MAP_CACHE_CONTROL,
        HoldsKnown::Unknown => DEGRADED_CACHE_CONTROL,
    };
    let etag =
        HeaderValue::from_str(&map.etag).map_err(|e| ApiError::invalid("etag", e.to_string()))?;
    let headers_out = [
        (header::ETAG, etag),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
    ];
    // Neither answer decodes or renders anything an unchanged map needs:
    // the tag and the body are kept (`seat_map::rendered`).
    if none_match(&headers, &map.etag) {
        return Ok((StatusCode::NOT_MODIFIED, headers_out).into_response());
    }
    let json = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    Ok((headers_out, json, map.body.clone()).into_response())
}

/// Body of a `POST /ops/warmup` answer.
#[derive(Debug, Serialize, ToSchema)]
struct Warmup {
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
        Unauthenticated,
        (status = 403, description = NOT_OPERATOR, body = Problem, content_type = PROBLEM_JSON),
        Internal, PostgresDown,
    ),
)]
async fn warmup(State(state): State<AppState>, _: Operator) -> Result<Response, ApiError> {
    let warmed = state.seat_maps.warmup(state.warmup_window).await?;
    Ok(Json(Warmup {
        warmed,
        window_seconds: state.warmup_window.as_secs(),
    })
    .into_response())
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
}
