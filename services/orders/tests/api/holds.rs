//! Holds verified with inventory: an order is written only for live holds,
//! carries their fencing tokens, and inventory being down stops creation
//! (with a clear 503) but neither payments nor replays.
//!
//! Inventory is the real service, in-process, on real Postgres, NATS and
//! Redis; "down" is made by stopping it, stopping its Redis, or pausing its
//! Redis so that it cannot answer in time.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{Answer, RestartableRedis};
use uuid::Uuid;

use crate::shop::{Shop, id_of, new_key, problem};

/// The fencing token stored on each line of `order`, in seat order.
async fn line_tokens(shop: &Shop, order: Uuid) -> Vec<Option<i64>> {
    sqlx::query_scalar(
        "select fencing_token from order_lines where order_id = $1 order by position",
    )
    .bind(order)
    .fetch_all(shop.db())
    .await
    .unwrap()
}

/// The `data` of the outbox event `event_type` of `order`.
async fn event_data(shop: &Shop, order: Uuid, event_type: &str) -> Value {
    let payload: String = sqlx::query_scalar(
        "select payload::text from outbox where aggregate_id = $1 and event_type = $2",
    )
    .bind(order)
    .bind(event_type)
    .fetch_one(shop.db())
    .await
    .unwrap();
    serde_json::from_str::<Value>(&payload).unwrap()["data"].clone()
}

/// Asserts the 503 every inventory outage gets and returns its detail.
fn inventory_unavailable(answer: Answer) -> String {
    let retry_after = answer
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = problem(
        answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "/problems/dependency-unavailable",
    );
    assert_eq!(body["dependency"], "inventory", "{body}");
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After in seconds"
    );
    body["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_order_stores_the_fencing_token_of_each_hold_on_its_lines_and_in_its_events() {
    let shop = Shop::open().await;
    let (body, holds) = shop.order_body_for(2).await;
    let tokens: Vec<i64> = holds
        .iter()
        .map(|h| h["fencing_token"].as_i64().unwrap())
        .collect();

    let response = shop.create_order(&body, &new_key()).await;

    assert_eq!(response.status, StatusCode::CREATED);
    let order = response.body;
    let id = id_of(&order);
    let expected: Vec<Option<i64>> = tokens.iter().copied().map(Some).collect();
    assert_eq!(line_tokens(&shop, id).await, expected);
    let created = event_data(&shop, id, "OrderCreated").await;
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(created["seats"][i]["fencing_token"], *token, "{created}");
        assert_eq!(order["seats"][i]["fencing_token"], *token, "{order}");
    }
    let fetched = shop.read_order(id).await.body;
    assert_eq!(fetched["seats"], order["seats"]);

    // The payment carries the same tokens: they decide the sale.
    let paid = shop.command(id, "pay", &new_key()).await;
    assert_eq!(paid.status, StatusCode::OK);
    assert_eq!(
        event_data(&shop, id, "OrderPaid").await["seats"],
        created["seats"]
    );
}

#[tokio::test]
async fn a_released_hold_or_someone_elses_seat_is_refused_naming_the_field_and_nothing_is_written()
{
    let shop = Shop::open().await;

    // Released: the second seat's hold was given back before ordering.
    let (released, holds) = shop.order_body_for(2).await;
    shop.release(&holds[1]).await;
    let response = shop.create_order(&released, &new_key()).await;
    let body = problem(response, StatusCode::CONFLICT, "/problems/hold-not-valid");
    assert_eq!(body["field"], "seats[1].hold_token", "{body}");
    let seat = holds[1]["seat_id"].as_str().unwrap();
    assert!(body["detail"].as_str().unwrap().contains(seat), "{body}");
    shop.assert_nothing_written().await;

    // Foreign: another customer holds the seat; a made-up token is no hold.
    let seat = shop.fresh_seats(1).remove(0);
    shop.held(shop.concert, &seat, Uuid::new_v4()).await;
    let foreign = json!({
        "event_id": shop.concert,
        "seats": [{ "seat_id": seat, "hold_token": Uuid::new_v4() }],
        "customer_email": "ada@example.com",
    });
    let response = shop.create_order(&foreign, &new_key()).await;
    let body = problem(response, StatusCode::CONFLICT, "/problems/hold-not-valid");
    assert_eq!(body["field"], "seats[0].hold_token", "{body}");
    shop.assert_nothing_written().await;
}

#[tokio::test]
async fn a_lapsed_hold_is_refused_and_nothing_is_written() {
    let shop = Shop::open_with(&[("HOLD_TTL", "1s")], &[]).await;
    let (body, _) = shop.order_body_for(1).await;
    testkit::eventually(
        Duration::from_secs(10),
        "the hold lapsed in inventory",
        || async { shop.verify_status(&body).await == StatusCode::CONFLICT },
    )
    .await;

    let response = shop.create_order(&body, &new_key()).await;

    let problem = problem(response, StatusCode::CONFLICT, "/problems/hold-not-valid");
    assert_eq!(problem["field"], "seats[0].hold_token");
    shop.assert_nothing_written().await;
}

#[tokio::test]
async fn with_inventory_stopped_no_order_is_created_but_orders_are_still_paid_and_a_retry_succeeds_once_it_is_back()
 {
    let mut shop = Shop::open().await;
    let existing = shop.created_order().await;
    let (body, key) = (shop.order_body().await, new_key());
    shop.inventory.stop().await;

    let refused = shop.create_order(&body, &key).await;

    let detail = inventory_unavailable(refused);
    assert!(
        detail.contains("could not connect to inventory"),
        "{detail}"
    );
    assert_eq!(shop.count("orders").await, 1, "only the existing order");
    assert_eq!(shop.count("order_lines").await, 2);
    assert_eq!(shop.count("outbox").await, 1);
    assert_eq!(shop.count("idempotency_keys").await, 1, "no key stored");

    // Paying does not need inventory: the fencing token decides at the sale.
    let paid = shop.command(existing, "pay", &new_key()).await;
    assert_eq!(paid.status, StatusCode::OK);

    // The failure was not stored under the key: the same retry now works.
    shop.inventory.restart().await;
    let retried = shop.create_order(&body, &key).await;
    assert_eq!(retried.status, StatusCode::CREATED);
    assert!(retried.headers.get("idempotent-replayed").is_none());
    assert_eq!(shop.count("orders").await, 2);
}

#[tokio::test]
async fn a_replayed_create_is_answered_from_storage_without_asking_inventory() {
    let mut shop = Shop::open().await;
    let (body, key) = (shop.order_body().await, new_key());
    let first = shop.create_order(&body, &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    shop.inventory.stop().await;

    let replay = shop.create_order(&body, &key).await;

    assert_eq!(
        replay.status,
        StatusCode::CREATED,
        "not a 503: inventory was not asked"
    );
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body);
    assert_eq!(shop.count("orders").await, 1);

    // A key reused for another body is still refused, without inventory.
    let mut other = body.clone();
    other["customer_email"] = json!("grace@example.com");
    let reused = shop.create_order(&other, &key).await;
    problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    );
}

#[tokio::test]
async fn when_inventory_has_lost_its_redis_the_create_answers_503_naming_inventory_and_why() {
    let mut redis = RestartableRedis::start().await;
    let shop = Shop::open_with(&[("REDIS_URL", &redis.url())], &[]).await;
    let body = shop.order_body().await;
    redis.stop().await;

    let response = shop.create_order(&body, &new_key()).await;

    let detail = inventory_unavailable(response);
    assert!(
        detail.contains("inventory answered 503") && detail.contains("redis"),
        "{detail}"
    );
    shop.assert_nothing_written().await;
}

#[tokio::test]
async fn when_inventory_does_not_answer_in_time_the_create_answers_503_and_says_so() {
    let redis = RestartableRedis::start().await;
    // Inventory itself waits for its Redis far longer than orders waits for it.
    let shop = Shop::open_with(
        &[("REDIS_URL", &redis.url()), ("REDIS_TIMEOUT", "10s")],
        &[("INVENTORY_TIMEOUT", "300ms")],
    )
    .await;
    let body = shop.order_body().await;
    let mut pause = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Every Redis command of inventory now blocks for 3 s.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3_000)
        .arg("ALL")
        .query_async::<()>(&mut pause)
        .await
        .unwrap();

    let started = Instant::now();
    let response = shop.create_order(&body, &new_key()).await;

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after orders' timeout, not after the pause: {:?}",
        started.elapsed()
    );
    let detail = inventory_unavailable(response);
    assert!(
        detail.contains("inventory did not answer within 300ms"),
        "{detail}"
    );
    shop.assert_nothing_written().await;
}
