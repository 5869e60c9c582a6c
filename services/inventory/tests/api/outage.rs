//! Redis disappears mid-test: the service gets slower, never wrong, and
//! recovers by itself.

use std::time::Duration;

use reqwest::StatusCode;
use testkit::{Ask as _, RestartableRedis, World};
use uuid::Uuid;

use crate::support::{Steps as _, retry_after, start, status_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_maps_come_from_postgres_holds_wait_and_nothing_is_sold_twice() {
    let world = World::start().await;
    let mut redis = RestartableRedis::start().await;
    let inventory = start(&world, &[("REDIS_URL", &redis.url())]).await;
    let concert = world.concert(&inventory, 3).await;
    let (_, ada_fence) = inventory.held(&world, concert, "A-1", Uuid::new_v4()).await;
    let map = inventory.seat_map(concert).await.body;
    assert_eq!(status_of(&map, "A-1"), "HELD");

    redis.stop().await;

    // A seat is sold while Redis is away: the map must show it at once.
    let (_, answer) = inventory.sell(concert, &[("A-2", None)]).await;
    assert_eq!(answer, "SeatsConfirmed");
    let map = inventory.seat_map(concert).await;
    assert_eq!(map.status, StatusCode::OK);
    assert_eq!(map.headers["cache-control"], "no-cache");
    assert_eq!(map.body["holds"], "unknown");
    assert_eq!(status_of(&map.body, "A-2"), "SOLD", "served from Postgres");
    assert_eq!(status_of(&map.body, "A-3"), "AVAILABLE");

    let hold = inventory.hold(&world, concert, "A-3", Uuid::new_v4()).await;
    assert_eq!(hold.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&hold) >= 1);
    assert_eq!(hold.body["dependency"], "redis");

    let ready = inventory.get("/readyz").answer().await;
    assert_eq!(ready.status, StatusCode::OK, "degraded, still serving");
    assert_eq!(ready.body["status"], "degraded");

    // Redis comes back empty: Ada's hold is gone, and Bob can take the seat.
    redis.restart().await;
    let bob = Uuid::new_v4();
    let bob_fence = inventory
        .hold_once_free(&world, concert, "A-1", bob, Duration::from_secs(10))
        .await;
    assert!(
        bob_fence > ada_fence,
        "tokens come from Postgres: still increasing after Redis lost everything"
    );
    // Ada's order, made while she held the seat, loses to Bob's.
    let (_, ada_answer) = inventory.sell(concert, &[("A-1", Some(ada_fence))]).await;
    assert_eq!(ada_answer, "SeatAllocationRejected");
    let (bob_order, bob_answer) = inventory.sell(concert, &[("A-1", Some(bob_fence))]).await;
    assert_eq!(bob_answer, "SeatsConfirmed");
    assert_eq!(inventory.owner_of(concert, "A-1").await, Some(bob_order));

    let ready = inventory.get("/readyz").answer().await;
    assert_eq!(ready.body["status"], "ready");
    let map = inventory.seat_map(concert).await.body;
    assert_eq!(map["holds"], "live");
    assert_eq!(status_of(&map, "A-1"), "SOLD");
}

#[tokio::test]
async fn a_service_started_while_redis_is_down_serves_and_connects_later() {
    let world = World::start().await;
    let mut redis = RestartableRedis::start().await;
    redis.stop().await;
    let inventory = start(&world, &[("REDIS_URL", &redis.url())]).await;
    let concert = world.concert(&inventory, 1).await;
    let map = inventory.seat_map(concert).await;
    assert_eq!(map.body["holds"], "unknown");

    redis.restart().await;
    testkit::eventually(
        Duration::from_secs(10),
        "redis is used once it is up",
        || async {
            inventory
                .hold(&world, concert, "A-1", Uuid::new_v4())
                .await
                .status
                == StatusCode::CREATED
        },
    )
    .await;
}
