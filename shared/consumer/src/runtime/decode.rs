//! How a handler reads the payload of a [`Delivery`]: as the current
//! version of its type, whichever version its producer wrote (schema
//! evolution with upcasting, see `contracts::versioned`).
//!
//! A handler matches on the event type, then decodes:
//!
//! ```ignore
//! match delivery.event_type() {
//!     OrderPaid::EVENT_TYPE => {
//!         let paid: OrderPaid = delivery.decode()?;
//!         // …
//!     }
//!     _ => Ok(()), // not this consumer's business; the position advances
//! }
//! ```
//!
//! Nothing here looks at `schema_version` by hand: a version the build does
//! not know, or data that does not fit its version, is a
//! [`contracts::DecodeError`], which becomes [`HandlerError::Poison`] with
//! its message (type, version, reason), so the message is dead-lettered at
//! once and can be redriven when a consumer that knows it runs.

use contracts::{DecodeError, Versioned};

use super::{Delivery, HandlerError};

impl Delivery {
    /// The envelope's `event_type`, to match on before decoding.
    pub fn event_type(&self) -> &str {
        &self.envelope.event_type
    }

    /// The payload as the current version of `T`, upcast from the version
    /// it was written in. An envelope of another type than `T`, an unknown
    /// version or invalid data is poison.
    pub fn decode<T: Versioned>(&self) -> Result<T, HandlerError> {
        Ok(self.envelope.decode()?)
    }
}

/// A payload that cannot be read will not become readable by retrying.
impl From<DecodeError> for HandlerError {
    fn from(e: DecodeError) -> Self {
        Self::Poison(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use contracts::inventory::SeatsConfirmed;
    use contracts::orders::OrderPaid;
    use contracts::{Envelope, MessageId};
    use serde_json::{Value, json};
    use uuid::Uuid;

    use super::*;

    fn delivery(event_type: &str, schema_version: u32, data: Value) -> Delivery {
        Delivery {
            envelope: Envelope {
                event_id: MessageId::new(),
                event_type: event_type.into(),
                schema_version,
                aggregate_type: "order".into(),
                aggregate_id: Uuid::from_u128(1),
                aggregate_version: 2,
                occurred_at: chrono::Utc::now(),
                producer: "orders".into(),
                data,
            },
            subject: "orders.events.order_paid".into(),
            stream_sequence: 1,
            delivered: 1,
        }
    }

    /// `OrderPaid` as a v1 producer wrote it: the concert in `event_id`, a
    /// hold token on each seat.
    fn v1_payment() -> Value {
        json!({
            "order_id": Uuid::from_u128(1),
            "event_id": Uuid::from_u128(2),
            "customer_email": "ada@example.com",
            "seats": [{ "seat_id": "A-1", "hold_token": Uuid::from_u128(3) }],
            "paid_at": "2026-03-01T19:30:00Z",
        })
    }

    fn poison_reason(result: Result<impl std::fmt::Debug, HandlerError>) -> String {
        match result {
            Err(HandlerError::Poison(reason)) => reason,
            other => panic!("expected poison, got {other:?}"),
        }
    }

    #[test]
    fn an_old_version_decodes_as_the_current_one() {
        let paid: OrderPaid = delivery("OrderPaid", 1, v1_payment()).decode().unwrap();

        assert_eq!(paid.concert_id, Uuid::from_u128(2));
        assert_eq!(paid.seats[0].seat_id, "A-1");
    }

    #[test]
    fn an_unknown_version_is_poison_naming_the_type_and_the_version() {
        let reason = poison_reason(delivery("OrderPaid", 9, v1_payment()).decode::<OrderPaid>());

        assert_eq!(
            reason,
            "unknown schema_version 9 of OrderPaid: this build reads v1 to v3"
        );
    }

    #[test]
    fn invalid_data_is_poison_saying_what_is_wrong() {
        let reason = poison_reason(delivery("OrderPaid", 2, json!({})).decode::<OrderPaid>());

        assert!(
            reason.starts_with("invalid OrderPaid v2 data: missing field"),
            "{reason}"
        );
    }

    #[test]
    fn decoding_as_another_type_is_poison() {
        let reason =
            poison_reason(delivery("OrderPaid", 1, v1_payment()).decode::<SeatsConfirmed>());

        assert_eq!(reason, "expected event type SeatsConfirmed, got OrderPaid");
    }
}
