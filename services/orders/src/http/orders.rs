//! Order routes: create, read, pay, cancel.
//!
//! Each command runs inside [`idempotency::execute`], which owns the
//! transaction: the order change, its outbox event and the stored response
//! commit together (transactional outbox + idempotency key).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::routing::{get, post};
use contracts::Envelope;
use contracts::orders::{OrderCancelled, OrderCreated, OrderPaid};
use http::StatusCode;
use http::request::Parts;
use httpkit::StrictJson;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ApiError, AppState, SharedState};
use crate::domain::{CreateOrder, Order, Transition};
use crate::idempotency::{self, Fingerprint, IdempotencyKey, StoredResponse};
use crate::store::{self, Refusal};

/// `producer` in every envelope this service writes.
const PRODUCER: &str = "orders";

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/pay", post(pay_order))
        .route("/orders/{id}/cancel", post(cancel_order))
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

/// `POST /orders`: a `PENDING` order and its `OrderCreated` event.
#[tracing::instrument(
    name = "orders.create",
    skip_all,
    fields(order_id = tracing::field::Empty, event_id = %request.event_id)
)]
async fn create_order(
    State(state): SharedState,
    key: IdempotencyKey,
    StrictJson(request): StrictJson<CreateOrder>,
) -> Result<StoredResponse, ApiError> {
    let fingerprint = Fingerprint::of("POST", "/orders", &request);
    let response = idempotency::execute(
        &state.db,
        &key,
        &fingerprint,
        state.idempotency_key_ttl,
        async |tx: &mut PgConnection| {
            let order = store::insert(tx, Uuid::now_v7(), &request).await?;
            let created = OrderCreated {
                order_id: order.id,
                event_id: order.event_id,
                customer_email: order.customer_email.clone(),
                seats: order.event_seats(),
            };
            let envelope =
                Envelope::new(PRODUCER, order.id, order.version, order.created_at, created);
            state.outbox.enqueue(tx, &envelope).await?;
            StoredResponse::new(StatusCode::CREATED, &order)
        },
    )
    .await?;
    if let Some(id) = response.body.get("id").and_then(|v| v.as_str()) {
        tracing::Span::current().record("order_id", id);
    }
    Ok(response)
}

/// `GET /orders/{id}`.
#[tracing::instrument(name = "orders.get", skip_all, fields(order_id = %id.0))]
async fn get_order(State(state): SharedState, id: OrderId) -> Result<axum::Json<Order>, ApiError> {
    let mut conn = state.db.acquire().await?;
    store::find(&mut conn, id.0)
        .await?
        .map(axum::Json)
        .ok_or(ApiError::OrderNotFound(id.0))
}

/// `POST /orders/{id}/pay`: `PENDING → PAID` and `OrderPaid`.
#[tracing::instrument(name = "orders.pay", skip_all, fields(order_id = %id.0))]
async fn pay_order(
    State(state): SharedState,
    key: IdempotencyKey,
    id: OrderId,
) -> Result<StoredResponse, ApiError> {
    change_status(&state, &key, id.0, Transition::Pay).await
}

/// `POST /orders/{id}/cancel`: `PENDING → CANCELLED` and `OrderCancelled`.
#[tracing::instrument(name = "orders.cancel", skip_all, fields(order_id = %id.0))]
async fn cancel_order(
    State(state): SharedState,
    key: IdempotencyKey,
    id: OrderId,
) -> Result<StoredResponse, ApiError> {
    change_status(&state, &key, id.0, Transition::Cancel).await
}

async fn change_status(
    state: &AppState,
    key: &IdempotencyKey,
    order_id: Uuid,
    transition: Transition,
) -> Result<StoredResponse, ApiError> {
    let path = format!("/orders/{order_id}/{}", transition.verb());
    let fingerprint = Fingerprint::of("POST", &path, &());
    idempotency::execute(
        &state.db,
        key,
        &fingerprint,
        state.idempotency_key_ttl,
        async |tx: &mut PgConnection| {
            let order = match store::transition(tx, order_id, transition).await? {
                Ok(order) => order,
                Err(Refusal::NotFound) => return Err(ApiError::OrderNotFound(order_id)),
                Err(Refusal::WrongStatus(status)) => {
                    return Err(ApiError::InvalidTransition {
                        order_id,
                        status,
                        transition,
                    });
                }
            };
            let at = order.updated_at;
            match transition {
                Transition::Pay => {
                    let paid = OrderPaid {
                        order_id,
                        event_id: order.event_id,
                        customer_email: order.customer_email.clone(),
                        seats: order.event_seats(),
                        paid_at: at,
                    };
                    state
                        .outbox
                        .enqueue(
                            tx,
                            &Envelope::new(PRODUCER, order_id, order.version, at, paid),
                        )
                        .await?;
                }
                // No route asks for these; inventory's answers do (`reactions`).
                Transition::Confirm | Transition::Refund => {
                    return Err(ApiError::Internal(
                        format!("{} is not a client command", transition.verb()).into(),
                    ));
                }
                Transition::Cancel => {
                    let cancelled = OrderCancelled {
                        order_id,
                        event_id: order.event_id,
                        cancelled_at: at,
                    };
                    state
                        .outbox
                        .enqueue(
                            tx,
                            &Envelope::new(PRODUCER, order_id, order.version, at, cancelled),
                        )
                        .await?;
                }
            }
            StoredResponse::new(StatusCode::OK, &order)
        },
    )
    .await
}
