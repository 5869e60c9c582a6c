//! Order routes: create, read, pay, cancel.
//!
//! Every route is a customer's ([`Customer`]: the verified token's `sub`).
//! An order belongs to the customer who created it; for anyone else it
//! does not exist (404, the same as an unknown id, so ids reveal nothing),
//! and idempotency keys are the customer's own.
//!
//! Each command runs inside [`idempotency::execute`], which owns the
//! transaction: the order change, its outbox event and the stored response
//! commit together (transactional outbox + idempotency key).
//!
//! Creating an order also verifies the customer's holds with inventory
//! (see [`crate::inventory_client`]) and stores each hold's fencing token
//! on its line and in `OrderCreated`. When inventory is down, no order can
//! be created (503 naming `inventory`, with `Retry-After`, nothing
//! written); existing orders can still be paid, because paying does not
//! re-verify: the fencing token decides at the sale.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use httpkit::StrictJson;
use httpkit::auth::Customer;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::docs::{
    BAD_ORDER_ID, CreateOrderParams, CustomerRoute, ORDER_NOT_FOUND, OrderCommand,
    OrderCommandParams, OrderIdParams, PROBLEM_JSON,
};
use super::error::SaleProblem;
use super::{ApiError, AppState};
use crate::domain::{Command, CreateOrder, Order};
use crate::idempotency::{self, Fingerprint, IdempotencyKey, StoredResponse};
use crate::store::{self, Owner, Refusal};

type SharedState = State<Arc<AppState>>;

/// The order routes, each documented by its `#[utoipa::path]` as it is
/// mounted.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create_order))
        .routes(routes!(get_order))
        .routes(routes!(pay_order))
        .routes(routes!(cancel_order))
}

/// The `{id}` path segment, parsed as a UUID (400 naming `id` otherwise).
struct OrderId(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = |reason: String| ApiError::InvalidPath {
            field: "id",
            reason,
        };
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| invalid(e.body_text()))?;
        Uuid::parse_str(&raw)
            .map(OrderId)
            .map_err(|e| invalid(format!("{raw:?} is not a UUID: {e}")))
    }
}

/// The `Idempotency-Key` header, validated (400 naming it otherwise).
impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(idempotency::HEADER)
            .ok_or(ApiError::MissingIdempotencyKey)?;
        let raw = value
            .to_str()
            .map_err(|_| ApiError::InvalidIdempotencyKey("must be visible ASCII".into()))?;
        Self::parse(raw).map_err(ApiError::InvalidIdempotencyKey)
    }
}

/// A stored (or fresh) response, marked `Idempotent-Replayed: true` when it
/// comes from storage.
impl IntoResponse for StoredResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.replayed {
            response.headers_mut().insert(
                idempotency::REPLAYED_HEADER,
                HeaderValue::from_static("true"),
            );
        }
        response
    }
}

/// `POST /orders`: verify the holds with inventory, then a `PENDING` order
/// with their fencing tokens and its `OrderCreated` event.
///
/// The order of the steps is the point:
/// 1. [`idempotency::lookup`]: a retry of a create that committed gets its
///    stored 201 here, without asking inventory again, so a client whose
///    response got lost can recover it even while inventory is down; a key
///    reused for another body is refused here too.
/// 2. Verify the holds, outside any transaction: a slow inventory then
///    costs this request its wait (bounded by `INVENTORY_TIMEOUT`), not a
///    pooled connection and a row lock that payments also need.
/// 3. [`idempotency::execute`]: claim the key, write order, lines and
///    event, store the response, commit.
///
/// A failed verification (409 invalid hold, 503 inventory unavailable)
/// stores nothing, the key included. That is deliberate: storing a 503
/// would replay the outage after inventory recovered, and the client's
/// retry with the same key could never succeed. A 409 needs a new hold, so
/// a new body and key, anyway; not storing it keeps one rule for every
/// error (see [`crate::idempotency`]).
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    summary = "Create an order for held seats",
    description = "Asks inventory whether each hold is live, then creates a `PENDING` order that \
        stores each hold's fencing token, and its `OrderCreated` event, in one transaction. \
        Hold the seats in inventory first. A failed request writes nothing, so it can be \
        retried with the same `Idempotency-Key`; a retry of a request that succeeded gets the \
        stored 201 again, without asking inventory.",
    params(CreateOrderParams),
    security(("bearer" = [])),
    request_body = CreateOrder,
    responses(
        CustomerRoute,
        (status = 201, description = "The order, `PENDING`.", body = Order,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same key."))),
        (status = 400, description = "`/problems/idempotency-key-missing`, \
            `/problems/invalid-field` (field `Idempotency-Key`) or `/problems/malformed-json`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`/problems/hold-not-valid` (field `seats[i].hold_token`): \
            inventory has no live hold with that token (it lapsed, was released, or the seat is \
            someone else's); hold the seat again and order with the new token and a new key. \
            Or `/problems/sale-not-open` / `/problems/sale-closed`: outside the concert's sale \
            window (inventory says which, naming the window). \
            Or `/problems/idempotency-key-in-progress`, see `Retry-After`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
        (status = 413, description = "`/problems/body-unreadable`: the body is too large.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`/problems/unsupported-media-type`: send \
            `Content-Type: application/json`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`/problems/invalid-field` naming the field, e.g. \
            `customer_email` or `seats[1].seat_id`; or `/problems/idempotency-key-reused`: the key \
            came with a different request before.",
            body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `inventory` (the \
            holds could not be verified; nothing was written) or `postgres`, or \
            `/problems/timeout`. Retry with the same `Idempotency-Key` after `Retry-After`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
#[tracing::instrument(
    name = "orders.create",
    skip_all,
    fields(order_id = tracing::field::Empty, event_id = %request.event_id)
)]
async fn create_order(
    State(state): SharedState,
    customer: Customer,
    key: IdempotencyKey,
    StrictJson(request): StrictJson<CreateOrder>,
) -> Result<StoredResponse, ApiError> {
    let fingerprint = Fingerprint::of("POST", "/orders", &request);
    let replay = idempotency::lookup(&state.db, customer.id, &key, &fingerprint).await?;
    let response = if let Some(replay) = replay {
        replay
    } else {
        verify_and_insert(&state, &customer, &key, &fingerprint, &request).await?
    };
    if let Some(id) = response.body.get("id").and_then(|v| v.as_str()) {
        tracing::Span::current().record("order_id", id);
    }
    Ok(response)
}

/// Steps 2 and 3 of [`create_order`].
async fn verify_and_insert(
    state: &AppState,
    customer: &Customer,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    request: &CreateOrder,
) -> Result<StoredResponse, ApiError> {
    // Inventory is asked with the customer's own token: it checks that the
    // holds are this customer's, and charges this customer's rate limit.
    let verified = state
        .inventory
        .verify(
            request.event_id,
            request.seats.seats(),
            customer.identity.bearer(),
        )
        .await?;
    idempotency::execute(
        &state.db,
        customer.id,
        key,
        fingerprint,
        state.idempotency_key_ttl,
        async |tx: &mut PgConnection| {
            let order = store::insert(tx, Uuid::now_v7(), customer.id, request, &verified).await?;
            state.outbox.enqueue(tx, &order.created()).await?;
            Ok(StoredResponse::new(StatusCode::CREATED, &order)?)
        },
    )
    .await
}

/// `GET /orders/{id}`.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    summary = "Read an order",
    params(OrderIdParams),
    security(("bearer" = [])),
    responses(
        CustomerRoute,
        (status = 200, description = "The order.", body = Order),
        (status = 400, description = BAD_ORDER_ID, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 404, description = ORDER_NOT_FOUND, body = httpkit::Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, or \
            `/problems/timeout`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
#[tracing::instrument(name = "orders.get", skip_all, fields(order_id = %id.0))]
async fn get_order(
    State(state): SharedState,
    customer: Customer,
    id: OrderId,
) -> Result<axum::Json<Order>, ApiError> {
    let mut conn = state.db.acquire().await?;
    store::find(&mut conn, id.0, Owner::Customer(customer.id))
        .await?
        .map(axum::Json)
        .ok_or(ApiError::OrderNotFound(id.0))
}

/// `POST /orders/{id}/pay`: `PENDING → PAID` and `OrderPaid`.
#[utoipa::path(
    post,
    path = "/orders/{id}/pay",
    tag = "orders",
    summary = "Pay an order",
    description = "`PENDING → PAID`, and `OrderPaid` in the same transaction. Inventory then sells the seats to the holds' fencing tokens and the order becomes `CONFIRMED`, or `REFUNDED` when a seat went to someone else. Paying does not ask inventory, so it works while inventory is down.",
    params(OrderCommandParams),
    security(("bearer" = [])),
    responses(
        CustomerRoute,
        OrderCommand,
        (status = 200, description = "The order, `PAID`.", body = Order,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same key."))),
        (status = 409, description = "`/problems/invalid-transition`: the order is not `PENDING`; \
            `/problems/sale-closed`: the concert has started, so the order can no longer be paid \
            (it can still be cancelled); or `/problems/idempotency-key-in-progress`, see \
            `Retry-After`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
#[tracing::instrument(name = "orders.pay", skip_all, fields(order_id = %id.0))]
async fn pay_order(
    State(state): SharedState,
    customer: Customer,
    key: IdempotencyKey,
    id: OrderId,
) -> Result<StoredResponse, ApiError> {
    change_status(&state, customer.id, &key, id.0, Command::Pay).await
}

/// `POST /orders/{id}/cancel`: `PENDING → CANCELLED` and `OrderCancelled`.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    summary = "Cancel an order",
    description = "`PENDING → CANCELLED`, and `OrderCancelled` in the same transaction.",
    params(OrderCommandParams),
    security(("bearer" = [])),
    responses(
        CustomerRoute,
        OrderCommand,
        (status = 200, description = "The order, `CANCELLED`.", body = Order,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same key."))),
        (status = 409, description = "`/problems/invalid-transition`: the order is not `PENDING`; \
            or `/problems/idempotency-key-in-progress`, see `Retry-After`.",
            body = httpkit::Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
#[tracing::instrument(name = "orders.cancel", skip_all, fields(order_id = %id.0))]
async fn cancel_order(
    State(state): SharedState,
    customer: Customer,
    key: IdempotencyKey,
    id: OrderId,
) -> Result<StoredResponse, ApiError> {
    change_status(&state, customer.id, &key, id.0, Command::Cancel).await
}

/// Pay or cancel, under the request's idempotency key: the order's
/// transition and the event it produces commit with the stored response.
async fn change_status(
    state: &AppState,
    customer: Uuid,
    key: &IdempotencyKey,
    order_id: Uuid,
    command: Command,
) -> Result<StoredResponse, ApiError> {
    let transition = command.transition();
    let path = format!("/orders/{order_id}/{}", transition.verb());
    let fingerprint = Fingerprint::of("POST", &path, &());
    idempotency::execute(
        &state.db,
        customer,
        key,
        &fingerprint,
        state.idempotency_key_ttl,
        async |tx: &mut PgConnection| {
            let owner = Owner::Customer(customer);
            let order = match store::transition(tx, order_id, owner, transition).await? {
                Ok(order) => order,
                Err(Refusal::NotFound) => return Err(ApiError::OrderNotFound(order_id)),
                Err(Refusal::SaleClosed(closed_at)) => {
                    return Err(ApiError::SaleWindow {
                        kind: SaleProblem::Closed,
                        detail: format!(
                            "the sale closed at {} when the concert started: order {order_id} \
                             can no longer be paid (it can still be cancelled)",
                            closed_at.to_rfc3339()
                        ),
                        retry_after: None,
                    });
                }
                Err(Refusal::WrongStatus(status)) => {
                    return Err(ApiError::InvalidTransition {
                        order_id,
                        status,
                        transition,
                    });
                }
            };
            order.record(command, state.outbox, tx).await?;
            Ok(StoredResponse::new(StatusCode::OK, &order)?)
        },
    )
    .await
}
