//! Nothing lost, duplicated or reordered when NATS goes away or the relay
//! dies at the worst moment.

use std::sync::Arc;
use std::time::Duration;

use relay::metrics::Metrics;
use relay::publisher::{Publisher, PublisherSettings, publish_span};
use testkit::{RestartableNats, TestNats};
use uuid::Uuid;

use crate::{World, assert_once_each_in_order};

#[tokio::test]
async fn events_written_while_nats_is_down_are_published_once_in_order_after_it_returns() {
    let mut nats = RestartableNats::start().await;
    let world = Arc::new(World::new(&nats.url(), "outage").await);
    let relay = world.spawn_relay(&[]).await;
    let aggregates: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();

    for aggregate in &aggregates {
        world.write_event(*aggregate, 1).await;
    }
    world.drained(Duration::from_secs(20)).await;

    nats.stop().await;
    for version in 2..=4 {
        for aggregate in &aggregates {
            world.write_event(*aggregate, version).await;
        }
    }
    testkit::eventually(
        Duration::from_secs(10),
        "the relay reports not ready",
        || async { relay.get("/readyz").await.0 == 503 },
    )
    .await;
    // Several seconds of outage, with the relay retrying against nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        world.unpublished().await,
        30,
        "nothing is marked while NATS is down"
    );

    nats.restart().await;
    world.drained(Duration::from_secs(30)).await;
    assert_once_each_in_order(&world.stream().await, 40);
    testkit::eventually(
        Duration::from_secs(10),
        "the relay is ready again",
        || async { relay.get("/readyz").await.0 == 200 },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_that_died_after_the_puback_but_before_marking_causes_no_duplicate() {
    let nats = TestNats::start().await;
    let world = World::new(nats.url(), nats.prefix()).await;
    let event = world.write_event(Uuid::new_v4(), 1).await;

    // Reproduce the crash: claim, publish, receive the PubAck, and roll
    // back instead of marking, as a process killed at that point would.
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    messaging::provision(&js, &world.topology, Duration::from_mins(10))
        .await
        .unwrap();
    let publisher = Publisher::new(
        world.db.clone(),
        client,
        js,
        PublisherSettings {
            topology: world.topology.clone(),
            batch_size: 10,
            max_attempts: 3,
            after_publish: relay::store::AfterPublish::Delete,
        },
        Arc::new(Metrics::default()),
    );
    let mut tx = world.db.begin().await.unwrap();
    let rows = relay::store::claim(&mut tx, 10).await.unwrap();
    let span = publish_span(&world.topology, &rows[0]);
    let ack = publisher
        .publish(&rows[0], &span)
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!ack.duplicate);
    drop(tx);
    assert_eq!(
        world.unpublished().await,
        1,
        "the crash left the row unmarked"
    );

    let relay = world.spawn_relay(&[]).await;
    world.drained(Duration::from_secs(10)).await;

    let stored = world.stream().await;
    assert_eq!(stored.len(), 1, "JetStream dropped the republish");
    assert_eq!(stored[0].event_id, event);
    assert_eq!(
        relay.metrics.snapshot().duplicates,
        1,
        "the PubAck said duplicate"
    );
    relay.stop().await;
}
