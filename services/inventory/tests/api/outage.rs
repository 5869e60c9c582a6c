//! Redis disappears mid-test: the service gets slower, never wrong, and
//! recovers by itself.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::RestartableRedis;
use uuid::Uuid;

use crate::app::{Servers, TestApp, retry_after};

fn status_of<'a>(map: &'a Value, seat: &str) -> &'a str {
    map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seat_id"] == seat)
        .and_then(|s| s["status"].as_str())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_maps_come_from_postgres_holds_wait_and_nothing_is_sold_twice() {
    let servers = Servers::start().await;
    let mut redis = RestartableRedis::start().await;
    let app = TestApp::spawn_with_redis(&servers, &redis.url(), &[]).await;
    let concert = app.concert(3).await;
    let (_, ada_fence) = app.held(concert, "A-1", Uuid::new_v4()).await;
    let map: Value = app.seat_map(concert).await.json().await.unwrap();
    assert_eq!(status_of(&map, "A-1"), "HELD");

    redis.stop().await;

    // A seat is sold while Redis is away: the map must show it at once.
    let (_, answer) = app.sell(concert, &[("A-2", None)]).await;
    assert_eq!(answer, "SeatsConfirmed");
    let response = app.seat_map(concert).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let map: Value = response.json().await.unwrap();
    assert_eq!(map["holds"], "unknown");
    assert_eq!(status_of(&map, "A-2"), "SOLD", "served from Postgres");
    assert_eq!(status_of(&map, "A-3"), "AVAILABLE");

    let hold = app.hold(concert, "A-3", Uuid::new_v4()).await;
    assert_eq!(hold.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&hold) >= 1);
    let problem: Value = hold.json().await.unwrap();
    assert_eq!(problem["dependency"], "redis");

    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "degraded, still serving");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded");

    // Redis comes back empty: Ada's hold is gone, and Bob can take the seat.
    redis.restart().await;
    let bob = Uuid::new_v4();
    let bob_fence = app
        .hold_once_free(concert, "A-1", bob, Duration::from_secs(10))
        .await;
    assert!(
        bob_fence > ada_fence,
        "tokens come from Postgres: still increasing after Redis lost everything"
    );
    // Ada's order, made while she held the seat, loses to Bob's.
    let (_, ada_answer) = app.sell(concert, &[("A-1", Some(ada_fence))]).await;
    assert_eq!(ada_answer, "SeatAllocationRejected");
    let (bob_order, bob_answer) = app.sell(concert, &[("A-1", Some(bob_fence))]).await;
    assert_eq!(bob_answer, "SeatsConfirmed");
    assert_eq!(app.owner_of(concert, "A-1").await, Some(bob_order));

    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    let map: Value = app.seat_map(concert).await.json().await.unwrap();
    assert_eq!(map["holds"], "live");
    assert_eq!(status_of(&map, "A-1"), "SOLD");
    app.stop().await;
}

#[tokio::test]
async fn a_service_started_while_redis_is_down_serves_and_connects_later() {
    let servers = Servers::start().await;
    let mut redis = RestartableRedis::start().await;
    redis.stop().await;
    let app = TestApp::spawn_with_redis(&servers, &redis.url(), &[]).await;
    let concert = app.concert(1).await;
    let map: Value = app.seat_map(concert).await.json().await.unwrap();
    assert_eq!(map["holds"], "unknown");

    redis.restart().await;
    testkit::eventually(
        Duration::from_secs(10),
        "redis is used once it is up",
        || async { app.hold(concert, "A-1", Uuid::new_v4()).await.status() == StatusCode::CREATED },
    )
    .await;
    app.stop().await;
}
