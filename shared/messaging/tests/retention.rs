//! The streams' retention decisions (`topology` module docs) on a real
//! JetStream: commands and dead letters never expire and are refused when
//! full, rather than pushing the oldest out; and provisioning brings
//! streams created by older code to these settings.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use messaging::{StreamKind, Topology};
use testkit::TestNats;

const WINDOW: Duration = Duration::from_mins(2);

/// The stream as the code before this decision created it: an age limit,
/// and the oldest message discarded when a limit is reached.
fn as_created_before(topology: &Topology, kind: StreamKind, retention: RetentionPolicy) -> Config {
    Config {
        max_age: Duration::from_hours(7 * 24),
        discard: DiscardPolicy::Old,
        max_messages: -1,
        retention,
        ..topology.stream_config(kind, WINDOW)
    }
}

#[tokio::test]
async fn provisioning_takes_the_expiry_off_existing_commands_and_dead_letters() {
    let nats = TestNats::start().await;
    let js = nats.jetstream().await;
    let topology = Topology::new(nats.prefix()).unwrap();
    js.create_stream(as_created_before(
        &topology,
        StreamKind::NotifyCommands,
        RetentionPolicy::WorkQueue,
    ))
    .await
    .unwrap();
    let mut dead_letters =
        as_created_before(&topology, StreamKind::DeadLetters, RetentionPolicy::Limits);
    // An operator's own limit on the dead letters, which provisioning keeps.
    dead_letters.max_messages = 500;
    js.create_stream(dead_letters).await.unwrap();

    messaging::provision(&js, &topology, WINDOW).await.unwrap();

    let info = |kind| {
        let js = js.clone();
        let name = topology.stream(kind);
        async move {
            js.get_stream(name)
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .config
                .clone()
        }
    };
    let commands = info(StreamKind::NotifyCommands).await;
    assert_eq!(
        commands.max_age,
        Duration::ZERO,
        "commands no longer expire"
    );
    assert_eq!(commands.discard, DiscardPolicy::New);
    assert_eq!(
        commands.max_messages, 1_000_000,
        "the bound that replaces the expiry"
    );
    assert_eq!(commands.storage, StorageType::File);
    let letters = info(StreamKind::DeadLetters).await;
    assert_eq!(
        letters.max_age,
        Duration::ZERO,
        "dead letters no longer expire"
    );
    assert_eq!(letters.discard, DiscardPolicy::New);
    assert_eq!(letters.max_messages, 500, "the operator's limit is kept");
    let events = info(StreamKind::OrderEvents).await;
    assert_eq!(events.max_age, Duration::from_hours(7 * 24));
}

#[tokio::test]
async fn a_full_dead_letter_stream_refuses_the_next_letter_and_keeps_the_first() {
    let nats = TestNats::start().await;
    let js = nats.jetstream().await;
    let topology = Topology::new(nats.prefix()).unwrap();
    messaging::provision(&js, &topology, WINDOW).await.unwrap();
    let name = topology.stream(StreamKind::DeadLetters);
    let mut small = js
        .get_stream(&name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    small.max_messages = 2;
    js.update_stream(&small).await.unwrap();
    let subject = topology.subject("dlq.order_events.inventory");
    let publish = |body: &'static str| {
        let (js, subject) = (js.clone(), subject.clone());
        async move { js.publish(subject, body.into()).await?.await }
    };

    publish("first").await.unwrap();
    publish("second").await.unwrap();
    let third = publish("third").await;

    assert!(third.is_err(), "a full stream must refuse: {third:?}");
    let stream = js.get_stream(&name).await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(&first.payload[..], b"first", "nothing was pushed out");
}
