//! Bad input gets a problem+json naming the field, and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::Ask as _;
use uuid::Uuid;

use crate::shop::{Shop, new_key, problem};

const INVALID_FIELD: &str = "/problems/invalid-field";

/// Sends `body` as a create request and asserts a 422 naming `field`, and
/// that no table was written.
async fn rejects(shop: &Shop, body: &Value, field: &str) {
    let response = shop.create_order(body, &new_key()).await;
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY, INVALID_FIELD);
    assert_eq!(problem["field"], field, "{body} -> {problem}");
    for table in ["orders", "order_lines", "outbox", "idempotency_keys"] {
        assert_eq!(shop.count(table).await, 0, "{table} written for {body}");
    }
}

/// A valid body (real holds) with the value at `path` replaced.
async fn with(shop: &Shop, path: &str, value: Value) -> Value {
    let mut body = shop.order_body().await;
    let pointer = format!("/{}", path.replace('.', "/"));
    *body.pointer_mut(&pointer).unwrap() = value;
    body
}

#[tokio::test]
async fn malformed_values_are_rejected_by_field() {
    let shop = Shop::open().await;
    let same_seat = json!([
        { "seat_id": "A-1", "hold_token": Uuid::new_v4() },
        { "seat_id": "A-1", "hold_token": Uuid::new_v4() },
    ]);
    // (where in the body, the bad value, the field the problem names)
    let cases = [
        ("event_id", json!("not-a-uuid"), "event_id"),
        ("customer_email", json!("ada-at-example"), "customer_email"),
        // Found by hand against the running stack: a NUL reached Postgres
        // (500), a display name reached the mail's To: header.
        (
            "customer_email",
            json!("\u{0} <a@example.com>"),
            "customer_email",
        ),
        (
            "customer_email",
            json!("Call +1-555 now <a@example.com>"),
            "customer_email",
        ),
        ("customer_email", json!("a@[127.0.0.1]"), "customer_email"),
        ("customer_email", json!("a@localhost"), "customer_email"),
        ("seats.0.hold_token", json!("123"), "seats[0].hold_token"),
        ("seats.1.seat_id", json!("B 7!"), "seats[1].seat_id"),
        ("seats", json!([]), "seats"),
        ("seats", same_seat, "seats"),
    ];

    for (path, value, field) in cases {
        rejects(&shop, &with(&shop, path, value).await, field).await;
    }
}

#[tokio::test]
async fn unknown_and_missing_fields_are_rejected() {
    let shop = Shop::open().await;

    let mut typo = shop.order_body().await;
    let email = typo
        .as_object_mut()
        .unwrap()
        .remove("customer_email")
        .unwrap();
    typo["customer_mail"] = email;
    rejects(&shop, &typo, "customer_mail").await;

    let mut missing = shop.order_body().await;
    missing.as_object_mut().unwrap().remove("event_id");
    let response = shop.create_order(&missing, &new_key()).await;
    let problem_body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, INVALID_FIELD);
    assert!(
        problem_body["detail"]
            .as_str()
            .unwrap()
            .contains("event_id"),
        "{problem_body}"
    );
    assert_eq!(shop.count("orders").await, 0);
}

#[tokio::test]
async fn broken_json_and_wrong_media_types_are_rejected() {
    let shop = Shop::open().await;
    let send = |content_type: &'static str, body: &'static str| {
        shop.signed(shop.orders.post("/orders"))
            .header("idempotency-key", new_key())
            .header("content-type", content_type)
            .body(body)
            .answer()
    };

    let broken = send("application/json", r#"{"event_id": "#).await;
    problem(broken, StatusCode::BAD_REQUEST, "/problems/malformed-json");

    let form = send("application/x-www-form-urlencoded", "event_id=1").await;
    problem(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "/problems/unsupported-media-type",
    );
    assert_eq!(shop.count("orders").await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_rejected() {
    let shop = Shop::open_with(&[], &[("BODY_LIMIT_BYTES", "1024")]).await;
    let mut body = shop.order_body().await;
    body["customer_email"] = json!(format!("{}@example.com", "a".repeat(2000)));

    let response = shop.create_order(&body, &new_key()).await;

    problem(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "/problems/body-unreadable",
    );
    assert_eq!(shop.count("orders").await, 0);
}

#[tokio::test]
async fn malformed_ids_and_keys_are_rejected() {
    let shop = Shop::open().await;

    let bad_id = shop.post_keyed("/orders/12345/pay", &new_key()).await;
    let body = problem(bad_id, StatusCode::BAD_REQUEST, INVALID_FIELD);
    assert_eq!(body["field"], "id");

    let bad_key = shop
        .create_order(&shop.order_body().await, &"k".repeat(300))
        .await;
    let body = problem(bad_key, StatusCode::BAD_REQUEST, INVALID_FIELD);
    assert_eq!(body["field"], "Idempotency-Key");
    assert_eq!(shop.count("orders").await, 0);
}
