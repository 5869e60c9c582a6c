//! The inventory API: the routes of the three features, merged behind
//! authentication and admission control.
//!
//! | route | what | where |
//! |---|---|---|
//! | `GET /events` | the catalog (local cache, broadcast invalidation) | `catalog/http.rs` |
//! | `POST /events` | create a concert with its seats (operator; idempotent by id) | `catalog/http.rs` |
//! | `GET /events/{id}` | one concert | `catalog/http.rs` |
//! | `PATCH /events/{id}` | change a concert's details (operator; bumps its version) | `catalog/http.rs` |
//! | `GET /events/{id}/seats` | the seat map (Redis cache-aside; `ETag`, 304) | `seat_map/http.rs` |
//! | `POST /events/{id}/seats/{seat}/hold` | customer: hold a seat: 201 `{hold_token, fencing_token, expires_at}` | `holds/http.rs` |
//! | `DELETE /events/{id}/seats/{seat}/hold` | customer: release their hold (header `Hold-Token`) | `holds/http.rs` |
//! | `POST /holds/verify` | orders, with the customer's token, checks their holds and gets the fencing tokens | `holds/http.rs` |
//! | `POST /ops/warmup` | operator: preload the seat maps of concerts whose sale opens soon | `seat_map/http.rs` |
//!
//! `/healthz`, `/readyz` (Postgres and NATS required, Redis only degrades),
//! `/metrics` (RED, seat-map cache, admission, the allocation consumer),
//! `/openapi.json` and `/docs` are the routes every service has
//! (`service::ops`).
//!
//! Who may call what comes from the bearer token alone (`httpkit::auth`):
//! customers are the token's `sub`, operators carry `role: operator`; the
//! catalog and seat maps are anonymous.
//!
//! The feature routes sit behind admission control (per-client rate limit,
//! global concurrency limit with load shedding: `httpkit::admission`);
//! `/ops/warmup` and the operational routes do not, so an overloaded
//! instance can still be warmed, reports its state and describes its API.

mod error;
pub(crate) mod params;
pub(crate) mod problems;

use std::time::Duration;

use httpkit::admission::{AdmissionLimits, AdmissionMetrics};
use httpkit::auth::{self, BearerScheme, Verifier};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub(crate) use error::ApiError;

use crate::catalog::Catalog;
use crate::holds::Holds;
use crate::seat_map::SeatMaps;
use crate::{catalog, holds, seat_map};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) catalog: Catalog,
    pub(crate) seat_maps: SeatMaps,
    pub(crate) holds: Holds,
    /// Concerts whose sale opens within this are warmed by `POST /ops/warmup`.
    pub(crate) warmup_window: Duration,
}

/// The inventory API's `OpenAPI` document: its title, description and
/// tags; the routers add the paths as they mount them ([`api`]).
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
    // Named here as well as by the routes: the shared responses of
    // `problems` refer to it without registering it.
    components(schemas(httpkit::Problem)),
    tags(
        (name = "catalog", description = "Concerts: listed from a local cache, invalidated by \
            broadcast when one changes."),
        (name = "seat map", description = "Seats with their status, cache-aside in Redis."),
        (name = "holds", description = "Seat holds in Redis, fenced by Postgres tokens."),
    ),
)]
struct ApiDoc;

/// The API, documented as it is mounted: bearer tokens verified on every
/// route, in front of admission control on the feature routes (so that the
/// rate limit keys on the verified customer).
pub(crate) fn api(
    state: AppState,
    verifier: Verifier,
    limits: AdmissionLimits,
    admission: &AdmissionMetrics,
) -> OpenApiRouter {
    let authenticate = axum::middleware::from_fn_with_state(verifier, auth::authenticate);
    let features = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(catalog::http::routes())
        .merge(seat_map::http::routes())
        .merge(holds::http::routes());
    let features =
        httpkit::admission::admission(features, limits, admission).layer(authenticate.clone());
    let ops = seat_map::http::ops_routes().route_layer(authenticate);
    features.merge(ops).with_state(state)
}
