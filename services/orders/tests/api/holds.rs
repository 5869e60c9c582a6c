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
use testkit::RestartableRedis;
use uuid::Uuid;

use crate::test_app::{TestApp, TestInventory, new_key, problem};

/// The fencing token stored on each line of `order`, in seat order.
async fn line_tokens(app: &TestApp, order: Uuid) -> Vec<Option<i64>> {
    sqlx::query_scalar(
        "select fencing_token from order_lines where order_id = $1 order by position",
    )
    .bind(order)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// The `data` of the outbox event `event_type` of `order`.
async fn event_data(app: &TestApp, order: Uuid, event_type: &str) -> Value {
    let payload: String = sqlx::query_scalar(
        "select payload::text from outbox where aggregate_id = $1 and event_type = $2",
    )
    .bind(order)
    .bind(event_type)
    .fetch_one(&app.db)
    .await
    .unwrap();
    serde_json::from_str::<Value>(&payload).unwrap()["data"].clone()
}

/// Asserts the 503 every inventory outage gets and returns its detail.
async fn inventory_unavailable(response: reqwest::Response) -> String {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "/problems/dependency-unavailable",
    )
    .await;
    assert_eq!(body["dependency"], "inventory", "{body}");
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After in seconds"
    );
    body["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_order_stores_the_fencing_token_of_each_hold_on_its_lines_and_in_its_events() {
    let app = TestApp::spawn().await;
    let (body, holds) = app.order_body_for(2).await;
    let tokens: Vec<i64> = holds
        .iter()
        .map(|h| h["fencing_token"].as_i64().unwrap())
        .collect();

    let response = app.create_order(&body, &new_key()).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    let id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let expected: Vec<Option<i64>> = tokens.iter().copied().map(Some).collect();
    assert_eq!(line_tokens(&app, id).await, expected);
    let created = event_data(&app, id, "OrderCreated").await;
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(created["seats"][i]["fencing_token"], *token, "{created}");
        assert_eq!(order["seats"][i]["fencing_token"], *token, "{order}");
    }
    let fetched: Value = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["seats"], order["seats"]);

    // The payment carries the same tokens: they decide the sale.
    assert_eq!(
        app.command(id, "pay", &new_key()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        event_data(&app, id, "OrderPaid").await["seats"],
        created["seats"]
    );
}

#[tokio::test]
async fn a_released_hold_or_someone_elses_seat_is_refused_naming_the_field_and_nothing_is_written()
{
    let app = TestApp::spawn().await;

    // Released: the second seat's hold was given back before ordering.
    let (released, holds) = app.order_body_for(2).await;
    app.inventory
        .release(
            holds[1]["seat_id"].as_str().unwrap(),
            holds[1]["hold_token"].as_str().unwrap(),
            app.customer,
        )
        .await;
    let response = app.create_order(&released, &new_key()).await;
    let body = problem(response, StatusCode::CONFLICT, "/problems/hold-not-valid").await;
    assert_eq!(body["field"], "seats[1].hold_token", "{body}");
    let seat = holds[1]["seat_id"].as_str().unwrap();
    assert!(body["detail"].as_str().unwrap().contains(seat), "{body}");
    app.assert_nothing_written().await;

    // Foreign: another customer holds the seat; a made-up token is no hold.
    let seat = app.inventory.fresh_seats(1).remove(0);
    app.inventory.held(&seat, Uuid::new_v4()).await;
    let foreign = json!({
        "event_id": app.inventory.concert,
        "seats": [{ "seat_id": seat, "hold_token": Uuid::new_v4() }],
        "customer_email": "ada@example.com",
    });
    let response = app.create_order(&foreign, &new_key()).await;
    let body = problem(response, StatusCode::CONFLICT, "/problems/hold-not-valid").await;
    assert_eq!(body["field"], "seats[0].hold_token", "{body}");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn a_lapsed_hold_is_refused_and_nothing_is_written() {
    let inventory = TestInventory::start(&[("HOLD_TTL", "1s")]).await;
    let app = TestApp::spawn_next_to(inventory, &[]).await;
    let (body, _) = app.order_body_for(1).await;
    testkit::eventually(
        Duration::from_secs(10),
        "the hold lapsed in inventory",
        || async { app.inventory.verify_status(&body, app.customer).await == StatusCode::CONFLICT },
    )
    .await;

    let response = app.create_order(&body, &new_key()).await;

    let problem = problem(response, StatusCode::CONFLICT, "/problems/hold-not-valid").await;
    assert_eq!(problem["field"], "seats[0].hold_token");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn with_inventory_stopped_no_order_is_created_but_orders_are_still_paid_and_a_retry_succeeds_once_it_is_back()
 {
    let mut app = TestApp::spawn().await;
    let existing = app.created_order().await;
    let (body, key) = (app.order_body().await, new_key());
    app.inventory.stop().await;

    let refused = app.create_order(&body, &key).await;

    let detail = inventory_unavailable(refused).await;
    assert!(
        detail.contains("could not connect to inventory"),
        "{detail}"
    );
    assert_eq!(app.count("orders").await, 1, "only the existing order");
    assert_eq!(app.count("order_lines").await, 2);
    assert_eq!(app.count("outbox").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 1, "no key stored");

    // Paying does not need inventory: the fencing token decides at the sale.
    let paid = app.command(existing, "pay", &new_key()).await;
    assert_eq!(paid.status(), StatusCode::OK);

    // The failure was not stored under the key: the same retry now works.
    app.inventory.restart().await;
    let retried = app.create_order(&body, &key).await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.count("orders").await, 2);
}

#[tokio::test]
async fn a_replayed_create_is_answered_from_storage_without_asking_inventory() {
    let mut app = TestApp::spawn().await;
    let (body, key) = (app.order_body().await, new_key());
    let first = app.create_order(&body, &key).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    app.inventory.stop().await;

    let replay = app.create_order(&body, &key).await;

    assert_eq!(
        replay.status(),
        StatusCode::CREATED,
        "not a 503: inventory was not asked"
    );
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    assert_eq!(app.count("orders").await, 1);

    // A key reused for another body is still refused, without inventory.
    let mut other = body.clone();
    other["customer_email"] = json!("grace@example.com");
    let reused = app.create_order(&other, &key).await;
    problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    )
    .await;
}

#[tokio::test]
async fn when_inventory_has_lost_its_redis_the_create_answers_503_naming_inventory_and_why() {
    let mut redis = RestartableRedis::start().await;
    let inventory = TestInventory::start_with_redis(Some(&redis.url()), &[]).await;
    let app = TestApp::spawn_next_to(inventory, &[]).await;
    let body = app.order_body().await;
    redis.stop().await;

    let response = app.create_order(&body, &new_key()).await;

    let detail = inventory_unavailable(response).await;
    assert!(
        detail.contains("inventory answered 503") && detail.contains("redis"),
        "{detail}"
    );
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn when_inventory_does_not_answer_in_time_the_create_answers_503_and_says_so() {
    let redis = RestartableRedis::start().await;
    // Inventory itself waits for its Redis far longer than orders waits for it.
    let inventory =
        TestInventory::start_with_redis(Some(&redis.url()), &[("REDIS_TIMEOUT", "10s")]).await;
    let app = TestApp::spawn_next_to(inventory, &[("INVENTORY_TIMEOUT", "300ms")]).await;
    let body = app.order_body().await;
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
    let response = app.create_order(&body, &new_key()).await;

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after orders' timeout, not after the pause: {:?}",
        started.elapsed()
    );
    let detail = inventory_unavailable(response).await;
    assert!(
        detail.contains("inventory did not answer within 300ms"),
        "{detail}"
    );
    app.assert_nothing_written().await;
}
