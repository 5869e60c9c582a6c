//! The consumer runtime against a real Postgres and a real JetStream:
//! duplicates, crashes between commit and ack, out-of-order delivery,
//! transient failures, poison messages, dead letters and redrive.
//!
//! Long because each guarantee of the runtime gets its own test here, each
//! against real servers; the set-up they share is at the top.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use consumer::dlq;
use consumer::runtime::ConsumerMetrics;
use consumer::{Consumer, ConsumerSpec, Decision, Delivery, Handler, HandlerError, Outcome};
use contracts::{Envelope, MessageId};
use futures::StreamExt as _;
use messaging::{StreamKind, Topology};
use sqlx::{PgConnection, PgPool};
use testkit::{TestNats, TestPostgres, eventually};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/orders");

/// Records every applied event in `effects`. `data.poison` events are
/// poison until a row exists in `fixed`; `data.fail_times = n` events fail
/// transiently on their first n deliveries; `data.slow_ms = n` events take
/// n ms inside their transaction. `busy` counts the handlers running at
/// once (clones share it).
#[derive(Clone, Default)]
struct RecordingHandler {
    busy: Arc<Busy>,
}

/// Handlers running now, and the most that ever ran at once.
#[derive(Default)]
struct Busy {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Busy {
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

impl Handler for RecordingHandler {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        let running = self.busy.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.busy.most.fetch_max(running, Ordering::SeqCst);
        let result = Self::apply(tx, delivery).await;
        self.busy.now.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl RecordingHandler {
    async fn apply(tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        let data = &delivery.envelope.data;
        if let Some(ms) = data["slow_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if data["poison"] == true {
            let fixed: bool = sqlx::query_scalar("select exists(select 1 from fixed)")
                .fetch_one(&mut *tx)
                .await?;
            if !fixed {
                return Err(HandlerError::Poison(
                    "this event cannot be applied yet".into(),
                ));
            }
        }
        if data["fail_times"]
            .as_i64()
            .is_some_and(|n| delivery.delivered <= n)
        {
            return Err(HandlerError::Transient("the database blinked".into()));
        }
        if data["busy_times"]
            .as_i64()
            .is_some_and(|n| delivery.delivered <= n)
        {
            return Err(HandlerError::Busy {
                reason: "another worker has it".into(),
                retry_in: Duration::from_millis(50),
            });
        }
        sqlx::query("insert into effects (event_id, aggregate_id, version) values ($1, $2, $3)")
            .bind(delivery.envelope.event_id.0)
            .bind(delivery.envelope.aggregate_id)
            .bind(delivery.envelope.aggregate_version)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A consumer running in the background, stopped when this is dropped:
/// at the end of the test, or earlier where a test drops it on purpose.
#[must_use = "dropping it stops the consumer at once"]
struct Consuming {
    metrics: Arc<ConsumerMetrics>,
    _stop: DropGuard,
}

struct World {
    db: PgPool,
    /// The handler of every consumer the world starts (they share its
    /// `busy` count).
    handler: RecordingHandler,
    js: async_nats::jetstream::Context,
    topology: Topology,
    _postgres: TestPostgres,
    _nats: TestNats,
}

impl World {
    async fn new() -> Self {
        let postgres = TestPostgres::start().await;
        let db = PgPool::connect(postgres.url()).await.unwrap();
        MIGRATOR.run(&db).await.unwrap();
        sqlx::raw_sql(
            "create table effects (seq bigserial primary key, event_id uuid not null, \
             aggregate_id uuid not null, version bigint not null); \
             create table fixed (ok boolean);",
        )
        .execute(&db)
        .await
        .unwrap();
        let nats = TestNats::start().await;
        let js = async_nats::jetstream::new(nats.client().await);
        let topology = Topology::new(nats.prefix()).unwrap();
        messaging::provision(&js, &topology, Duration::from_mins(2))
            .await
            .unwrap();
        Self {
            db,
            handler: RecordingHandler::default(),
            js,
            topology,
            _postgres: postgres,
            _nats: nats,
        }
    }

    fn spec() -> ConsumerSpec {
        ConsumerSpec {
            ack_wait: Duration::from_secs(1),
            max_deliver: 4,
            retry_delays: vec![Duration::from_millis(100)],
            gap_delay: Duration::from_millis(100),
            gap_timeout: Duration::from_secs(30),
            ..ConsumerSpec::new("recorder", StreamKind::OrderEvents)
        }
    }

    fn consumer(&self, spec: ConsumerSpec) -> Consumer<RecordingHandler> {
        self.consumer_on(self.db.clone(), spec)
    }

    /// A consumer on `db`, which need not be the world's database.
    fn consumer_on(&self, db: PgPool, spec: ConsumerSpec) -> Consumer<RecordingHandler> {
        Consumer::new(
            spec,
            db,
            self.js.clone(),
            self.topology.clone(),
            self.handler.clone(),
        )
    }

    /// Runs a consumer on the world's database in the background.
    fn run(&self, spec: ConsumerSpec) -> Consuming {
        Self::start(self.consumer(spec))
    }

    /// Runs `consumer` in the background until the result is dropped.
    fn start(consumer: Consumer<RecordingHandler>) -> Consuming {
        let shutdown = CancellationToken::new();
        let metrics = consumer.metrics();
        let token = shutdown.clone();
        tokio::spawn(async move { consumer.run(token).await });
        Consuming {
            metrics,
            _stop: shutdown.drop_guard(),
        }
    }

    /// An envelope for `aggregate` at `version` with `data`.
    fn envelope(
        aggregate: Uuid,
        version: i64,
        data: serde_json::Value,
    ) -> Envelope<serde_json::Value> {
        Envelope {
            event_id: MessageId::new(),
            event_type: "TestHappened".into(),
            schema_version: 1,
            aggregate_type: "order".into(),
            aggregate_id: aggregate,
            aggregate_version: version,
            occurred_at: chrono::Utc::now(),
            producer: "test".into(),
            data,
        }
    }

    /// Publishes raw bytes with its own `Nats-Msg-Id`.
    async fn publish_bytes(&self, payload: Vec<u8>, msg_id: &str) {
        self.publish_bytes_on("orders.events.test_happened", payload, msg_id)
            .await;
    }

    /// Publishes raw bytes on `subject` (without the prefix) with its own
    /// `Nats-Msg-Id`.
    async fn publish_bytes_on(&self, subject: &str, payload: Vec<u8>, msg_id: &str) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(messaging::headers::MSG_ID, msg_id);
        self.js
            .send_publish(
                self.topology.subject(subject),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn publish(&self, envelope: &Envelope<serde_json::Value>) {
        self.publish_bytes(
            serde_json::to_vec(envelope).unwrap(),
            &envelope.event_id.to_string(),
        )
        .await;
    }

    /// Publishes a new event for `aggregate` at `version` with `data`;
    /// returns it.
    async fn publish_event(
        &self,
        aggregate: Uuid,
        version: i64,
        data: serde_json::Value,
    ) -> Envelope<serde_json::Value> {
        let envelope = Self::envelope(aggregate, version, data);
        self.publish(&envelope).await;
        envelope
    }

    /// `(aggregate, version)` of every effect, in the order applied.
    async fn effects(&self) -> Vec<(Uuid, i64)> {
        sqlx::query_as("select aggregate_id, version from effects order by seq")
            .fetch_all(&self.db)
            .await
            .unwrap()
    }

    /// The versions of every effect, in the order applied.
    async fn versions(&self) -> Vec<i64> {
        self.effects().await.into_iter().map(|(_, v)| v).collect()
    }

    async fn dead_letters(&self) -> Vec<dlq::DeadLetter> {
        dlq::list(&self.js, &self.topology).await.unwrap()
    }

    /// Waits up to `within` until exactly `count` effects are recorded.
    async fn wait_for_effects(&self, count: usize, within: Duration) {
        eventually(
            within,
            &format!("{count} effect(s) are recorded"),
            || async { self.effects().await.len() == count },
        )
        .await;
    }

    /// Waits up to 10 s until exactly `count` dead letters are stored.
    async fn wait_for_dead_letters(&self, count: usize) {
        eventually(
            Duration::from_secs(10),
            &format!("{count} message(s) are dead-lettered"),
            || async { self.dead_letters().await.len() == count },
        )
        .await;
    }
}

#[tokio::test]
async fn an_event_delivered_twice_has_one_effect() {
    let world = World::new().await;
    // The second copy has another message id, as a republish after the
    // stream's duplicate window would: JetStream stores both.
    let event = world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({}))
        .await;
    world
        .publish_bytes(serde_json::to_vec(&event).unwrap(), "republished-later")
        .await;

    let running = world.run(World::spec());
    eventually(
        Duration::from_secs(10),
        "both copies are settled",
        || async {
            let counts = running.metrics.snapshot();
            counts.applied + counts.duplicates + counts.stale == 2
        },
    )
    .await;

    assert_eq!(world.effects().await.len(), 1);
    let counts = running.metrics.snapshot();
    assert_eq!(
        (counts.duplicates, counts.stale),
        (1, 0),
        "the inbox, not only the position, recognised the copy"
    );
}

#[tokio::test]
async fn a_consumer_killed_after_its_commit_but_before_the_ack_applies_the_event_once() {
    let world = World::new().await;
    world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({}))
        .await;
    let dying = world.consumer(World::spec());

    // The first instance commits the effect and dies before acking.
    let pull = dying.ensure().await.unwrap();
    let mut batch = pull.fetch().max_messages(1).messages().await.unwrap();
    let message = batch.next().await.unwrap().unwrap();
    assert_eq!(
        dying.decide(&message).await,
        Decision::Ack(Outcome::Applied)
    );
    drop(message);

    // JetStream redelivers after ack_wait (1 s) to the next instance.
    let running = world.run(World::spec());
    eventually(
        Duration::from_secs(10),
        "the redelivery is settled",
        || async { running.metrics.snapshot().duplicates == 1 },
    )
    .await;

    assert_eq!(
        world.effects().await.len(),
        1,
        "one effect despite two deliveries"
    );
}

#[tokio::test]
async fn events_of_one_aggregate_published_out_of_order_are_applied_in_order() {
    let world = World::new().await;
    let aggregate = Uuid::new_v4();
    for version in [2, 3, 1] {
        world
            .publish_event(aggregate, version, serde_json::json!({}))
            .await;
    }

    let _running = world.run(World::spec());
    world.wait_for_effects(3, Duration::from_secs(10)).await;

    assert_eq!(world.versions().await, [1, 2, 3]);
}

#[tokio::test]
async fn a_transient_failure_is_retried_until_it_succeeds() {
    let world = World::new().await;
    world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({ "fail_times": 2 }))
        .await;

    let running = world.run(World::spec());
    world.wait_for_effects(1, Duration::from_secs(10)).await;

    // The effect commits before the message is acked and counted: wait for
    // the count, then check all of them.
    eventually(Duration::from_secs(5), "the message is settled", || async {
        running.metrics.snapshot().applied == 1
    })
    .await;
    let counts = running.metrics.snapshot();
    assert_eq!(
        (counts.applied, counts.retried, counts.dead_lettered),
        (1, 2, 0)
    );
}

#[tokio::test]
async fn a_busy_message_waits_past_max_deliver_without_being_dead_lettered() {
    let world = World::new().await;
    // Twice the four deliveries `World::spec` allows before a dead letter.
    world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({ "busy_times": 8 }))
        .await;

    let consuming = world.run(World::spec());
    world.wait_for_effects(1, Duration::from_secs(15)).await;
    assert!(world.dead_letters().await.is_empty());
    let counts = consuming.metrics.snapshot();
    assert_eq!(counts.retried, 8, "{counts:?}");
    assert_eq!(counts.dead_lettered, 0, "{counts:?}");
}

#[tokio::test]
async fn a_failure_on_the_last_allowed_delivery_is_dead_lettered() {
    let world = World::new().await;
    world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({ "fail_times": 99 }))
        .await;

    let _running = world.run(World::spec());
    world.wait_for_dead_letters(1).await;

    let letter = &world.dead_letters().await[0];
    assert!(
        letter.error.contains("gave up after 4 deliveries"),
        "{letter:?}"
    );
    assert_eq!(letter.delivery_count, "4");
    assert!(world.effects().await.is_empty());
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_while_others_flow_and_applies_once_after_redrive() {
    let world = World::new().await;
    let (poisoned, healthy) = (Uuid::new_v4(), Uuid::new_v4());
    let poison = world
        .publish_event(poisoned, 1, serde_json::json!({ "poison": true }))
        .await;
    for version in 1..=3 {
        world
            .publish_event(healthy, version, serde_json::json!({}))
            .await;
    }

    let _running = world.run(World::spec());
    eventually(
        Duration::from_secs(10),
        "the poison is dead-lettered and the rest applied",
        || async { world.dead_letters().await.len() == 1 && world.effects().await.len() == 3 },
    )
    .await;
    let letter = world.dead_letters().await.remove(0);
    assert_eq!(letter.consumer, "recorder");
    assert_eq!(letter.event_id, poison.event_id.to_string());
    assert!(letter.error.contains("cannot be applied"), "{letter:?}");
    assert!(
        letter
            .original_subject
            .ends_with("orders.events.test_happened")
    );

    // Fix the cause, then redrive.
    sqlx::query("insert into fixed values (true)")
        .execute(&world.db)
        .await
        .unwrap();
    dlq::redrive(&world.js, &world.topology, letter.sequence)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the redriven event is applied",
        || async { world.effects().await.iter().any(|(a, _)| *a == poisoned) },
    )
    .await;

    assert!(
        world.dead_letters().await.is_empty(),
        "redrive removes the dead letter"
    );
    assert!(matches!(
        dlq::redrive(&world.js, &world.topology, letter.sequence).await,
        Err(dlq::DlqError::NotFound(_))
    ));
    let applied_poison = world
        .effects()
        .await
        .iter()
        .filter(|(a, _)| *a == poisoned)
        .count();
    assert_eq!(applied_poison, 1);
}

#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_at_once() {
    let world = World::new().await;
    world
        .publish_bytes(b"not an envelope".to_vec(), "garbage-1")
        .await;

    let running = world.run(World::spec());
    world.wait_for_dead_letters(1).await;

    assert!(world.dead_letters().await[0].error.contains("undecodable"));
    assert_eq!(
        running.metrics.snapshot().retried,
        0,
        "not retried: it can never succeed"
    );
}

#[tokio::test]
async fn a_later_version_waits_for_an_earlier_one_on_its_retries_instead_of_being_dead_lettered() {
    let world = World::new().await;
    let aggregate = Uuid::new_v4();
    // Version 1 fails three times before it succeeds; version 2 keeps
    // arriving first meanwhile, far more often than max_deliver (4).
    world
        .publish_event(aggregate, 1, serde_json::json!({ "fail_times": 3 }))
        .await;
    world
        .publish_event(aggregate, 2, serde_json::json!({}))
        .await;
    let spec = ConsumerSpec {
        retry_delays: vec![Duration::from_millis(300), Duration::from_millis(600)],
        gap_delay: Duration::from_millis(50),
        ..World::spec()
    };

    let _running = world.run(spec);
    world.wait_for_effects(2, Duration::from_secs(15)).await;

    assert!(world.dead_letters().await.is_empty());
    assert_eq!(world.versions().await, [1, 2]);
}

#[tokio::test]
async fn a_backlog_older_than_the_gap_timeout_drains_in_order_without_dead_letters() {
    let world = World::new().await;
    let aggregate = Uuid::new_v4();
    // The consumer was down: both versions wait in the stream, published
    // longer ago than the gap timeout. Version 1 then fails once.
    world
        .publish_event(aggregate, 1, serde_json::json!({ "fail_times": 1 }))
        .await;
    world
        .publish_event(aggregate, 2, serde_json::json!({}))
        .await;
    let gap_timeout = Duration::from_secs(1);
    tokio::time::sleep(gap_timeout * 2).await;
    let spec = ConsumerSpec {
        gap_timeout,
        retry_delays: vec![Duration::from_millis(300)],
        gap_delay: Duration::from_millis(50),
        ..World::spec()
    };

    let _running = world.run(spec);
    world.wait_for_effects(2, Duration::from_secs(10)).await;

    // The gap's wait is counted from when the consumer first met it, not
    // from when version 2 was published.
    assert!(world.dead_letters().await.is_empty());
    assert_eq!(world.versions().await, [1, 2]);
}

#[tokio::test]
async fn a_gap_that_never_fills_is_dead_lettered_once_the_consumer_has_waited_out_the_timeout() {
    let world = World::new().await;
    let aggregate = Uuid::new_v4();
    // Version 1 never comes.
    world
        .publish_event(aggregate, 2, serde_json::json!({}))
        .await;
    let spec = ConsumerSpec {
        gap_timeout: Duration::from_secs(1),
        gap_delay: Duration::from_millis(100),
        ..World::spec()
    };
    let started = std::time::Instant::now();

    let _running = world.run(spec);
    world.wait_for_dead_letters(1).await;

    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the consumer has waited the timeout itself"
    );
    assert!(world.dead_letters().await[0].error.contains("gap"));
    assert!(world.effects().await.is_empty());
}

#[tokio::test]
async fn every_bad_message_gets_its_own_dead_letter_even_without_a_message_id() {
    let world = World::new().await;
    for payload in [b"first".to_vec(), b"second".to_vec()] {
        world
            .js
            .publish(
                world.topology.subject("orders.events.test_happened"),
                payload.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let _running = world.run(World::spec());
    world.wait_for_dead_letters(2).await;
}

#[tokio::test]
async fn an_unreachable_database_defers_messages_without_dead_lettering_them() {
    let world = World::new().await;
    world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({}))
        .await;
    // A pool that points at a port where nothing listens: every attempt is
    // an "unavailable" error, never the message's fault.
    let dead_pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .unwrap();
    let outage = World::start(world.consumer_on(dead_pool, World::spec()));

    // Well past max_deliver (4) attempts.
    eventually(Duration::from_secs(20), "six deferrals", || async {
        outage.metrics.snapshot().retried >= 6
    })
    .await;
    drop(outage);

    assert!(
        world.dead_letters().await.is_empty(),
        "an outage is not poison"
    );
    // Back with a working database, the same durable applies it.
    let _running = world.run(World::spec());
    world.wait_for_effects(1, Duration::from_secs(15)).await;
}

/// `aggregates` new aggregates, versions `1..=versions` of each published
/// interleaved as a sale publishes them (every aggregate's version 1, then
/// every version 2, …), each with `data`; returns the aggregates.
async fn publish_interleaved(
    world: &World,
    aggregates: usize,
    versions: i64,
    data: impl Fn(i64) -> serde_json::Value,
) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..aggregates).map(|_| Uuid::new_v4()).collect();
    for version in 1..=versions {
        for &id in &ids {
            world.publish_event(id, version, data(version)).await;
        }
    }
    ids
}

/// The test spec with 4 lanes, and an ack wait long enough that no message
/// queued in a lane is redelivered while it waits its turn.
fn laned() -> ConsumerSpec {
    ConsumerSpec {
        lanes: 4,
        ack_wait: Duration::from_secs(10),
        ..World::spec()
    }
}

/// Asserts that each of `aggregates` had versions `1..=versions` applied,
/// each once, in order.
async fn assert_each_in_order(world: &World, aggregates: &[Uuid], versions: i64) {
    let effects = world.effects().await;
    for id in aggregates {
        let applied: Vec<i64> = effects
            .iter()
            .filter(|(aggregate, _)| aggregate == id)
            .map(|(_, version)| *version)
            .collect();
        assert_eq!(applied, (1..=versions).collect::<Vec<_>>(), "{id}");
    }
}

#[tokio::test]
async fn lanes_apply_aggregates_in_parallel_and_each_aggregate_in_order() {
    let world = World::new().await;
    let aggregates =
        publish_interleaved(&world, 8, 4, |_| serde_json::json!({"slow_ms": 30})).await;
    let consuming = world.run(laned());

    world.wait_for_effects(32, Duration::from_secs(30)).await;
    assert_each_in_order(&world, &aggregates, 4).await;
    // A version that met its predecessor still in flight (in another lane)
    // would have been nak'ed as a gap: none was, so each aggregate kept to
    // one lane.
    let counts = consuming.metrics.snapshot();
    assert_eq!(counts.retried, 0, "{counts:?}");
    assert_eq!(counts.applied, 32, "{counts:?}");
    let most = world.handler.busy.most();
    assert!(
        most > 1,
        "the lanes never overlapped: at most {most} at once"
    );
}

#[tokio::test]
async fn lanes_keep_each_aggregates_order_when_a_version_is_redelivered() {
    let world = World::new().await;
    // Every version 2 fails once: it comes back after its retry delay,
    // behind versions 3 and 4 of its aggregate, which must wait for it.
    let aggregates = publish_interleaved(
        &world,
        6,
        4,
        |version| serde_json::json!({"slow_ms": 10, "fail_times": i64::from(version == 2)}),
    )
    .await;
    let consuming = world.run(laned());

    world.wait_for_effects(24, Duration::from_secs(30)).await;
    assert_each_in_order(&world, &aggregates, 4).await;
    let counts = consuming.metrics.snapshot();
    assert_eq!(counts.applied, 24, "{counts:?}");
    assert!(
        counts.retried >= 6,
        "every version 2 was retried: {counts:?}"
    );
    assert!(world.dead_letters().await.is_empty());
}

#[tokio::test]
async fn lanes_leave_half_the_pool_to_the_service() {
    let world = World::new().await;
    publish_interleaved(&world, 8, 1, |_| serde_json::json!({"slow_ms": 30})).await;
    // A pool of two: one lane, however many the spec asks for.
    let small = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with((*world.db.connect_options()).clone())
        .await
        .unwrap();

    let _consuming = World::start(world.consumer_on(small, laned()));

    world.wait_for_effects(8, Duration::from_secs(30)).await;
    assert_eq!(world.handler.busy.most(), 1, "one lane at a time");
}

#[tokio::test]
async fn lanes_dead_letter_only_the_poison_message_among_those_in_flight() {
    let world = World::new().await;
    let aggregates =
        publish_interleaved(&world, 8, 3, |_| serde_json::json!({"slow_ms": 10})).await;
    let poison = world
        .publish_event(Uuid::new_v4(), 1, serde_json::json!({ "poison": true }))
        .await;
    let consuming = world.run(laned());

    eventually(
        Duration::from_secs(30),
        "the poison is dead-lettered and every other event applied",
        || async { world.dead_letters().await.len() == 1 && world.effects().await.len() == 24 },
    )
    .await;
    let letters = world.dead_letters().await;
    assert_eq!(letters[0].event_id, poison.event_id.to_string());
    assert_each_in_order(&world, &aggregates, 3).await;
    let counts = consuming.metrics.snapshot();
    assert_eq!(counts.applied, 24, "{counts:?}");
    assert_eq!(counts.dead_lettered, 1, "{counts:?}");
}

#[tokio::test]
async fn a_consumer_of_one_event_gets_only_that_event_and_keeps_no_position() {
    let world = World::new().await;
    // Each aggregate's version 1 on another subject, which the server must
    // skip; then its version 2 on the one subject the consumer reads.
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (subject, version) in [
        ("orders.events.test_created", 1),
        ("orders.events.test_happened", 2),
    ] {
        for &id in &ids {
            let envelope = World::envelope(id, version, serde_json::json!({}));
            let payload = serde_json::to_vec(&envelope).unwrap();
            world
                .publish_bytes_on(subject, payload, &envelope.event_id.to_string())
                .await;
        }
    }
    let consuming = world.run(World::spec().only("orders.events.test_happened"));

    world.wait_for_effects(5, Duration::from_secs(10)).await;
    // Version 2 applied with version 1 never seen: no gap to wait for.
    assert_eq!(world.versions().await, vec![2; 5]);
    let counts = consuming.metrics.snapshot();
    assert_eq!((counts.applied, counts.retried), (5, 0), "{counts:?}");
    let positions: i64 = sqlx::query_scalar("select count(*) from consumer_positions")
        .fetch_one(&world.db)
        .await
        .unwrap();
    assert_eq!(positions, 0, "no position is kept");

    // The inbox still makes it idempotent: the same event published again
    // (under another message id, so the stream keeps both) is a duplicate.
    let again = World::envelope(ids[0], 2, serde_json::json!({}));
    let first = sqlx::query_scalar::<_, Uuid>("select event_id from effects order by seq limit 1")
        .fetch_one(&world.db)
        .await
        .unwrap();
    let again = Envelope {
        event_id: MessageId(first),
        ..again
    };
    world
        .publish_bytes_on(
            "orders.events.test_happened",
            serde_json::to_vec(&again).unwrap(),
            "another-message-id",
        )
        .await;
    eventually(Duration::from_secs(10), "the copy is seen", || async {
        consuming.metrics.snapshot().duplicates == 1
    })
    .await;
    assert_eq!(world.effects().await.len(), 5);
}
