//! Version 1 of every order event. Kept so their committed schemas still
//! have a type and old events still read; nothing produces them any more.
//!
//! `OrderCreated`, `OrderPaid` and `OrderConfirmed` v1 are the v2 structs
//! with v1's seat, which carried the customer's `hold_token`; their
//! upcasters to v2 drop it. `OrderCancelled` and `OrderRefunded` v1 go
//! straight to the current v2: the concert's field is renamed
//! `concert_id`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::v2;
use crate::Event;

// `//` comments only in this file: doc comments on these structs and
// fields are part of the committed v1 schemas.

/// One seat of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderSeat {
    /// The seat's label within its concert, e.g. `A-12`.
    pub seat_id: String,
    /// The hold the customer had on the seat when ordering.
    pub hold_token: Uuid,
    /// The hold's fencing token, as inventory issued it. Inventory sells
    /// the seat only if this is the token of the seat's latest hold; an
    /// order without one can only buy a seat that was never held. Optional
    /// so that events written before fencing still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<i64>,
}

/// `OrderCreated` v1: the v2 struct with v1's seat.
pub type OrderCreated = v2::OrderCreatedWith<OrderSeat>;
/// `OrderPaid` v1: the v2 struct with v1's seat.
pub type OrderPaid = v2::OrderPaidWith<OrderSeat>;
/// `OrderConfirmed` v1: the v2 struct with v1's seat.
pub type OrderConfirmed = v2::OrderConfirmedWith<OrderSeat>;

impl Event for OrderCreated {
    const EVENT_TYPE: &'static str = "OrderCreated";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_created";
}

impl Event for OrderPaid {
    const EVENT_TYPE: &'static str = "OrderPaid";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_paid";
}

impl Event for OrderConfirmed {
    const EVENT_TYPE: &'static str = "OrderConfirmed";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_confirmed";
}

/// The customer cancelled before paying. Status `CANCELLED`: holds may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// When it was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

impl Event for OrderCancelled {
    const EVENT_TYPE: &'static str = "OrderCancelled";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_cancelled";
}

/// A paid order was refunded, e.g. because its seat could not be
/// allocated. Status `REFUNDED`. This compensates for `OrderPaid`; it does
/// not erase it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRefunded {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// Where the refund notice goes.
    pub customer_email: String,
    /// Why the money went back, for humans.
    pub reason: String,
    /// When it was refunded.
    pub refunded_at: DateTime<Utc>,
}

impl Event for OrderRefunded {
    const EVENT_TYPE: &'static str = "OrderRefunded";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_refunded";
}

/// The seat without its hold token: identity made the token unnecessary
/// downstream, and a hold token in a log that several services read was a
/// credential in too many places.
impl From<OrderSeat> for super::OrderSeat {
    fn from(v1: OrderSeat) -> Self {
        Self {
            seat_id: v1.seat_id,
            fencing_token: v1.fencing_token,
        }
    }
}

fn seats(v1: Vec<OrderSeat>) -> Vec<super::OrderSeat> {
    v1.into_iter().map(Into::into).collect()
}

impl From<OrderCreated> for v2::OrderCreated {
    fn from(v1: OrderCreated) -> Self {
        Self {
            order_id: v1.order_id,
            event_id: v1.event_id,
            customer_email: v1.customer_email,
            seats: seats(v1.seats),
        }
    }
}

impl From<OrderPaid> for v2::OrderPaid {
    fn from(v1: OrderPaid) -> Self {
        Self {
            order_id: v1.order_id,
            event_id: v1.event_id,
            customer_email: v1.customer_email,
            seats: seats(v1.seats),
            paid_at: v1.paid_at,
        }
    }
}

impl From<OrderConfirmed> for v2::OrderConfirmed {
    fn from(v1: OrderConfirmed) -> Self {
        Self {
            order_id: v1.order_id,
            event_id: v1.event_id,
            customer_email: v1.customer_email,
            seats: seats(v1.seats),
            amount_cents: v1.amount_cents,
            confirmed_at: v1.confirmed_at,
        }
    }
}

impl From<OrderCancelled> for super::OrderCancelled {
    fn from(v1: OrderCancelled) -> Self {
        Self {
            order_id: v1.order_id,
            concert_id: v1.event_id,
            cancelled_at: v1.cancelled_at,
        }
    }
}

impl From<OrderRefunded> for super::OrderRefunded {
    fn from(v1: OrderRefunded) -> Self {
        Self {
            order_id: v1.order_id,
            concert_id: v1.event_id,
            customer_email: v1.customer_email,
            reason: v1.reason,
            refunded_at: v1.refunded_at,
        }
    }
}
