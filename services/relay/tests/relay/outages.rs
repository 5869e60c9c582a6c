//! Nothing lost, duplicated or reordered when NATS goes away or the relay
//! dies at the worst moment.

use std::sync::Arc;
use std::time::Duration;

use relay::metrics::Metrics;
use relay::publisher::{Publisher, PublisherSettings, publish_span};
use testkit::{Ask as _, RestartableNats};
use uuid::Uuid;

use crate::{Outbox, assert_once_each_in_order};

#[tokio::test]
async fn events_written_while_nats_is_down_are_published_once_in_order_after_it_returns() {
    let mut nats = RestartableNats::start().await;
    let outbox = Outbox::on_nats(&nats.url()).await;
    let mut relay = outbox.relay(&[]).await;
    let aggregates: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();

    for aggregate in &aggregates {
        outbox.write_event(*aggregate, 1).await;
    }
    outbox.drained(Duration::from_secs(20)).await;

    nats.stop().await;
    for version in 2..=4 {
        for aggregate in &aggregates {
            outbox.write_event(*aggregate, version).await;
        }
    }
    testkit::eventually(
        Duration::from_secs(10),
        "the relay reports not ready",
        || async { relay.get("/readyz").answer().await.status == 503 },
    )
    .await;
    // Several seconds of outage, with the relay retrying against nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        outbox.unpublished().await,
        30,
        "nothing is marked while NATS is down"
    );

    nats.restart().await;
    outbox.drained(Duration::from_secs(30)).await;
    assert_once_each_in_order(&outbox.stream().await, 40);
    testkit::eventually(
        Duration::from_secs(10),
        "the relay is ready again",
        || async { relay.get("/readyz").answer().await.status == 200 },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_that_died_after_the_puback_but_before_marking_causes_no_duplicate() {
    let outbox = Outbox::start().await;
    let event = outbox.write_event(Uuid::new_v4(), 1).await;

    // Reproduce the crash: claim, publish, receive the PubAck, and roll
    // back instead of marking, as a process killed at that point would.
    let client = outbox.world.nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    messaging::provision(&js, &outbox.topology, Duration::from_mins(10))
        .await
        .unwrap();
    let publisher = Publisher::new(
        outbox.db.clone(),
        client,
        js,
        PublisherSettings {
            topology: outbox.topology.clone(),
            batch_size: 10,
            max_attempts: 3,
            after_publish: relay::store::AfterPublish::Delete,
        },
        Arc::new(Metrics::default()),
    );
    let mut tx = outbox.db.begin().await.unwrap();
    let rows = relay::store::claim(&mut tx, 10).await.unwrap();
    let span = publish_span(&outbox.topology, &rows[0]);
    let ack = publisher
        .publish(&rows[0], &span)
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!ack.duplicate);
    drop(tx);
    assert_eq!(
        outbox.unpublished().await,
        1,
        "the crash left the row unmarked"
    );

    let mut relay = outbox.relay(&[]).await;
    outbox.drained(Duration::from_secs(10)).await;

    let stored = outbox.stream().await;
    assert_eq!(stored.len(), 1, "JetStream dropped the republish");
    assert_eq!(stored[0].event_id, event);
    assert_eq!(
        relay.lent::<Arc<Metrics>>().snapshot().duplicates,
        1,
        "the PubAck said duplicate"
    );
    relay.stop().await;
}
