//! Transactional outbox: the order change and its event commit together or
//! not at all.
//!
//! The failure is injected from outside the code under test: a trigger makes
//! the database reject a write that comes *after* the order row was written
//! in the same transaction. If the service committed the order separately,
//! the order would survive; it must not.

use reqwest::StatusCode;

use crate::shop::{Shop, new_key, problem};

/// Makes every insert into `table` fail, as a crash or a constraint would.
async fn fail_inserts_into(shop: &Shop, table: &str) {
    let fail = "raise exception 'injected failure';";
    shop.before_each("insert", table, fail).await;
}

#[tokio::test]
async fn a_failure_after_the_order_write_leaves_neither_order_nor_event() {
    let shop = Shop::open().await;
    fail_inserts_into(&shop, "outbox").await;

    let response = shop
        .create_order(&shop.order_body().await, &new_key())
        .await;

    let body = problem(
        response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "/problems/internal",
    );
    assert!(
        body["correlation_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let text = body.to_string();
    assert!(
        !text.contains("injected") && !text.contains("outbox"),
        "internals leaked: {text}"
    );
    shop.assert_nothing_written().await;
}

#[tokio::test]
async fn a_failure_after_the_payment_write_leaves_the_order_pending() {
    let shop = Shop::open().await;
    let id = shop.created_order().await;
    fail_inserts_into(&shop, "outbox").await;

    let response = shop.command(id, "pay", &new_key()).await;

    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(shop.status_of(id).await, "PENDING");
    assert_eq!(shop.events_of(id).await, [("OrderCreated".to_owned(), 1)]);
}

#[tokio::test]
async fn a_failure_storing_the_response_rolls_back_the_order_and_event() {
    let shop = Shop::open().await;
    // The key row is inserted first and updated with the response last, so
    // failing that final update fails after both business writes.
    let fail_on_the_response = "
        if new.response_status is not null then
            raise exception 'injected failure';
        end if;
        return new;";
    shop.before_each("update", "idempotency_keys", fail_on_the_response)
        .await;

    let response = shop
        .create_order(&shop.order_body().await, &new_key())
        .await;

    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(shop.count("orders").await, 0);
    assert_eq!(shop.count("outbox").await, 0);
}
