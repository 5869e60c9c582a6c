//! The order state machine, enforced by conditional updates.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::shop::{Shop, id_of, new_key, problem};

#[tokio::test]
async fn creating_an_order_stores_it_pending_with_its_created_event() {
    let shop = Shop::open().await;
    let (body, holds) = shop.order_body_for(2).await;

    let response = shop.create_order(&body, &new_key()).await;

    assert_eq!(response.status, StatusCode::CREATED);
    let order = response.body;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["version"], 1);
    // The seats as asked for, each with its hold's fencing token, and not
    // the hold token: that stays with the customer who holds the seat.
    let expected: Vec<Value> = body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&holds)
        .map(|(seat, hold)| json!({ "seat_id": seat["seat_id"], "fencing_token": hold["fencing_token"] }))
        .collect();
    assert_eq!(order["seats"], Value::from(expected));
    assert_eq!(order["customer_id"], shop.customer.to_string());
    let id = id_of(&order);
    assert_eq!(shop.events_of(id).await, [("OrderCreated".to_owned(), 1)]);

    assert_eq!(shop.read_order(id).await.body, order);
}

/// Applies `verb` to a new order and asserts the 200, the status it ends
/// in, and the events the order then has. (Boxed by its callers: a whole
/// test is a large future.)
async fn a_command_on_a_pending_order(verb: &str, status: &str, event: &str) {
    let shop = Shop::open().await;
    let id = shop.created_order().await;

    let response = shop.command(id, verb, &new_key()).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["status"], status);
    assert_eq!(response.body["version"], 2);
    assert_eq!(shop.status_of(id).await, status);
    assert_eq!(
        shop.events_of(id).await,
        [("OrderCreated".to_owned(), 1), (event.to_owned(), 2)]
    );
}

#[tokio::test]
async fn paying_a_pending_order_makes_it_paid_and_emits_order_paid() {
    Box::pin(a_command_on_a_pending_order("pay", "PAID", "OrderPaid")).await;
}

#[tokio::test]
async fn cancelling_a_pending_order_emits_order_cancelled() {
    Box::pin(a_command_on_a_pending_order(
        "cancel",
        "CANCELLED",
        "OrderCancelled",
    ))
    .await;
}

#[tokio::test]
async fn paying_a_cancelled_order_is_a_conflict_and_changes_nothing() {
    let shop = Shop::open().await;
    let id = shop.created_order().await;
    shop.command(id, "cancel", &new_key()).await;

    let response = shop.command(id, "pay", &new_key()).await;

    let body = problem(
        response,
        StatusCode::CONFLICT,
        "/problems/invalid-transition",
    );
    assert!(body["detail"].as_str().unwrap().contains("CANCELLED"));
    assert_eq!(shop.status_of(id).await, "CANCELLED");
    assert_eq!(shop.events_of(id).await.len(), 2);
}

#[tokio::test]
async fn cancelling_a_paid_order_is_a_conflict() {
    let shop = Shop::open().await;
    let id = shop.created_order().await;
    shop.command(id, "pay", &new_key()).await;

    let response = shop.command(id, "cancel", &new_key()).await;

    problem(
        response,
        StatusCode::CONFLICT,
        "/problems/invalid-transition",
    );
    assert_eq!(shop.status_of(id).await, "PAID");
}

#[tokio::test]
async fn of_many_concurrent_pays_with_different_keys_exactly_one_wins() {
    let shop = Arc::new(Shop::open().await);
    let id = shop.created_order().await;
    // The winning update holds the row for half a second, so the others
    // provably run while it is uncommitted (a read-then-write would let
    // several of them see PENDING).
    shop.slow_down("update", "orders", 0.5).await;

    let mut pays = JoinSet::new();
    for _ in 0..10 {
        let shop = shop.clone();
        pays.spawn(async move { shop.command(id, "pay", &new_key()).await.status });
    }
    let statuses: Vec<StatusCode> = pays.join_all().await;

    let count = |status: StatusCode| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(count(StatusCode::OK), 1, "{statuses:?}");
    assert_eq!(count(StatusCode::CONFLICT), 9, "{statuses:?}");
    let paid_events = shop
        .events_of(id)
        .await
        .into_iter()
        .filter(|(t, _)| t == "OrderPaid")
        .count();
    assert_eq!(paid_events, 1);
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    let shop = Shop::open().await;
    let id = Uuid::new_v4();

    let get = shop.read_order(id).await;
    problem(get, StatusCode::NOT_FOUND, "/problems/order-not-found");

    let pay = shop.command(id, "pay", &new_key()).await;
    problem(pay, StatusCode::NOT_FOUND, "/problems/order-not-found");
    assert_eq!(
        shop.count("idempotency_keys").await,
        0,
        "a failed request stores no key"
    );
}
