//! The relay's source database in a testkit [`World`], with helpers to
//! write outbox rows and read back what reached the stream.

use std::time::Duration;

use chrono::Utc;
use contracts::Envelope;
use contracts::orders::OrderCreated;
use messaging::{StreamKind, Topology};
use relay::Relay;
use sqlx::PgPool;
use testkit::{Running, World};
use uuid::Uuid;

/// The orders schema: any service's outbox table would do.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/orders");

/// Version `version` of `aggregate`, an `OrderCreated` for `email`.
fn event(aggregate: Uuid, version: i64, email: &str) -> Envelope<OrderCreated> {
    let data = OrderCreated {
        order_id: aggregate,
        concert_id: Uuid::nil(),
        customer_email: email.to_owned(),
        seats: vec![],
    };
    Envelope::new("test", aggregate, version, Utc::now(), data)
}

/// One message read back from the stream.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) event_id: Uuid,
    pub(crate) aggregate_id: Uuid,
    pub(crate) aggregate_version: i64,
    pub(crate) traceparent: Option<String>,
}

/// A world whose relay database has an outbox table, and the NATS server
/// relays started here publish to.
pub(crate) struct Outbox {
    pub(crate) db: PgPool,
    pub(crate) topology: Topology,
    nats_url: String,
    pub(crate) world: World,
}

impl Outbox {
    /// Relays publish to the world's NATS, which has no streams yet: the
    /// relay provisions them, as it does in a deployment.
    pub(crate) async fn start() -> Self {
        let world = World::start_unprovisioned().await;
        let nats_url = world.nats.url().to_owned();
        Self::with(world, nats_url).await
    }

    /// Relays publish to the NATS server at `nats_url` (one the test stops
    /// and restarts), under the world's prefix.
    pub(crate) async fn on_nats(nats_url: &str) -> Self {
        Self::with(World::start_unprovisioned().await, nats_url.to_owned()).await
    }

    async fn with(world: World, nats_url: String) -> Self {
        // The database relays started in this world get (`World::settings`).
        let url = world.postgres.database("relay").await;
        let db = PgPool::connect(&url).await.unwrap();
        MIGRATOR.run(&db).await.unwrap();
        Self {
            db,
            topology: world.topology(),
            nats_url,
            world,
        }
    }

    /// Starts a relay of this outbox: quick to poll and to retry, then
    /// `extra` on top.
    pub(crate) async fn relay(&self, extra: &[(&str, &str)]) -> Running<Relay> {
        let mut settings = vec![
            ("NATS_URL", self.nats_url.as_str()),
            ("RELAY_SOURCE", "test"),
            ("RELAY_POLL_INTERVAL", "50ms"),
            ("RELAY_BACKOFF_MAX", "500ms"),
            ("RELAY_PUBLISH_TIMEOUT", "1s"),
        ];
        settings.extend_from_slice(extra);
        Running::<Relay>::start(&self.world, &settings).await
    }

    /// Commits one event of `aggregate` at `version`; returns its id.
    pub(crate) async fn write_event(&self, aggregate: Uuid, version: i64) -> Uuid {
        let mut tx = self.db.begin().await.unwrap();
        let id = self
            .write_event_in(&mut tx, aggregate, version, "ada@example.com")
            .await;
        tx.commit().await.unwrap();
        id
    }

    /// [`Outbox::write_event`] with the `NOTIFY` a service sends, which
    /// wakes relays that listen.
    pub(crate) async fn write_notified_event(&self, aggregate: Uuid, version: i64) {
        let mut tx = self.db.begin().await.unwrap();
        outbox::Writer::with_notify(true)
            .enqueue(&mut tx, &event(aggregate, version, "ada@example.com"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    pub(crate) async fn write_event_in(
        &self,
        tx: &mut sqlx::PgConnection,
        aggregate: Uuid,
        version: i64,
        email: &str,
    ) -> Uuid {
        let envelope = event(aggregate, version, email);
        outbox::Writer::new().enqueue(tx, &envelope).await.unwrap();
        envelope.event_id.0
    }

    pub(crate) async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("select count(*) from outbox where published_at is null")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Every message in the order events stream, in stream order.
    pub(crate) async fn stream(&self) -> Vec<Stored> {
        let client = async_nats::connect(&self.nats_url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let Ok(stream) = js
            .get_stream(self.topology.stream(StreamKind::OrderEvents))
            .await
        else {
            return Vec::new();
        };
        let info = stream.get_info().await.unwrap();
        let mut stored = Vec::new();
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            if info.state.messages == 0 {
                break;
            }
            let message = stream.get_raw_message(sequence).await.unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            stored.push(Stored {
                sequence,
                event_id: envelope["event_id"].as_str().unwrap().parse().unwrap(),
                aggregate_id: envelope["aggregate_id"].as_str().unwrap().parse().unwrap(),
                aggregate_version: envelope["aggregate_version"].as_i64().unwrap(),
                traceparent: message
                    .headers
                    .get("traceparent")
                    .map(|v| v.as_str().to_owned()),
            });
        }
        stored
    }

    /// Waits until nothing is left to publish.
    pub(crate) async fn drained(&self, within: Duration) {
        testkit::eventually(within, "the outbox is drained", || async {
            self.unpublished().await == 0
        })
        .await;
    }
}

/// Asserts each event id appears exactly once and every aggregate's
/// versions appear in increasing order of stream sequence.
pub(crate) fn assert_once_each_in_order(stored: &[Stored], expected: usize) {
    let mut ids: Vec<Uuid> = stored.iter().map(|s| s.event_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "an event is in the stream twice");
    assert_eq!(stored.len(), expected, "events missing from the stream");
    let mut last = std::collections::HashMap::new();
    for s in stored {
        let previous = last
            .insert(s.aggregate_id, s.aggregate_version)
            .unwrap_or(0);
        assert_eq!(
            s.aggregate_version,
            previous + 1,
            "aggregate {} out of order at stream sequence {}",
            s.aggregate_id,
            s.sequence
        );
    }
}
