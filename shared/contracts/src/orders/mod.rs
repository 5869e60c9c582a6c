//! Events of the `order` aggregate, produced by the orders service.
//!
//! State changes: `PENDING → PAID → CONFIRMED`, `PENDING → CANCELLED`,
//! `PAID → REFUNDED`. Each change commits with exactly one of these events.
//!
//! The types here are the current versions; [`Versioned`] reads every
//! committed version into them (schema evolution with upcasting, see
//! [`crate::versioned`]). Two breaking changes made the versions:
//!
//! | version | change | kept in |
//! |---|---|---|
//! | `OrderCreated`, `OrderPaid`, `OrderConfirmed` v2 | seats lost the customer's `hold_token` (a credential in a log several services read) | [`v1`] |
//! | `OrderCreated`, `OrderPaid`, `OrderConfirmed` v3; `OrderCancelled`, `OrderRefunded` v2 | the concert's field renamed from `event_id` to `concert_id` (`event_id` also names the message in the envelope) | [`v2`], [`v1`] |

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;
use crate::versioned::{DecodeError, Versioned, parse};

pub mod v1;
pub mod v2;

/// One seat of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderSeat {
    /// The seat's label within its concert, e.g. `A-12`.
    pub seat_id: String,
    /// The hold's fencing token, as inventory issued it. Inventory sells
    /// the seat only if this is the token of the seat's latest hold; an
    /// order without one can only buy a seat that was never held. Optional
    /// so that events written before fencing still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<i64>,
}

/// A customer created an order for seats they hold. Status `PENDING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCreated {
    /// The order.
    pub order_id: Uuid,
    /// The concert the seats belong to.
    pub concert_id: Uuid,
    /// Where confirmations go.
    pub customer_email: String,
    /// The seats, in the order the customer listed them.
    pub seats: Vec<OrderSeat>,
}

impl Event for OrderCreated {
    const EVENT_TYPE: &'static str = "OrderCreated";
    const SCHEMA_VERSION: u32 = 3;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_created";
}

impl Versioned for OrderCreated {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            3 => parse(data),
            2 => parse::<v2::OrderCreated>(data).map(Self::from),
            1 => parse::<v1::OrderCreated>(data)
                .map(v2::OrderCreated::from)
                .map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

/// The customer paid. Status `PAID`: inventory now confirms the seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPaid {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub concert_id: Uuid,
    /// Where confirmations go.
    pub customer_email: String,
    /// The seats paid for.
    pub seats: Vec<OrderSeat>,
    /// When the payment was accepted.
    pub paid_at: DateTime<Utc>,
}

impl Event for OrderPaid {
    const EVENT_TYPE: &'static str = "OrderPaid";
    const SCHEMA_VERSION: u32 = 3;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_paid";
}

impl Versioned for OrderPaid {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            3 => parse(data),
            2 => parse::<v2::OrderPaid>(data).map(Self::from),
            1 => parse::<v1::OrderPaid>(data)
                .map(v2::OrderPaid::from)
                .map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

/// The customer cancelled before paying. Status `CANCELLED`: holds may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub concert_id: Uuid,
    /// When it was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

impl Event for OrderCancelled {
    const EVENT_TYPE: &'static str = "OrderCancelled";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_cancelled";
}

impl Versioned for OrderCancelled {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            2 => parse(data),
            1 => parse::<v1::OrderCancelled>(data).map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

/// Inventory sold every seat of the paid order to it. Status `CONFIRMED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub concert_id: Uuid,
    /// Where the confirmation goes.
    pub customer_email: String,
    /// The seats, now sold.
    pub seats: Vec<OrderSeat>,
    /// What the seats cost, in cents (from inventory's confirmation).
    pub amount_cents: i64,
    /// When it was confirmed.
    pub confirmed_at: DateTime<Utc>,
}

impl Event for OrderConfirmed {
    const EVENT_TYPE: &'static str = "OrderConfirmed";
    const SCHEMA_VERSION: u32 = 3;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_confirmed";
}

impl Versioned for OrderConfirmed {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            3 => parse(data),
            2 => parse::<v2::OrderConfirmed>(data).map(Self::from),
            1 => parse::<v1::OrderConfirmed>(data)
                .map(v2::OrderConfirmed::from)
                .map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

/// A paid order was refunded, e.g. because its seat could not be
/// allocated. Status `REFUNDED`. This compensates for `OrderPaid`; it does
/// not erase it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRefunded {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub concert_id: Uuid,
    /// Where the refund notice goes.
    pub customer_email: String,
    /// Why the money went back, for humans.
    pub reason: String,
    /// When it was refunded.
    pub refunded_at: DateTime<Utc>,
}

impl Event for OrderRefunded {
    const EVENT_TYPE: &'static str = "OrderRefunded";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "order";
    const SUBJECT: &'static str = "orders.events.order_refunded";
}

impl Versioned for OrderRefunded {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            2 => parse(data),
            1 => parse::<v1::OrderRefunded>(data).map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

#[cfg(test)]
mod tests;
