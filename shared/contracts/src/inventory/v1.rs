//! Version 1 of inventory's events, with the concert in `event_id`. Kept
//! so their committed schemas still have a type and old events still read;
//! nothing produces them any more. Their upcasters to the current v2 rename
//! the field `concert_id`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

// `//` comments only in this file: doc comments on these structs and
// fields are part of the committed v1 schemas.

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

impl From<SeatsConfirmed> for super::SeatsConfirmed {
    fn from(v1: SeatsConfirmed) -> Self {
        Self {
            order_id: v1.order_id,
            concert_id: v1.event_id,
            seat_ids: v1.seat_ids,
            amount_cents: v1.amount_cents,
        }
    }
}

impl From<SeatAllocationRejected> for super::SeatAllocationRejected {
    fn from(v1: SeatAllocationRejected) -> Self {
        Self {
            order_id: v1.order_id,
            concert_id: v1.event_id,
            unavailable_seat_ids: v1.unavailable_seat_ids,
            reason: v1.reason,
        }
    }
}
