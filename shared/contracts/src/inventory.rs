//! Events of inventory's `seat_allocation` aggregate: the answer to an
//! `OrderPaid`, one per order (version 1), keyed by the order id.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// Every seat of a paid order is now sold to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeatsConfirmed {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// The seats sold.
    pub seat_ids: Vec<String>,
    /// What the seats cost together, in cents: inventory owns the prices.
    pub amount_cents: i64,
}

impl Event for SeatsConfirmed {
    const EVENT_TYPE: &'static str = "SeatsConfirmed";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "seat_allocation";
    const SUBJECT: &'static str = "inventory.events.seats_confirmed";
}

/// A paid order could not get its seats (one was sold to someone else, or
/// does not exist); none of its seats was sold to it. Orders compensates
/// with a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeatAllocationRejected {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// The seats that were not available.
    pub unavailable_seat_ids: Vec<String>,
    /// Why, for humans.
    pub reason: String,
}

impl Event for SeatAllocationRejected {
    const EVENT_TYPE: &'static str = "SeatAllocationRejected";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "seat_allocation";
    const SUBJECT: &'static str = "inventory.events.seat_allocation_rejected";
}
