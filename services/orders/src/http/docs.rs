//! The orders API's `OpenAPI` document, generated from the handlers'
//! `#[utoipa::path]` annotations and the body types' `ToSchema` derives,
//! served at `/openapi.json` and rendered at `/docs` (`httpkit::docs`).
//!
//! The descriptions that several operations share live here, so that the
//! same error reads the same everywhere.

use httpkit::auth::BearerScheme;
use utoipa::OpenApi;

/// The orders API.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "Orders API",
        description = "Create, read, pay and cancel orders for concert seats.\n\n\
            An order is created from seats the customer holds in inventory: orders verifies each \
            hold there and keeps its fencing token, which decides the sale after payment. Each \
            state change and its event commit together (transactional outbox); inventory's \
            answer to a payment then moves the order to `CONFIRMED` or `REFUNDED`.\n\n\
            Every order route needs the customer's bearer token (the customer is its `sub`); \
            an order is visible only to the customer who created it. \
            Every POST needs an `Idempotency-Key` header, scoped to the customer. Every error is \
            `application/problem+json` with a stable `type` to branch on.",
    ),
    paths(
        super::orders::create_order,
        super::orders::get_order,
        super::orders::pay_order,
        super::orders::cancel_order,
        super::readyz,
        super::metrics,
        httpkit::health::healthz,
        httpkit::docs::openapi_json,
        httpkit::docs::docs_page,
    ),
    tags(
        (name = "orders", description = "Orders and their state machine: \
            `PENDING → PAID → CONFIRMED`, `PENDING → CANCELLED`, `PAID → REFUNDED`."),
        (name = "ops", description = "Health and metrics, for orchestrators and operators."),
        (name = "docs", description = "This documentation."),
    ),
)]
pub struct ApiDoc;

pub(super) use httpkit::auth::{NOT_CUSTOMER, UNAUTHENTICATED};

/// Content type of every error.
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

/// The `Idempotency-Key` request header.
pub(super) const IDEMPOTENCY_KEY: &str = "Required on every POST: 1 to 255 visible ASCII \
    characters, typically a fresh UUID per logical request, sent again unchanged on each retry. \
    A retry of a request that succeeded is answered from storage; a failed request stored \
    nothing and runs again. Keys expire after `IDEMPOTENCY_KEY_TTL`.";

/// 400 for a malformed `{id}`.
pub(super) const BAD_ORDER_ID: &str = "`/problems/invalid-field` naming `id`: not a UUID.";

/// 422 for a key used with another request.
pub(super) const KEY_REUSED: &str = "`/problems/idempotency-key-reused`: the key came with a \
    different request before; use a new key.";

/// 500, on every route.
pub(super) const INTERNAL: &str = "`/problems/internal`: logged with the `correlation_id` the \
    problem carries (also the trace id); nothing else about the cause is sent.";
