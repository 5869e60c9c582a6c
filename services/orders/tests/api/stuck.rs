//! Stuck sagas show: a paid order that inventory never answers is counted
//! on `/metrics` once it is past `PAID_DEADLINE`, and listed by the query
//! `ticketctl orders stuck` runs; inventory's answer, however late, takes
//! it off. A scrape still answers when the count cannot be measured.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use contracts::Event;
use contracts::inventory::{SeatAllocationRejected, SeatsConfirmed};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::Ask as _;
use uuid::Uuid;

use crate::shop::{Shop, new_key};

/// Short enough to wait out in a test, long enough that an order paid
/// just now is not yet past it.
const DEADLINE: &str = "2s";

/// A shop whose orders react to inventory's answers, which this test
/// sends itself: inventory never hears of the payments (no relay carries
/// `OrderPaid`), as when it dead-letters them.
async fn shop_with_a_deadline() -> Shop {
    Shop::open_with(
        &[],
        &[
            ("PAID_DEADLINE", DEADLINE),
            ("CONSUME_INVENTORY_EVENTS", "true"),
        ],
    )
    .await
}

/// A new order of the shop's customer, paid; asserts the 200.
async fn paid_order(shop: &Shop) -> Uuid {
    let id = shop.created_order().await;
    let paid = shop.command(id, "pay", &new_key()).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
    id
}

/// Publishes inventory's answer `T` about `order` with `data`, as
/// inventory's relay would: version 1 of the order's seat allocation, in
/// the payload's first schema (the wire format every later one must still
/// read).
async fn answer_from_inventory<T: Event>(shop: &Shop, order: Uuid, data: Value) {
    let event_id = Uuid::new_v4();
    let envelope = json!({
        "event_id": event_id,
        "event_type": T::EVENT_TYPE,
        "schema_version": 1,
        "aggregate_type": T::AGGREGATE_TYPE,
        "aggregate_id": order,
        "aggregate_version": 1,
        "occurred_at": chrono::Utc::now(),
        "producer": "inventory",
        "data": data,
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(messaging::headers::MSG_ID, event_id.to_string());
    let message = PublishMessage::build()
        .payload(serde_json::to_vec(&envelope).unwrap().into())
        .headers(headers);
    let subject = shop.world.topology().subject(T::SUBJECT);
    let js = shop.world.nats.jetstream().await;
    js.send_publish(subject, message)
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_paid_order_without_an_answer_is_stuck_past_the_deadline_until_inventory_answers() {
    let shop = shop_with_a_deadline().await;
    let confirmed = paid_order(&shop).await;
    let refunded = paid_order(&shop).await;
    shop.created_order().await; // pending: not waiting for inventory

    // Paid just now: within the deadline, nothing is stuck yet.
    shop.orders.scraped("\norders_stuck_paid 0\n").await;
    let stuck = shop.orders.scraped("\norders_stuck_paid 2\n").await;

    let oldest = gauge(&stuck.text, "orders_stuck_paid_oldest_seconds");
    assert!(oldest >= 2.0, "{oldest}");
    let listed = orders::stuck::list(shop.db(), Duration::from_secs(2), 50)
        .await
        .unwrap();
    let ids: Vec<Uuid> = listed.iter().map(|o| o.id).collect();
    assert_eq!(ids, [confirmed, refunded], "longest-waiting first");
    assert_eq!(listed[0].customer_id, Some(shop.customer));
    assert_eq!(listed[0].event_id, shop.concert);
    assert!(listed[0].age_secs >= 2.0);
    let fresh = orders::stuck::list(shop.db(), Duration::from_mins(1), 50)
        .await
        .unwrap();
    assert!(fresh.is_empty(), "--older-than 1m lists none: {fresh:?}");

    let seats = json!({
        "order_id": confirmed, "event_id": shop.concert, "seat_ids": [], "amount_cents": 9_000,
    });
    answer_from_inventory::<SeatsConfirmed>(&shop, confirmed, seats).await;
    shop.orders.scraped("\norders_stuck_paid 1\n").await;
    assert_eq!(shop.status_of(confirmed).await, "CONFIRMED");
    let rejection = json!({
        "order_id": refunded, "event_id": shop.concert, "unavailable_seat_ids": [],
        "reason": "sold to another order",
    });
    answer_from_inventory::<SeatAllocationRejected>(&shop, refunded, rejection).await;
    let settled = shop.orders.scraped("\norders_stuck_paid 0\n").await;
    assert_eq!(shop.status_of(refunded).await, "REFUNDED");
    settled.assert_contains("\norders_stuck_paid_oldest_seconds 0");
}

#[tokio::test]
async fn a_scrape_answers_without_the_stuck_gauges_while_the_orders_table_is_locked() {
    let shop = shop_with_a_deadline().await;
    shop.orders.scraped("\norders_stuck_paid 0\n").await;
    // A migration or a vacuum full holds this lock; the count waits on it.
    let mut locking = shop.db().begin().await.unwrap();
    sqlx::query("lock table orders in access exclusive mode")
        .execute(&mut *locking)
        .await
        .unwrap();

    let metrics = shop.orders.get("/metrics").answer().await;

    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        !metrics.text.contains("orders_stuck_paid"),
        "{}",
        metrics.text
    );
    metrics.assert_contains("http_requests_total");
    locking.rollback().await.unwrap();
    shop.orders.scraped("\norders_stuck_paid 0\n").await;
}

/// The value of the unlabelled metric `name` in `scrape`.
fn gauge(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{scrape}"))
        .parse()
        .unwrap()
}
