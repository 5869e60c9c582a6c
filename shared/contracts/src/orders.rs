//! Events of the `order` aggregate, produced by the orders service.
//!
//! State changes: `PENDING → PAID → CONFIRMED`, `PENDING → CANCELLED`,
//! `PAID → REFUNDED`. Each change commits with exactly one of these events.
//!
//! `OrderCreated`, `OrderPaid` and `OrderConfirmed` are at version 2: their
//! seats no longer carry the customer's `hold_token` (identity made it
//! unnecessary downstream, and a hold token in a log that several services
//! read was a credential in too many places). Removing a required field is
//! breaking, so v1 stays committed ([`v1`]) and consumers read both: a v1
//! payload decodes as v2, since v2 ignores the extra field. A v1 event is
//! the v2 struct with v1's seat, so the two cannot drift apart. Both
//! versions implement [`Event`], so name the constants with the alias in
//! angle brackets, `<OrderPaid>::EVENT_TYPE`: a bare `OrderPaid::EVENT_TYPE`
//! leaves the compiler to pick the seat, and it will not.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

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

// `OrderCreated`, `OrderPaid` and `OrderConfirmed` are aliases of structs
// generic over the seat, so that `v1` can be the same structs with v1's
// seat. (A `//` comment: doc comments are part of the committed schemas.)

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

/// Version 1 of the events whose seats carried `hold_token`: kept so that
/// their committed schemas still have a type, and so that the test below
/// can prove that a v1 payload reads as v2. Nothing produces them any more.
pub mod v1 {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    use crate::Event;

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
    pub type OrderCreated = super::OrderCreatedWith<OrderSeat>;
    /// `OrderPaid` v1: the v2 struct with v1's seat.
    pub type OrderPaid = super::OrderPaidWith<OrderSeat>;
    /// `OrderConfirmed` v1: the v2 struct with v1's seat.
    pub type OrderConfirmed = super::OrderConfirmedWith<OrderSeat>;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_payload_reads_as_v2_without_its_hold_tokens() {
        let v1 = v1::OrderPaid {
            order_id: Uuid::new_v4(),
            event_id: Uuid::new_v4(),
            customer_email: "ada@example.com".into(),
            seats: vec![v1::OrderSeat {
                seat_id: "A-1".into(),
                hold_token: Uuid::new_v4(),
                fencing_token: Some(7),
            }],
            paid_at: Utc::now(),
        };
        let v2: OrderPaid = serde_json::from_value(serde_json::to_value(&v1).unwrap()).unwrap();
        assert_eq!(v2.order_id, v1.order_id);
        assert_eq!(
            v2.seats,
            [OrderSeat {
                seat_id: "A-1".into(),
                fencing_token: Some(7),
            }]
        );
        let back = serde_json::to_value(&v2).unwrap();
        assert!(back["seats"][0].get("hold_token").is_none());
    }
}
