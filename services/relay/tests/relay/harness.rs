//! A source database, a NATS topology and relays running against them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use contracts::Envelope;
use contracts::orders::OrderCreated;
use messaging::{StreamKind, Topology};
use relay::metrics::Metrics;
use relay::{Application, Config};
use sqlx::PgPool;
use testkit::TestPostgres;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/orders");

/// One message read back from the stream.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) event_id: Uuid,
    pub(crate) aggregate_id: Uuid,
    pub(crate) aggregate_version: i64,
    pub(crate) traceparent: Option<String>,
}

pub(crate) struct World {
    pub(crate) db: PgPool,
    pub(crate) nats_url: String,
    pub(crate) topology: Topology,
    postgres: TestPostgres,
}

impl World {
    pub(crate) async fn new(nats_url: &str, prefix: &str) -> Self {
        let postgres = TestPostgres::start().await;
        let db = PgPool::connect(postgres.url()).await.unwrap();
        MIGRATOR.run(&db).await.unwrap();
        Self {
            db,
            nats_url: nats_url.to_owned(),
            topology: Topology::new(prefix).unwrap(),
            postgres,
        }
    }

    pub(crate) fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars: Vec<(String, String)> = [
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", self.postgres.url()),
            ("NATS_URL", self.nats_url.as_str()),
            ("NATS_PREFIX", self.topology.prefix()),
            ("RELAY_SOURCE", "test"),
            ("RELAY_POLL_INTERVAL", "50ms"),
            ("RELAY_BACKOFF_MAX", "500ms"),
            ("RELAY_PUBLISH_TIMEOUT", "1s"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Config::from_env(&settings::Env::from_pairs(vars)).unwrap()
    }

    pub(crate) async fn spawn_relay(&self, extra: &[(&str, &str)]) -> RunningRelay {
        let app = Application::build(self.config(extra)).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let metrics = app.metrics();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        RunningRelay {
            base,
            metrics,
            shutdown,
            handle: Some(handle),
        }
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

    pub(crate) async fn write_event_in(
        &self,
        tx: &mut sqlx::PgConnection,
        aggregate: Uuid,
        version: i64,
        email: &str,
    ) -> Uuid {
        let data = OrderCreated {
            order_id: aggregate,
            event_id: Uuid::nil(),
            customer_email: email.to_owned(),
            seats: vec![],
        };
        let envelope = Envelope::new("test", aggregate, version, Utc::now(), data);
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

pub(crate) struct RunningRelay {
    pub(crate) base: String,
    pub(crate) metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningRelay {
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
