//! Idempotency keys: one write per key, whatever the client retries.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::helpers::{TestApp, new_key, order_body, problem};

#[tokio::test]
async fn retrying_a_create_with_the_same_key_replays_the_response_without_writing_again() {
    let app = TestApp::spawn().await;
    let (body, key) = (order_body(), new_key());

    let first = app.create_order(&body, &key).await;
    let first_status = first.status();
    let first_body: Value = first.json().await.unwrap();
    let retry = app.create_order(&body, &key).await;

    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("outbox").await, 1);
}

#[tokio::test]
async fn retrying_a_pay_with_the_same_key_replays_instead_of_conflicting() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;
    let key = new_key();

    let first = app.command(id, "pay", &key).await;
    let retry = app.command(id, "pay", &key).await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        retry.status(),
        StatusCode::OK,
        "a retry is not a second payment"
    );
    assert_eq!(
        retry.json::<Value>().await.unwrap(),
        first.json::<Value>().await.unwrap()
    );
    assert_eq!(app.events_of(id).await.len(), 2);
}

#[tokio::test]
async fn reusing_a_key_for_a_different_request_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let key = new_key();
    app.create_order(&order_body(), &key).await;

    let other_body = app.create_order(&order_body(), &key).await;
    let body = problem(
        other_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    )
    .await;
    assert_eq!(body["field"], "Idempotency-Key");

    let id = app.created_order().await;
    let other_path = app.command(id, "pay", &key).await;
    problem(
        other_path,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    )
    .await;
    assert_eq!(app.count("orders").await, 2);
    assert_eq!(app.status_of(id).await, "PENDING");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_write_once_and_all_get_the_same_answer() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let (body, key) = (order_body(), new_key());

    let mut requests = JoinSet::new();
    for _ in 0..20 {
        let (app, body, key) = (app.clone(), body.clone(), key.clone());
        requests.spawn(async move {
            let response = app.create_order(&body, &key).await;
            (response.status(), response.json::<Value>().await.unwrap())
        });
    }
    let answers = requests.join_all().await;

    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|(_, b)| *b == answers[0].1),
        "one order id for all"
    );
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("outbox").await, 1);
}

#[tokio::test]
async fn an_expired_key_runs_the_request_again() {
    let app = TestApp::spawn().await;
    let (body, key) = (order_body(), new_key());
    app.create_order(&body, &key).await;
    sqlx::query("update idempotency_keys set expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();

    let again = app.create_order(&body, &key).await;

    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.count("orders").await, 2);
}

#[tokio::test]
async fn the_sweeper_deletes_only_expired_keys() {
    let app = TestApp::spawn().await;
    app.created_order().await;
    app.created_order().await;
    sqlx::query(
        "update idempotency_keys set expires_at = now() - interval '1 second' \
         where key = (select key from idempotency_keys limit 1)",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let deleted = orders::idempotency::sweep_expired(&app.db, 100)
        .await
        .unwrap();

    assert_eq!(deleted, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_post_without_a_key_is_rejected_and_changes_nothing() {
    let app = TestApp::spawn().await;

    let response = app
        .http
        .post(format!("{}/orders", app.base))
        .json(&order_body())
        .send()
        .await
        .unwrap();

    problem(
        response,
        StatusCode::BAD_REQUEST,
        "/problems/idempotency-key-missing",
    )
    .await;
    assert_eq!(app.count("orders").await, 0);
}
