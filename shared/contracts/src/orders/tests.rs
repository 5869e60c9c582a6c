//! The upcasters, one step at a time and chained: old payloads, written
//! as their producers wrote them, read as the current version.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::Envelope;

fn paid_at() -> DateTime<Utc> {
    "2026-03-01T19:30:00Z".parse().unwrap()
}

/// One payment as the current version says it.
fn current_payment() -> OrderPaid {
    OrderPaid {
        order_id: Uuid::from_u128(1),
        concert_id: Uuid::from_u128(2),
        customer_email: "ada@example.com".into(),
        seats: vec![OrderSeat {
            seat_id: "A-1".into(),
            fencing_token: Some(7),
        }],
        paid_at: paid_at(),
    }
}

/// The same payment as a v2 producer wrote it: the concert in `event_id`.
fn v2_payment() -> Value {
    json!({
        "order_id": Uuid::from_u128(1),
        "event_id": Uuid::from_u128(2),
        "customer_email": "ada@example.com",
        "seats": [{ "seat_id": "A-1", "fencing_token": 7 }],
        "paid_at": paid_at(),
    })
}

/// The same payment as a v1 producer wrote it: a hold token on each seat.
fn v1_payment() -> Value {
    let mut v1 = v2_payment();
    v1["seats"][0]["hold_token"] = json!(Uuid::from_u128(3));
    v1
}

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
    let v2 = v2::OrderPaid::from(v1.clone());
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

#[test]
fn a_v2_payload_reads_as_v3_with_the_concert_in_concert_id() {
    let v2: v2::OrderPaid = serde_json::from_value(v2_payment()).unwrap();

    let v3 = OrderPaid::from(v2);

    assert_eq!(v3.concert_id, Uuid::from_u128(2));
    let back = serde_json::to_value(&v3).unwrap();
    assert!(back.get("event_id").is_none(), "{back}");
}

#[test]
fn a_v1_and_a_v2_payload_of_one_payment_decode_to_the_same_v3() {
    let current = current_payment();

    let from_v1 = OrderPaid::from_version(1, v1_payment()).unwrap();
    let from_v2 = OrderPaid::from_version(2, v2_payment()).unwrap();
    let from_v3 = OrderPaid::from_version(3, serde_json::to_value(&current).unwrap()).unwrap();

    assert_eq!(from_v1, current);
    assert_eq!(from_v2, current);
    assert_eq!(from_v3, current);
}

#[test]
fn every_version_of_created_and_confirmed_decodes_to_the_same_v3() {
    let v2_created = json!({
        "order_id": Uuid::from_u128(1), "event_id": Uuid::from_u128(2),
        "customer_email": "ada@example.com",
        "seats": [{ "seat_id": "A-1", "fencing_token": 7 }],
    });
    let mut v1_created = v2_created.clone();
    v1_created["seats"][0]["hold_token"] = json!(Uuid::from_u128(3));
    let created = OrderCreated::from_version(
        3,
        json!({
            "order_id": Uuid::from_u128(1), "concert_id": Uuid::from_u128(2),
            "customer_email": "ada@example.com",
            "seats": [{ "seat_id": "A-1", "fencing_token": 7 }],
        }),
    )
    .unwrap();
    assert_eq!(OrderCreated::from_version(2, v2_created).unwrap(), created);
    assert_eq!(OrderCreated::from_version(1, v1_created).unwrap(), created);

    let mut v2_confirmed = v2_payment();
    v2_confirmed["amount_cents"] = json!(4500);
    v2_confirmed["confirmed_at"] = json!(paid_at());
    let mut v1_confirmed = v2_confirmed.clone();
    v1_confirmed["seats"][0]["hold_token"] = json!(Uuid::from_u128(3));
    let confirmed = OrderConfirmed::from_version(2, v2_confirmed).unwrap();
    assert_eq!(confirmed.concert_id, Uuid::from_u128(2));
    assert_eq!(confirmed.amount_cents, 4500);
    assert_eq!(
        OrderConfirmed::from_version(1, v1_confirmed).unwrap(),
        confirmed
    );
}

#[test]
fn a_v1_cancellation_and_refund_read_as_v2_with_the_concert_in_concert_id() {
    let cancelled = OrderCancelled::from_version(
        1,
        json!({ "order_id": Uuid::from_u128(1), "event_id": Uuid::from_u128(2), "cancelled_at": paid_at() }),
    )
    .unwrap();
    assert_eq!(cancelled.concert_id, Uuid::from_u128(2));

    let refunded = OrderRefunded::from_version(
        1,
        json!({
            "order_id": Uuid::from_u128(1), "event_id": Uuid::from_u128(2),
            "customer_email": "ada@example.com", "reason": "seat A-1 sold", "refunded_at": paid_at(),
        }),
    )
    .unwrap();
    assert_eq!(refunded.concert_id, Uuid::from_u128(2));
    assert_eq!(refunded.reason, "seat A-1 sold");
}

#[test]
fn an_unknown_version_is_a_decode_error_naming_the_type_and_the_version() {
    let future = serde_json::to_value(current_payment()).unwrap();

    let error = OrderPaid::from_version(4, future).unwrap_err();

    assert!(
        matches!(
            error,
            DecodeError::UnknownVersion {
                event_type: "OrderPaid",
                version: 4,
                current: 3
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "unknown schema_version 4 of OrderPaid: this build reads v1 to v3"
    );
}

#[test]
fn data_that_does_not_fit_its_version_is_a_decode_error_saying_why() {
    // A v2 payload that claims to be v3: the renamed field is missing.
    let error = OrderPaid::from_version(3, v2_payment()).unwrap_err();

    assert!(
        matches!(error, DecodeError::Invalid { version: 3, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("invalid OrderPaid v3 data: "),
        "{message}"
    );
    assert!(message.contains("missing field `concert_id`"), "{message}");
}

/// An envelope of `event_type` as it arrives: `data` still JSON.
fn arrived(event_type: &str, schema_version: u32, data: Value) -> Envelope<Value> {
    Envelope {
        event_id: crate::MessageId::new(),
        event_type: event_type.into(),
        schema_version,
        aggregate_type: "order".into(),
        aggregate_id: Uuid::from_u128(1),
        aggregate_version: 2,
        occurred_at: paid_at(),
        producer: "orders".into(),
        data,
    }
}

#[test]
fn an_envelope_decodes_by_the_version_it_says_and_refuses_another_type() {
    let v1 = arrived("OrderPaid", 1, v1_payment());

    assert_eq!(v1.decode::<OrderPaid>().unwrap(), current_payment());
    let error = v1.decode::<OrderConfirmed>().unwrap_err();
    assert!(matches!(error, DecodeError::WrongType { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "expected event type OrderConfirmed, got OrderPaid"
    );
}
