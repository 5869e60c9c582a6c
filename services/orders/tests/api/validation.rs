//! Bad input gets a problem+json naming the field, and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::test_app::{TestApp, new_key, problem};

/// Sends `body` as a create request and asserts the problem and that no
/// table was written.
async fn rejects(app: &TestApp, body: &Value, status: StatusCode, kind: &str, field: Option<&str>) {
    let response = app.create_order(body, &new_key()).await;
    let problem = problem(response, status, kind).await;
    assert_eq!(problem["field"].as_str(), field, "{body} -> {problem}");
    for table in ["orders", "order_lines", "outbox", "idempotency_keys"] {
        assert_eq!(app.count(table).await, 0, "{table} written for {body}");
    }
}

/// A valid body (real holds) with the value at `path` replaced.
async fn with(app: &TestApp, path: &str, value: Value) -> Value {
    let mut body = app.order_body().await;
    let pointer = format!("/{}", path.replace('.', "/"));
    *body.pointer_mut(&pointer).unwrap() = value;
    body
}

#[tokio::test]
async fn malformed_values_are_rejected_by_field() {
    let app = TestApp::spawn().await;
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let kind = "/problems/invalid-field";

    rejects(
        &app,
        &with(&app, "event_id", json!("not-a-uuid")).await,
        invalid,
        kind,
        Some("event_id"),
    )
    .await;
    rejects(
        &app,
        &with(&app, "customer_email", json!("ada-at-example")).await,
        invalid,
        kind,
        Some("customer_email"),
    )
    .await;
    // Found by hand against the running stack: a NUL reached Postgres
    // (500), a display name reached the mail's To: header.
    for email in [
        "\u{0} <a@example.com>",
        "Call +1-555 now <a@example.com>",
        "a@[127.0.0.1]",
        "a@localhost",
    ] {
        rejects(
            &app,
            &with(&app, "customer_email", json!(email)).await,
            invalid,
            kind,
            Some("customer_email"),
        )
        .await;
    }
    rejects(
        &app,
        &with(&app, "seats.0.hold_token", json!("123")).await,
        invalid,
        kind,
        Some("seats[0].hold_token"),
    )
    .await;
    rejects(
        &app,
        &with(&app, "seats.1.seat_id", json!("B 7!")).await,
        invalid,
        kind,
        Some("seats[1].seat_id"),
    )
    .await;
    rejects(
        &app,
        &with(&app, "seats", json!([])).await,
        invalid,
        kind,
        Some("seats"),
    )
    .await;
    let same_seat = json!([
        { "seat_id": "A-1", "hold_token": Uuid::new_v4() },
        { "seat_id": "A-1", "hold_token": Uuid::new_v4() },
    ]);
    rejects(
        &app,
        &with(&app, "seats", same_seat).await,
        invalid,
        kind,
        Some("seats"),
    )
    .await;
}

#[tokio::test]
async fn unknown_and_missing_fields_are_rejected() {
    let app = TestApp::spawn().await;
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let kind = "/problems/invalid-field";

    let mut typo = app.order_body().await;
    let email = typo
        .as_object_mut()
        .unwrap()
        .remove("customer_email")
        .unwrap();
    typo["customer_mail"] = email;
    rejects(&app, &typo, invalid, kind, Some("customer_mail")).await;

    let mut missing = app.order_body().await;
    missing.as_object_mut().unwrap().remove("event_id");
    let problem_body = {
        let response = app.create_order(&missing, &new_key()).await;
        problem(response, invalid, kind).await
    };
    assert!(
        problem_body["detail"]
            .as_str()
            .unwrap()
            .contains("event_id"),
        "{problem_body}"
    );
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn broken_json_and_wrong_media_types_are_rejected() {
    let app = TestApp::spawn().await;
    let send = |content_type: &'static str, body: &'static str| {
        app.http
            .post(format!("{}/orders", app.base))
            .header("idempotency-key", new_key())
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let broken = send("application/json", r#"{"event_id": "#).await.unwrap();
    problem(broken, StatusCode::BAD_REQUEST, "/problems/malformed-json").await;

    let form = send("application/x-www-form-urlencoded", "event_id=1")
        .await
        .unwrap();
    problem(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "/problems/unsupported-media-type",
    )
    .await;
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_rejected() {
    let app = TestApp::spawn_with(&[("BODY_LIMIT_BYTES", "1024")]).await;
    let mut body = app.order_body().await;
    body["customer_email"] = json!(format!("{}@example.com", "a".repeat(2000)));

    let response = app.create_order(&body, &new_key()).await;

    problem(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "/problems/body-unreadable",
    )
    .await;
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn malformed_ids_and_keys_are_rejected() {
    let app = TestApp::spawn().await;

    let bad_id = app
        .http
        .post(format!("{}/orders/12345/pay", app.base))
        .header("idempotency-key", new_key())
        .send()
        .await
        .unwrap();
    let body = problem(bad_id, StatusCode::BAD_REQUEST, "/problems/invalid-field").await;
    assert_eq!(body["field"], "id");

    let bad_key = app
        .create_order(&app.order_body().await, &"k".repeat(300))
        .await;
    let body = problem(bad_key, StatusCode::BAD_REQUEST, "/problems/invalid-field").await;
    assert_eq!(body["field"], "Idempotency-Key");
    assert_eq!(app.count("orders").await, 0);
}
