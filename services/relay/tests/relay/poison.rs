//! A row that cannot be published is parked after its attempts and holds
//! back only later events of its own aggregate.

use std::time::Duration;

use testkit::TestNats;
use uuid::Uuid;

use crate::World;

#[tokio::test]
async fn a_row_larger_than_the_server_allows_is_parked_without_blocking_other_aggregates() {
    let nats = TestNats::start().await;
    let world = World::new(nats.url(), nats.prefix()).await;
    let relay = world.spawn_relay(&[("RELAY_MAX_ATTEMPTS", "3")]).await;
    let (poisoned, healthy) = (Uuid::new_v4(), Uuid::new_v4());

    // nats-server's default max_payload is 1 MiB.
    let mut tx = world.db.begin().await.unwrap();
    let huge = format!("{}@example.com", "x".repeat(2 * 1024 * 1024));
    world.write_event_in(&mut tx, poisoned, 1, &huge).await;
    tx.commit().await.unwrap();
    world.write_event(poisoned, 2).await;
    world.write_event(healthy, 1).await;
    world.write_event(healthy, 2).await;

    testkit::eventually(
        Duration::from_secs(20),
        "the huge row is parked",
        || async {
            let parked: i64 =
                sqlx::query_scalar("select count(*) from outbox where parked_at is not null")
                    .fetch_one(&world.db)
                    .await
                    .unwrap();
            parked == 1
        },
    )
    .await;
    testkit::eventually(
        Duration::from_secs(10),
        "the healthy aggregate is published",
        || async {
            world
                .stream()
                .await
                .iter()
                .filter(|s| s.aggregate_id == healthy)
                .count()
                == 2
        },
    )
    .await;

    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("select attempts, last_error from outbox where aggregate_version = 1 and parked_at is not null")
            .fetch_one(&world.db)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    assert!(
        error.unwrap().contains("payload"),
        "the error is kept for a human"
    );
    assert!(
        world
            .stream()
            .await
            .iter()
            .all(|s| s.aggregate_id != poisoned),
        "version 2 of the poisoned aggregate must wait behind the parked version 1"
    );
    let parked_event: uuid::Uuid =
        sqlx::query_scalar("select event_id from outbox where parked_at is not null")
            .fetch_one(&world.db)
            .await
            .unwrap();
    let (_, metrics) = relay.get("/metrics").await;
    assert!(
        metrics.contains("relay_parked_rows{source=\"test\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_backlog{source=\"test\"} 1"),
        "{metrics}"
    );

    // An operator fixes the cause and puts the row back in line.
    relay.stop().await;
    assert!(relay::store::unpark(&world.db, parked_event).await.unwrap());
    assert!(
        !relay::store::unpark(&world.db, parked_event).await.unwrap(),
        "no longer parked"
    );
    let back_in_line: bool = sqlx::query_scalar(
        "select parked_at is null and attempts = 0 and next_attempt_at is null \
         from outbox where event_id = $1",
    )
    .bind(parked_event)
    .fetch_one(&world.db)
    .await
    .unwrap();
    assert!(back_in_line);
}
