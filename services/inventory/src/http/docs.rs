//! The inventory API's `OpenAPI` document, generated from the handlers'
//! `#[utoipa::path]` annotations and the body types' `ToSchema` derives,
//! served at `/openapi.json` and rendered at `/docs` (`httpkit::docs`).
//!
//! The descriptions that several operations share live here, so that the
//! same error reads the same everywhere.

use httpkit::auth::BearerScheme;
use utoipa::OpenApi;

use super::handlers;

/// The inventory API.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "Inventory API",
        description = "The concert catalog, seat maps and seat holds.\n\n\
            A customer reads the seat map, holds seats (a hold lapses after `HOLD_TTL`) and \
            orders them with the hold tokens through the orders API. The catalog is served from \
            a local cache, seat maps from Redis (cache-aside, `ETag`/304), holds live in Redis \
            and carry fencing tokens from Postgres, which decide who gets a seat.\n\n\
            Holds and verification need a customer's bearer token (the customer is its `sub`); \
            creating or changing a concert and warmup need an operator's (`role: operator`). \
            The catalog and seat maps are anonymous.\n\n\
            The catalog, seat-map and hold routes are behind admission control: a per-client \
            rate limit (client = the verified customer, else the IP address; 429 \
            `/problems/rate-limited`) and load shedding (503 `/problems/overloaded`), both with \
            `Retry-After`. Health, metrics, ops and docs routes are not. Every error is \
            `application/problem+json` with a stable `type` to branch on.",
    ),
    paths(
        handlers::list_events,
        handlers::create_event,
        handlers::get_event,
        handlers::update_event,
        handlers::seat_map,
        handlers::hold,
        handlers::release,
        handlers::verify,
        handlers::warmup,
        handlers::readyz,
        handlers::metrics,
        httpkit::health::healthz,
        httpkit::docs::openapi_json,
        httpkit::docs::docs_page,
    ),
    tags(
        (name = "catalog", description = "Concerts: listed from a local cache, invalidated by \
            broadcast when one changes."),
        (name = "seat map", description = "Seats with their status, cache-aside in Redis."),
        (name = "holds", description = "Seat holds in Redis, fenced by Postgres tokens."),
        (name = "ops", description = "Health, metrics and cache warmup, for orchestrators \
            and operators; outside admission control."),
        (name = "docs", description = "This documentation."),
    ),
)]
pub struct ApiDoc;

/// Content type of every error.
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

pub(super) use httpkit::auth::{NOT_CUSTOMER, NOT_OPERATOR, UNAUTHENTICATED};

/// 429 from the rate limit.
pub(super) const RATE_LIMITED: &str =
    "`/problems/rate-limited`: this client is over its request rate; see `Retry-After`.";

/// 400 for a malformed `{id}`.
pub(super) const BAD_EVENT_ID: &str = "`/problems/invalid-field` naming `id`: not a UUID.";

/// 400 for a body that is not JSON.
pub(super) const MALFORMED_JSON: &str = "`/problems/malformed-json`: the body is not JSON.";

/// 413 for a body over the limit.
pub(super) const TOO_LARGE: &str = "`/problems/body-unreadable`: the body is too large.";

/// 415 for a body that is not declared JSON.
pub(super) const UNSUPPORTED_MEDIA_TYPE: &str =
    "`/problems/unsupported-media-type`: send `Content-Type: application/json`.";

/// 500, on every route.
pub(super) const INTERNAL: &str = "`/problems/internal`: logged with the `correlation_id` the \
    problem carries (also the trace id); nothing else about the cause is sent.";
