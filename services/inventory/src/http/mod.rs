//! The HTTP API of the inventory service.
//!
//! | route | what |
//! |---|---|
//! | `GET /events` | the catalog (local cache, broadcast invalidation) |
//! | `POST /events` | create a concert with its seats (operator; idempotent by id) |
//! | `GET /events/{id}` | one concert |
//! | `PATCH /events/{id}` | change a concert's details (operator; bumps its version) |
//! | `GET /events/{id}/seats` | the seat map (Redis cache-aside; `ETag`, 304) |
//! | `POST /events/{id}/seats/{seat}/hold` | customer: hold a seat: 201 `{hold_token, fencing_token, expires_at}` |
//! | `DELETE /events/{id}/seats/{seat}/hold` | customer: release their hold (header `Hold-Token`) |
//! | `POST /holds/verify` | orders, with the customer's token, checks their holds and gets the fencing tokens |
//! | `POST /ops/warmup` | operator: preload the seat maps of concerts whose sale opens soon |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (Postgres, NATS; Redis degrades) |
//! | `GET /metrics` | cache, admission and consumer counters |
//! | `GET /openapi.json`, `GET /docs` | this API's `OpenAPI` document and a page that renders it ([`ApiDoc`]) |
//!
//! Who may call what comes from the bearer token alone (`httpkit::auth`):
//! customers are the token's `sub`, operators carry `role: operator`; the
//! catalog and seat maps are anonymous.
//!
//! The API routes sit behind admission control (per-client rate limit,
//! global concurrency limit with load shedding: `httpkit::admission`);
//! health, metrics, ops and docs routes do not, so an overloaded instance
//! still reports its state and describes its API.

mod docs;
mod error;
mod handlers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use httpkit::admission::{AdmissionLimits, AdmissionMetrics};
use httpkit::auth::{self, Verifier};
use httpkit::layers::HttpLimits;
use sqlx::PgPool;
use utoipa::OpenApi as _;

pub use docs::ApiDoc;
pub use error::ApiError;

use crate::catalog::Catalog;
use crate::holds::Holds;
use crate::redis_link::RedisLink;
use crate::seatmap::SeatMaps;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The inventory database.
    pub db: PgPool,
    /// Redis, for readiness.
    pub redis: RedisLink,
    /// NATS, for readiness and consumer lag.
    pub nats: async_nats::Client,
    /// The catalog.
    pub catalog: Catalog,
    /// Seat maps.
    pub seat_maps: SeatMaps,
    /// Holds.
    pub holds: Holds,
    /// Window of `POST /ops/warmup`.
    pub warmup_window: Duration,
    /// The allocation consumer, for `/metrics`.
    pub consumer: Arc<consumer::runtime::ConsumerMetrics>,
    /// Stream and consumer names, for the lag.
    pub topology: messaging::Topology,
    /// Admission rejections, for `/metrics`.
    pub admission: AdmissionMetrics,
}

/// Every route [`router`] mounts, as `(method, path)`. The API tests check
/// that [`ApiDoc`] documents exactly these and that each one answers: add a
/// route here, in the router and (with `#[utoipa::path]`) in [`ApiDoc`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/events"),
    ("POST", "/events"),
    ("GET", "/events/{id}"),
    ("PATCH", "/events/{id}"),
    ("GET", "/events/{id}/seats"),
    ("POST", "/events/{id}/seats/{seat}/hold"),
    ("DELETE", "/events/{id}/seats/{seat}/hold"),
    ("POST", "/holds/verify"),
    ("POST", "/ops/warmup"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// The complete router: bearer tokens verified in front of admission
/// control (so the rate limit keys on the verified customer), admission
/// control on the API, and the standard middleware around everything.
pub fn router(
    state: AppState,
    verifier: Verifier,
    limits: HttpLimits,
    admission: AdmissionLimits,
) -> Router {
    let authenticate = axum::middleware::from_fn_with_state(verifier, auth::authenticate);
    let api = Router::new()
        .route(
            "/events",
            get(handlers::list_events).post(handlers::create_event),
        )
        .route(
            "/events/{id}",
            get(handlers::get_event).patch(handlers::update_event),
        )
        .route("/events/{id}/seats", get(handlers::seat_map))
        .route(
            "/events/{id}/seats/{seat}/hold",
            post(handlers::hold).delete(handlers::release),
        )
        .route("/holds/verify", post(handlers::verify))
        .with_state(state.clone());
    let api =
        httpkit::admission::admission(api, admission, &state.admission).layer(authenticate.clone());
    let ops = Router::new()
        .route("/ops/warmup", post(handlers::warmup))
        .route_layer(authenticate)
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .with_state(state)
        .route("/healthz", get(httpkit::health::healthz))
        .merge(httpkit::docs::routes(&ApiDoc::openapi()));
    httpkit::layers::standard(api.merge(ops), limits)
}
