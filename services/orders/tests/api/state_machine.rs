//! The order state machine, enforced by conditional updates.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::test_app::{TestApp, new_key, problem, slow_down};

#[tokio::test]
async fn creating_an_order_stores_it_pending_with_its_created_event() {
    let app = TestApp::spawn().await;
    let (body, holds) = app.order_body_for(2).await;

    let response = app.create_order(&body, &new_key()).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["version"], 1);
    // The seats as asked for, each with its hold's fencing token, and not
    // the hold token: that stays with the customer who holds the seat.
    let expected: Vec<Value> = body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&holds)
        .map(|(seat, hold)| {
            serde_json::json!({ "seat_id": seat["seat_id"], "fencing_token": hold["fencing_token"] })
        })
        .collect();
    assert_eq!(order["seats"], Value::from(expected));
    assert_eq!(order["customer_id"], app.customer.to_string());
    let id = order["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.events_of(id).await, [("OrderCreated".to_owned(), 1)]);

    let fetched: Value = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, order);
}

#[tokio::test]
async fn paying_a_pending_order_makes_it_paid_and_emits_order_paid() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;

    let response = app.command(id, "pay", &new_key()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["version"], 2);
    assert_eq!(
        app.events_of(id).await,
        [("OrderCreated".to_owned(), 1), ("OrderPaid".to_owned(), 2)]
    );
}

#[tokio::test]
async fn cancelling_a_pending_order_emits_order_cancelled() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;

    let response = app.command(id, "cancel", &new_key()).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.status_of(id).await, "CANCELLED");
    assert_eq!(
        app.events_of(id).await,
        [
            ("OrderCreated".to_owned(), 1),
            ("OrderCancelled".to_owned(), 2)
        ]
    );
}

#[tokio::test]
async fn paying_a_cancelled_order_is_a_conflict_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;
    app.command(id, "cancel", &new_key()).await;

    let response = app.command(id, "pay", &new_key()).await;

    let body = problem(
        response,
        StatusCode::CONFLICT,
        "/problems/invalid-transition",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("CANCELLED"));
    assert_eq!(app.status_of(id).await, "CANCELLED");
    assert_eq!(app.events_of(id).await.len(), 2);
}

#[tokio::test]
async fn cancelling_a_paid_order_is_a_conflict() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;
    app.command(id, "pay", &new_key()).await;

    let response = app.command(id, "cancel", &new_key()).await;

    problem(
        response,
        StatusCode::CONFLICT,
        "/problems/invalid-transition",
    )
    .await;
    assert_eq!(app.status_of(id).await, "PAID");
}

#[tokio::test]
async fn of_many_concurrent_pays_with_different_keys_exactly_one_wins() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let id = app.created_order().await;
    // The winning update holds the row for half a second, so the others
    // provably run while it is uncommitted (a read-then-write would let
    // several of them see PENDING).
    slow_down(&app, "update", "orders", 0.5).await;

    let mut pays = JoinSet::new();
    for _ in 0..10 {
        let app = app.clone();
        pays.spawn(async move { app.command(id, "pay", &new_key()).await.status() });
    }
    let statuses: Vec<StatusCode> = pays.join_all().await;

    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        9,
        "{statuses:?}"
    );
    let paid_events = app
        .events_of(id)
        .await
        .into_iter()
        .filter(|(t, _)| t == "OrderPaid")
        .count();
    assert_eq!(paid_events, 1);
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();

    let get = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .send()
        .await
        .unwrap();
    problem(get, StatusCode::NOT_FOUND, "/problems/order-not-found").await;

    let pay = app.command(id, "pay", &new_key()).await;
    problem(pay, StatusCode::NOT_FOUND, "/problems/order-not-found").await;
    assert_eq!(
        app.count("idempotency_keys").await,
        0,
        "a failed request stores no key"
    );
}
