//! A rebuild only over the whole log: it refuses, naming the first
//! sequence left, when `ORDER_EVENTS` has lost messages (expired, purged or
//! deleted), and writes nothing; told to accept a partial history, it
//! rebuilds from what is left. And `counted` is swept after the inbox's
//! retention.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use messaging::{StreamKind, Topology};
use reporting::Reporting;
use reporting::rebuild::{self, RebuildError, RebuildOptions};
use sqlx::PgPool;
use testkit::{Running, World};
use uuid::Uuid;

/// Publishes `n` order events that count for nothing (created ones).
async fn publish_order_events(js: &async_nats::jetstream::Context, topology: &Topology, n: usize) {
    for _ in 0..n {
        let envelope = serde_json::json!({
            "event_id": Uuid::new_v4(),
            "event_type": "order_created",
            "schema_version": 1,
            "aggregate_type": "order",
            "aggregate_id": Uuid::new_v4(),
            "aggregate_version": 1,
            "occurred_at": "2026-11-30T12:00:00Z",
            "producer": "orders",
            "data": {},
        });
        js.publish(
            topology.subject("orders.events.order_created"),
            envelope.to_string().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

async fn generations(db: &PgPool) -> Vec<i32> {
    sqlx::query_scalar("select generation from generations order by generation")
        .fetch_all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rebuild_refuses_a_stream_that_lost_its_first_events_unless_told_to_accept_it() {
    let world = World::start().await;
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    let (db, js, topology) = (
        reporting.lent::<PgPool>(),
        reporting.lent::<async_nats::jetstream::Context>(),
        reporting.lent::<Topology>(),
    );
    publish_order_events(js, topology, 3).await;
    let stream = js
        .get_stream(topology.stream(StreamKind::OrderEvents))
        .await
        .unwrap();
    // What expiry would do after 7 days: the first message is gone.
    stream.purge().sequence(2).await.unwrap();

    let refused = rebuild::rebuild(db, js, topology, |_, _| {}).await;

    match refused {
        Err(RebuildError::PartialHistory {
            first_sequence,
            last_sequence,
            missing,
        }) => assert_eq!((first_sequence, last_sequence, missing), (2, 3, 1)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(generations(db).await, [1], "a refusal writes nothing");

    let accepted = rebuild::rebuild_with(
        db,
        js,
        topology,
        RebuildOptions {
            accept_partial_history: true,
        },
        |_, _| {},
    )
    .await
    .unwrap();

    assert_eq!(accepted.replayed, 2, "what is left: sequences 2 and 3");
    assert_eq!(generations(db).await, [accepted.generation]);
}

#[tokio::test]
async fn a_rebuild_refuses_a_stream_with_a_deleted_message_in_the_middle() {
    let world = World::start().await;
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    let (db, js, topology) = (
        reporting.lent::<PgPool>(),
        reporting.lent::<async_nats::jetstream::Context>(),
        reporting.lent::<Topology>(),
    );
    publish_order_events(js, topology, 3).await;
    let stream = js
        .get_stream(topology.stream(StreamKind::OrderEvents))
        .await
        .unwrap();
    stream.delete_message(2).await.unwrap();

    let refused = rebuild::rebuild(db, js, topology, |_, _| {}).await;

    assert!(
        matches!(
            refused,
            Err(RebuildError::PartialHistory {
                first_sequence: 1,
                missing: 1,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_whole_stream_is_rebuilt_without_being_asked_to_accept_anything() {
    let world = World::start().await;
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    let (db, js, topology) = (
        reporting.lent::<PgPool>(),
        reporting.lent::<async_nats::jetstream::Context>(),
        reporting.lent::<Topology>(),
    );
    publish_order_events(js, topology, 3).await;

    let report = rebuild::rebuild(db, js, topology, |_, _| {}).await.unwrap();

    assert_eq!(report.replayed, 3);
}

#[tokio::test]
async fn counted_rows_go_after_the_inbox_retention_and_recent_ones_stay() {
    let world = World::start().await;
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    let db = reporting.lent::<PgPool>();
    let retention = consumer::sweeper::Retention::default().inbox;
    let day = Duration::from_hours(24);
    let (old, recent) = (Uuid::new_v4(), Uuid::new_v4());
    for (message_id, age) in [
        (old, retention + day),
        (recent, retention.checked_sub(day).unwrap()),
    ] {
        sqlx::query(
            "insert into counted (generation, message_id, counted_at) \
             values (1, $1, now() - make_interval(secs => $2))",
        )
        .bind(message_id)
        .bind(age.as_secs_f64())
        .execute(db)
        .await
        .unwrap();
    }

    let swept = rebuild::sweep_counted(db, retention, 100).await.unwrap();

    let left: Vec<Uuid> = sqlx::query_scalar("select message_id from counted")
        .fetch_all(db)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(left, [recent]);
}
