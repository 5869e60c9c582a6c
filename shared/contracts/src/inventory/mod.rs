//! Events of inventory's `seat_allocation` aggregate: the answer to an
//! `OrderPaid`, one per order (version 1), keyed by the order id.
//!
//! The types here are at version 2, which renamed the concert's field from
//! `event_id` to `concert_id` (`event_id` also names the message in the
//! envelope); [`Versioned`] reads v1, kept in [`v1`], as v2.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;
use crate::versioned::{DecodeError, Versioned, parse};

pub mod v1;

/// Every seat of a paid order is now sold to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeatsConfirmed {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub concert_id: Uuid,
    /// The seats sold.
    pub seat_ids: Vec<String>,
    /// What the seats cost together, in cents: inventory owns the prices.
    pub amount_cents: i64,
}

impl Event for SeatsConfirmed {
    const EVENT_TYPE: &'static str = "SeatsConfirmed";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "seat_allocation";
    const SUBJECT: &'static str = "inventory.events.seats_confirmed";
}

impl Versioned for SeatsConfirmed {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            2 => parse(data),
            1 => parse::<v1::SeatsConfirmed>(data).map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

/// A paid order could not get its seats (one was sold to someone else, or
/// does not exist); none of its seats was sold to it. Orders compensates
/// with a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeatAllocationRejected {
    /// The order.
    pub order_id: Uuid,
    /// The concert.
    pub concert_id: Uuid,
    /// The seats that were not available.
    pub unavailable_seat_ids: Vec<String>,
    /// Why, for humans.
    pub reason: String,
}

impl Event for SeatAllocationRejected {
    const EVENT_TYPE: &'static str = "SeatAllocationRejected";
    const SCHEMA_VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "seat_allocation";
    const SUBJECT: &'static str = "inventory.events.seat_allocation_rejected";
}

impl Versioned for SeatAllocationRejected {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            2 => parse(data),
            1 => parse::<v1::SeatAllocationRejected>(data).map(Self::from),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_v1_confirmation_and_rejection_read_as_v2_with_the_concert_in_concert_id() {
        let (order, concert) = (Uuid::from_u128(1), Uuid::from_u128(2));

        let confirmed = SeatsConfirmed::from_version(
            1,
            json!({ "order_id": order, "event_id": concert, "seat_ids": ["A-1"], "amount_cents": 4500 }),
        )
        .unwrap();
        let rejected = SeatAllocationRejected::from_version(
            1,
            json!({ "order_id": order, "event_id": concert, "unavailable_seat_ids": ["A-1"],
                    "reason": "sold" }),
        )
        .unwrap();

        assert_eq!(
            confirmed,
            SeatsConfirmed {
                order_id: order,
                concert_id: concert,
                seat_ids: vec!["A-1".into()],
                amount_cents: 4500,
            }
        );
        assert_eq!(rejected.concert_id, concert);
        assert_eq!(rejected.unavailable_seat_ids, ["A-1"]);
    }

    #[test]
    fn a_version_from_the_future_is_refused_by_name() {
        let error = SeatsConfirmed::from_version(3, json!({})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown schema_version 3 of SeatsConfirmed: this build reads v1 to v2"
        );
    }
}
