//! The sale window: orders and payments are taken from the concert's
//! `sale_opens_at` until it starts. Found by hand: a hold on a 2030 sale
//! was granted, and orders and payments ignored both times.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::test_app::{TestApp, new_key, problem};

#[tokio::test]
async fn after_the_concert_starts_nothing_is_ordered_or_paid_but_an_unpaid_order_can_be_cancelled()
{
    let app = TestApp::spawn().await;
    let inventory = &app.inventory;
    // A concert that starts in three seconds, its sale open since an hour.
    let starts_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let created = inventory
        .http
        .post(format!("{}/events", inventory.base))
        .json(&json!({
            "name": "Doors", "venue": "Hall 1", "starts_at": starts_at,
            "sale_opens_at": starts_at - chrono::Duration::hours(1),
            "seats": [{ "seat_id": "A-1", "price_cents": 100 }, { "seat_id": "A-2", "price_cents": 100 }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let concert: Uuid = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut holds = Vec::new();
    for seat in ["A-1", "A-2"] {
        let response = app
            .http
            .post(format!(
                "{}/events/{concert}/seats/{seat}/hold",
                inventory.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "hold {seat}");
        holds.push(response.json::<Value>().await.unwrap());
    }
    let body = |hold: &Value| {
        json!({
            "event_id": concert,
            "seats": [{ "seat_id": hold["seat_id"], "hold_token": hold["hold_token"] }],
            "customer_email": "ada@example.com",
        })
    };
    let (first, second) = (&holds[0], &holds[1]);
    let order = app.create_order(&body(first), &new_key()).await;
    assert_eq!(order.status(), StatusCode::CREATED);
    let order: Uuid = order.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let wait = (starts_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;

    // Ordering the other held seat: inventory says the sale has closed.
    let late_order = app.create_order(&body(second), &new_key()).await;
    let refused = problem(late_order, StatusCode::CONFLICT, "/problems/sale-closed").await;
    assert!(
        refused["detail"].as_str().unwrap().contains("runs from"),
        "{refused}"
    );
    assert_eq!(app.count("orders").await, 1, "nothing written");

    // Paying the order made in time: refused, and nothing changes.
    let pay = app.command(order, "pay", &new_key()).await;
    problem(pay, StatusCode::CONFLICT, "/problems/sale-closed").await;
    assert_eq!(app.status_of(order).await, "PENDING");
    assert_eq!(app.events_of(order).await, [("OrderCreated".to_owned(), 1)]);

    // It can still be cancelled.
    let cancel = app.command(order, "cancel", &new_key()).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(app.status_of(order).await, "CANCELLED");
}
