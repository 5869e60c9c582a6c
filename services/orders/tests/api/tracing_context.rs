//! The outbox row carries the trace of the request that wrote it, so the
//! relay's publish span (and every consumer after it) joins that trace.

use reqwest::StatusCode;
use testkit::Ask as _;

use crate::shop::{Shop, new_key};

#[tokio::test]
async fn the_outbox_row_carries_the_trace_of_the_request() {
    let shop = Shop::open().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let body = shop.order_body().await;

    let response = shop
        .signed(shop.orders.post("/orders"))
        .header("idempotency-key", new_key())
        .header("traceparent", &incoming)
        .json(&body)
        .answer()
        .await;
    assert_eq!(response.status, StatusCode::CREATED);

    let traceparent: String = sqlx::query_scalar("select traceparent from outbox")
        .fetch_one(shop.db())
        .await
        .unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "same trace as the request");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "a child span of ours, not the caller's span"
    );
}
