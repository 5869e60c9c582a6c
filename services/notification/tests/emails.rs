//! Notification against real Postgres and NATS: one e-mail per (order,
//! kind) whatever the deliveries, and a provider that keeps failing ends in
//! the dead letters, not in a loop.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use contracts::Envelope;
use contracts::orders::{OrderPaid, OrderSeat};
use messaging::Topology;
use testkit::{TestNats, TestPostgres, eventually};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct World {
    js: async_nats::jetstream::Context,
    topology: Topology,
    emails: PathBuf,
    db: sqlx::PgPool,
    shutdown: CancellationToken,
    _postgres: TestPostgres,
    _nats: TestNats,
}

impl World {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let (postgres, nats) = (TestPostgres::start().await, TestNats::start().await);
        let js = async_nats::jetstream::new(nats.client().await);
        let topology = Topology::new(nats.prefix()).unwrap();
        messaging::provision(&js, &topology, Duration::from_mins(1))
            .await
            .unwrap();
        let emails = std::env::temp_dir().join(format!("emails-{}.jsonl", Uuid::new_v4().simple()));
        let mut vars: Vec<(String, String)> = [
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE_URL", postgres.url().to_owned()),
            ("NATS_URL", nats.url().to_owned()),
            ("NATS_PREFIX", nats.prefix().to_owned()),
            ("EMAIL_PROVIDER", "log".to_owned()),
            ("EMAIL_LOG_PATH", emails.display().to_string()),
            ("RELAY_POLL_INTERVAL", "50ms".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let env = settings::Env::from_pairs(vars);
        let shutdown = CancellationToken::new();
        let app = notification::Application::build(notification::Config::from_env(&env).unwrap())
            .await
            .unwrap();
        let db = app.db().clone();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let relay = relay::Application::build(relay::Config::from_env(&env).unwrap())
            .await
            .unwrap();
        tokio::spawn(relay.run_until_stopped(shutdown.clone()));
        Self {
            js,
            topology,
            emails,
            db,
            shutdown,
            _postgres: postgres,
            _nats: nats,
        }
    }

    /// Publishes the order's `OrderCreated` (version 1), which consumers
    /// need before its `OrderPaid` (version 2).
    async fn created(&self, paid: &Envelope<OrderPaid>) {
        let created = contracts::orders::OrderCreated {
            order_id: paid.data.order_id,
            event_id: paid.data.event_id,
            customer_email: paid.data.customer_email.clone(),
            seats: paid.data.seats.clone(),
        };
        let envelope = Envelope::new("orders", paid.aggregate_id, 1, chrono::Utc::now(), created);
        self.publish(&envelope, &envelope.event_id.to_string())
            .await;
    }

    /// Publishes `envelope` to `ORDER_EVENTS` under message id `msg_id`.
    async fn publish<T: contracts::Event>(&self, envelope: &Envelope<T>, msg_id: &str) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(messaging::headers::MSG_ID, msg_id);
        self.js
            .send_publish(
                self.topology.subject("orders.events.order_paid"),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(serde_json::to_vec(envelope).unwrap().into())
                    .headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn emails_sent(&self) -> usize {
        tokio::fs::read_to_string(&self.emails)
            .await
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.emails);
    }
}

fn order_paid() -> Envelope<OrderPaid> {
    let paid = OrderPaid {
        order_id: Uuid::new_v4(),
        event_id: Uuid::new_v4(),
        customer_email: "ada@example.com".into(),
        seats: vec![OrderSeat {
            seat_id: "A-1".into(),
            fencing_token: None,
        }],
        paid_at: chrono::Utc::now(),
    };
    Envelope::new("orders", paid.order_id, 2, chrono::Utc::now(), paid)
}

#[tokio::test]
async fn an_event_delivered_twice_sends_one_email() {
    let world = World::start(&[]).await;
    let paid = order_paid();
    world.created(&paid).await;
    world.publish(&paid, &paid.event_id.to_string()).await;
    // The same fact again under another message id, as after a redrive.
    world.publish(&paid, "again").await;

    eventually(Duration::from_secs(15), "the e-mail is sent", || async {
        world.emails_sent().await == 1
    })
    .await;
    let requested: i64 = sqlx::query_scalar("select count(*) from notifications")
        .fetch_one(&world.db)
        .await
        .unwrap();
    assert_eq!(requested, 1);
    eventually(
        Duration::from_secs(10),
        "the relay has published everything",
        || async {
            let waiting: i64 = sqlx::query_scalar("select count(*) from outbox")
                .fetch_one(&world.db)
                .await
                .unwrap();
            waiting == 0
        },
    )
    .await;
    assert_eq!(
        world.emails_sent().await,
        1,
        "one e-mail per order and kind"
    );
}

#[tokio::test]
async fn a_provider_that_keeps_failing_dead_letters_the_command_after_its_retries() {
    let world = World::start(&[
        ("EMAIL_FAIL_SHARE", "1"),
        ("WORKER_MAX_DELIVER", "3"),
        ("WORKER_RETRY_DELAY", "100ms"),
    ])
    .await;
    let paid = order_paid();
    world.created(&paid).await;
    world.publish(&paid, &paid.event_id.to_string()).await;

    eventually(
        Duration::from_secs(20),
        "the command is dead-lettered",
        || async {
            consumer::dlq::list(&world.js, &world.topology)
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;

    let letter = consumer::dlq::list(&world.js, &world.topology)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(letter.consumer, "notification-workers");
    assert_eq!(letter.delivery_count, "3");
    assert!(letter.error.contains("injected failure"), "{letter:?}");
    assert_eq!(world.emails_sent().await, 0);
    let unsent: bool = sqlx::query_scalar("select sent_at is null from notifications")
        .fetch_one(&world.db)
        .await
        .unwrap();
    assert!(unsent, "still owed: a redrive after the fix sends it");
}
