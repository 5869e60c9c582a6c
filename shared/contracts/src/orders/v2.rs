//! Version 2 of `OrderCreated`, `OrderPaid` and `OrderConfirmed`: the
//! concert still in `event_id`, and seats without the customer's
//! `hold_token`. Kept so their committed schemas still have a type and old
//! events still read; nothing produces them any more.
//!
//! The structs are generic over the seat, so that [`super::v1`] is these
//! same structs with v1's seat: the two versions cannot drift apart. Both
//! versions implement [`Event`], so name their constants with the alias in
//! angle brackets, `<v2::OrderPaid>::EVENT_TYPE`.
//!
//! Upcasters to v3 (the current version) are the `From` impls below: the
//! concert's field is renamed `concert_id`, nothing else changes.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::OrderSeat;
use crate::Event;

// The seat has not changed since v2, so v2 and the current version share
// it; a breaking change to it would first move a copy of it here.

// `//` comments only in this file: doc comments on these structs and
// fields are part of the committed v1 and v2 schemas.

/// `OrderCreated` v2.
pub type OrderCreated = OrderCreatedWith<OrderSeat>;
/// `OrderPaid` v2.
pub type OrderPaid = OrderPaidWith<OrderSeat>;
/// `OrderConfirmed` v2.
pub type OrderConfirmed = OrderConfirmedWith<OrderSeat>;

/// A customer created an order for seats they hold. Status `PENDING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OrderCreated")]
pub struct OrderCreatedWith<Seat> {
    /// The order.
    pub order_id: Uuid,
    /// The concert (domain event) the seats belong to.
    pub event_id: Uuid,
    /// Where confirmations go.
    pub customer_email: String,
    /// The seats, in the order the customer listed them.
    pub seats: Vec<Seat>,
}

impl Event for OrderCreated {
    const EVENT_TYPE: &'static str = "OrderCreated";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_created";
}

/// The customer paid. Status `PAID`: inventory now confirms the seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OrderPaid")]
pub struct OrderPaidWith<Seat> {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// Where confirmations go.
    pub customer_email: String,
    /// The seats paid for.
    pub seats: Vec<Seat>,
    /// When the payment was accepted.
    pub paid_at: DateTime<Utc>,
}

impl Event for OrderPaid {
    const EVENT_TYPE: &'static str = "OrderPaid";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_paid";
}

/// Inventory sold every seat of the paid order to it. Status `CONFIRMED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OrderConfirmed")]
pub struct OrderConfirmedWith<Seat> {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// Where the confirmation goes.
    pub customer_email: String,
    /// The seats, now sold.
    pub seats: Vec<Seat>,
    /// What the seats cost, in cents (from inventory's confirmation).
    pub amount_cents: i64,
    /// When it was confirmed.
    pub confirmed_at: DateTime<Utc>,
}

impl Event for OrderConfirmed {
    const EVENT_TYPE: &'static str = "OrderConfirmed";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_confirmed";
}

impl From<OrderCreated> for super::OrderCreated {
    fn from(v2: OrderCreated) -> Self {
        Self {
            order_id: v2.order_id,
            concert_id: v2.event_id,
            customer_email: v2.customer_email,
            seats: v2.seats,
        }
    }
}

impl From<OrderPaid> for super::OrderPaid {
    fn from(v2: OrderPaid) -> Self {
        Self {
            order_id: v2.order_id,
            concert_id: v2.event_id,
            customer_email: v2.customer_email,
            seats: v2.seats,
            paid_at: v2.paid_at,
        }
    }
}

impl From<OrderConfirmed> for super::OrderConfirmed {
    fn from(v2: OrderConfirmed) -> Self {
        Self {
            order_id: v2.order_id,
            concert_id: v2.event_id,
            customer_email: v2.customer_email,
            seats: v2.seats,
            amount_cents: v2.amount_cents,
            confirmed_at: v2.confirmed_at,
        }
    }
}
