//! The sale window: orders and payments are taken from the concert's
//! `sale_opens_at` until it starts. Found by hand: a hold on a 2030 sale
//! was granted, and orders and payments ignored both times.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::shop::{Shop, id_of, new_key, problem};

#[tokio::test]
async fn after_the_concert_starts_nothing_is_ordered_or_paid_but_an_unpaid_order_can_be_cancelled()
{
    let shop = Shop::open().await;
    // A concert that starts in three seconds, its sale open since an hour.
    let starts_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let created = shop
        .create_event(&json!({
            "name": "Doors", "venue": "Hall 1", "starts_at": starts_at,
            "sale_opens_at": starts_at - chrono::Duration::hours(1),
            "seats": [{ "seat_id": "A-1", "price_cents": 100 }, { "seat_id": "A-2", "price_cents": 100 }],
        }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let concert = id_of(&created.body);
    let first = shop.held(concert, "A-1", shop.customer).await;
    let second = shop.held(concert, "A-2", shop.customer).await;
    let body = |hold: &Value| {
        json!({
            "event_id": concert,
            "seats": [{ "seat_id": hold["seat_id"], "hold_token": hold["hold_token"] }],
            "customer_email": "ada@example.com",
        })
    };
    let order = shop.create_order(&body(&first), &new_key()).await;
    assert_eq!(order.status, StatusCode::CREATED);
    let order = id_of(&order.body);

    let wait = (starts_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;

    // Ordering the other held seat: inventory says the sale has closed.
    let late_order = shop.create_order(&body(&second), &new_key()).await;
    let refused = problem(late_order, StatusCode::CONFLICT, "/problems/sale-closed");
    assert!(
        refused["detail"].as_str().unwrap().contains("runs from"),
        "{refused}"
    );
    assert_eq!(shop.count("orders").await, 1, "nothing written");

    // Paying the order made in time: refused, and nothing changes.
    let pay = shop.command(order, "pay", &new_key()).await;
    problem(pay, StatusCode::CONFLICT, "/problems/sale-closed");
    assert_eq!(shop.status_of(order).await, "PENDING");
    assert_eq!(
        shop.events_of(order).await,
        [("OrderCreated".to_owned(), 1)]
    );

    // It can still be cancelled.
    let cancel = shop.command(order, "cancel", &new_key()).await;
    assert_eq!(cancel.status, StatusCode::OK);
    assert_eq!(shop.status_of(order).await, "CANCELLED");
}
