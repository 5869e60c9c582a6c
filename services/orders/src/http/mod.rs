//! The HTTP API of the orders service.
//!
//! | route | what |
//! |---|---|
//! | `POST /orders` | verify the holds with inventory, create an order (201, `PENDING`, `OrderCreated`) |
//! | `GET /orders/{id}` | read an order |
//! | `POST /orders/{id}/pay` | `PENDING → PAID`, `OrderPaid` |
//! | `POST /orders/{id}/cancel` | `PENDING → CANCELLED`, `OrderCancelled` |
//!
//! `/healthz`, `/readyz` (Postgres; NATS only degrades), `/metrics`
//! (RED, admission control's refusals, the inventory-reactions consumer's
//! counts and lag), `/openapi.json` and `/docs` are the routes every
//! service has (`service::ops`), outside admission control.
//!
//! Every order route needs the customer's bearer token
//! (`httpkit::auth::Customer`), and an order exists only for the customer
//! who created it. Every POST requires an `Idempotency-Key` header (see
//! [`crate::idempotency`]). Errors are `application/problem+json`
//! ([`ApiError`]).

mod docs;
mod error;
mod orders;

use std::sync::Arc;
use std::time::Duration;

use httpkit::admission::{AdmissionLimits, AdmissionMetrics};
use httpkit::auth::Verifier;
use sqlx::PgPool;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use docs::ApiDoc;
pub use error::ApiError;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// How long idempotency keys replay.
    pub idempotency_key_ttl: Duration,
    /// Writes events into the outbox (and maybe notifies the relay).
    pub outbox: outbox::Writer,
    /// Verifies holds when an order is created.
    pub inventory: crate::inventory_client::InventoryClient,
}

/// The order routes, documented as they are mounted: bearer tokens
/// verified first, then admission control (a per-customer rate limit and
/// an in-flight limit that sheds at once, so a flood neither queues on the
/// connection pool nor reaches inventory), refusals counted in `admission`.
pub fn api(
    state: AppState,
    verifier: Verifier,
    limits: AdmissionLimits,
    admission: &AdmissionMetrics,
) -> OpenApiRouter {
    // The rate limit is per verified customer, so authentication must wrap
    // admission (be added after it) to have named the caller first.
    let routes = OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(orders::routes());
    httpkit::admission::admission(routes, limits, admission)
        .layer(axum::middleware::from_fn_with_state(
            verifier,
            httpkit::auth::authenticate,
        ))
        .with_state(Arc::new(state))
}
