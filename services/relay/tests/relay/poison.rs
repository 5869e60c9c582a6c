//! A row that cannot be published is parked after its attempts and holds
//! back only later events of its own aggregate.

use std::time::Duration;

use testkit::Ask as _;
use uuid::Uuid;

use crate::Outbox;

#[tokio::test]
async fn a_row_larger_than_the_server_allows_is_parked_without_blocking_other_aggregates() {
    let outbox = Outbox::start().await;
    let mut relay = outbox.relay(&[("RELAY_MAX_ATTEMPTS", "3")]).await;
    let (poisoned, healthy) = (Uuid::new_v4(), Uuid::new_v4());

    // nats-server's default max_payload is 1 MiB.
    let mut tx = outbox.db.begin().await.unwrap();
    let huge = format!("{}@example.com", "x".repeat(2 * 1024 * 1024));
    outbox.write_event_in(&mut tx, poisoned, 1, &huge).await;
    tx.commit().await.unwrap();
    outbox.write_event(poisoned, 2).await;
    outbox.write_event(healthy, 1).await;
    outbox.write_event(healthy, 2).await;

    testkit::eventually(
        Duration::from_secs(20),
        "the huge row is parked",
        || async {
            let parked: i64 =
                sqlx::query_scalar("select count(*) from outbox where parked_at is not null")
                    .fetch_one(&outbox.db)
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
            outbox
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
            .fetch_one(&outbox.db)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    assert!(
        error.unwrap().contains("payload"),
        "the error is kept for a human"
    );
    assert!(
        outbox
            .stream()
            .await
            .iter()
            .all(|s| s.aggregate_id != poisoned),
        "version 2 of the poisoned aggregate must wait behind the parked version 1"
    );
    let parked_event: uuid::Uuid =
        sqlx::query_scalar("select event_id from outbox where parked_at is not null")
            .fetch_one(&outbox.db)
            .await
            .unwrap();
    let metrics = relay.get("/metrics").answer().await.text;
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
    assert!(
        relay::store::unpark(&outbox.db, parked_event)
            .await
            .unwrap()
    );
    assert!(
        !relay::store::unpark(&outbox.db, parked_event)
            .await
            .unwrap(),
        "no longer parked"
    );
    let back_in_line: bool = sqlx::query_scalar(
        "select parked_at is null and attempts = 0 and next_attempt_at is null \
         from outbox where event_id = $1",
    )
    .bind(parked_event)
    .fetch_one(&outbox.db)
    .await
    .unwrap();
    assert!(back_in_line);
}
