//! The responses that several operations share, declared once, so that the
//! same error reads the same everywhere: description texts, and types that
//! stand for whole responses in `#[utoipa::path(responses(...))]`.
//!
//! The types are never built: a handler answers with an `ApiError` (or a
//! layer answers for it) and the types only describe what comes back.
//! Between them they cover what every API operation may answer besides its
//! own outcomes: 401 without a valid token ([`Unauthenticated`]), 413/415
//! for a body refused unread ([`BodyRefused`]), 429 from the rate limit
//! ([`RateLimited`]), 500 ([`Internal`]), and 503 when the instance sheds
//! load, runs out of time or misses a dependency ([`PostgresDown`],
//! [`RedisDown`]). An operation whose answer means more than these (a hold's
//! 429 is also the hold limit; the seat map's 503 is also too many loads
//! from Postgres) writes its own.

#![expect(
    dead_code,
    reason = "the response types are never built: they exist for their `IntoResponses`"
)]

use httpkit::Problem;
use utoipa::IntoResponses;

pub(crate) use httpkit::auth::{NOT_CUSTOMER, NOT_OPERATOR};

/// Content type of every error.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// 400 for a malformed `{id}`.
pub(crate) const BAD_EVENT_ID: &str = "`/problems/invalid-field` naming `id`: not a UUID.";

/// 400 for a body that is not JSON.
pub(crate) const MALFORMED_JSON: &str = "`/problems/malformed-json`: the body is not JSON.";

/// The 401 of every route that needs a token.
#[derive(IntoResponses)]
#[response(status = 401, description = httpkit::auth::UNAUTHENTICATED, content_type = PROBLEM_JSON,
    headers(("WWW-Authenticate" = String,
        description = "`Bearer`, with the reason when a token was refused.")))]
pub(crate) struct Unauthenticated(Problem);

/// A JSON body refused before the handler reads it (`httpkit::StrictJson`
/// and the body limit).
#[derive(IntoResponses)]
pub(crate) enum BodyRefused {
    #[response(status = 413, content_type = PROBLEM_JSON,
        description = "`/problems/body-unreadable`: the body is too large.")]
    TooLarge(Problem),
    #[response(status = 415, content_type = PROBLEM_JSON,
        description = "`/problems/unsupported-media-type`: send `Content-Type: application/json`.")]
    NotJson(Problem),
}

/// The 429 of the per-client rate limit (`httpkit::admission`).
#[derive(IntoResponses)]
#[response(status = 429, content_type = PROBLEM_JSON,
    description = "`/problems/rate-limited`: this client is over its request rate; see \
        `Retry-After`.",
    headers(("Retry-After" = u64, description = "Seconds until this client may send again.")))]
pub(crate) struct RateLimited(Problem);

/// The 500 of every route.
#[derive(IntoResponses)]
#[response(status = 500, content_type = PROBLEM_JSON,
    description = "`/problems/internal`: logged with the `correlation_id` the problem carries \
        (also the trace id); nothing else about the cause is sent.")]
pub(crate) struct Internal(Problem);

/// The 503 of an operation that needs Postgres: it is down, the instance
/// sheds load (`httpkit::admission`) or the request ran out of time
/// (`httpkit::layers`).
#[derive(IntoResponses)]
#[response(status = 503, content_type = PROBLEM_JSON,
    description = "`/problems/dependency-unavailable` naming `postgres`, \
        `/problems/overloaded` or `/problems/timeout`.",
    headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed.")))]
pub(crate) struct PostgresDown(Problem);

/// The 503 of an operation that needs Redis (holds), as [`PostgresDown`].
#[derive(IntoResponses)]
#[response(status = 503, content_type = PROBLEM_JSON,
    description = "`/problems/dependency-unavailable` naming `redis`, \
        `/problems/overloaded` or `/problems/timeout`.",
    headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed.")))]
pub(crate) struct RedisDown(Problem);
