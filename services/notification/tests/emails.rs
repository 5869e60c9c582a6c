//! Notification against real Postgres and NATS: one e-mail per (order,
//! kind) whatever the deliveries, even when a worker died mid-send, and a
//! provider that keeps failing ends in the dead letters, not in a loop.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use contracts::Envelope;
use contracts::orders::{OrderPaid, OrderSeat};
use notification::Notification;
use relay::Relay;
use testkit::{Ask as _, Running, World, eventually};
use uuid::Uuid;

/// Notification and the relay of its outbox (which publishes the
/// `SendEmail` commands), e-mails logged to a file of the test's own.
struct Mailroom {
    notification: Running<Notification>,
    /// `None` until [`Mailroom::start_relay`]: until then the commands
    /// stay in the outbox.
    relay: Option<Running<Relay>>,
    js: async_nats::jetstream::Context,
    emails: PathBuf,
    // Last: the services stop before their servers go.
    world: World,
}

impl Mailroom {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let mut mailroom = Self::without_relay(extra).await;
        mailroom.start_relay().await;
        mailroom
    }

    async fn without_relay(extra: &[(&str, &str)]) -> Self {
        // Boxed, as are the services' builds: together they make a large future.
        let world = Box::pin(World::start()).await;
        let emails = std::env::temp_dir().join(format!("emails-{}.jsonl", Uuid::new_v4().simple()));
        let log_path = emails.display().to_string();
        let mut settings = vec![
            ("EMAIL_PROVIDER", "log"),
            ("EMAIL_LOG_PATH", log_path.as_str()),
        ];
        settings.extend_from_slice(extra);
        let notification = Box::pin(Running::<Notification>::start(&world, &settings)).await;
        Self {
            notification,
            relay: None,
            js: world.nats.jetstream().await,
            emails,
            world,
        }
    }

    /// Starts the relay that publishes the `SendEmail` commands.
    async fn start_relay(&mut self) {
        let relay = Box::pin(Running::<Relay>::start(
            &self.world,
            &[
                (
                    "DATABASE_URL",
                    self.notification.settings()["DATABASE_URL"].as_str(),
                ),
                ("RELAY_POLL_INTERVAL", "50ms"),
            ],
        ))
        .await;
        self.relay = Some(relay);
    }

    fn db(&self) -> &sqlx::PgPool {
        self.notification.lent::<sqlx::PgPool>()
    }

    /// Publishes the order's `OrderCreated` (version 1), which consumers
    /// need before its `OrderPaid` (version 2).
    async fn created(&self, paid: &Envelope<OrderPaid>) {
        let created = contracts::orders::OrderCreated {
            order_id: paid.data.order_id,
            concert_id: paid.data.concert_id,
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
                self.world.topology().subject("orders.events.order_paid"),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(serde_json::to_vec(envelope).unwrap().into())
                    .headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The references of the e-mails in the log, one per e-mail sent.
    async fn references(&self) -> Vec<String> {
        tokio::fs::read_to_string(&self.emails)
            .await
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let sent: serde_json::Value = serde_json::from_str(line).unwrap();
                sent["reference"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    async fn emails_sent(&self) -> usize {
        tokio::fs::read_to_string(&self.emails)
            .await
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for Mailroom {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.emails);
    }
}

fn order_paid() -> Envelope<OrderPaid> {
    let paid = OrderPaid {
        order_id: Uuid::new_v4(),
        concert_id: Uuid::new_v4(),
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
    let mailroom = Mailroom::start(&[]).await;
    let paid = order_paid();
    mailroom.created(&paid).await;
    mailroom.publish(&paid, &paid.event_id.to_string()).await;
    // The same fact again under another message id, as after a redrive.
    mailroom.publish(&paid, "again").await;

    eventually(Duration::from_secs(15), "the e-mail is sent", || async {
        mailroom.emails_sent().await == 1
    })
    .await;
    let requested: i64 = sqlx::query_scalar("select count(*) from notifications")
        .fetch_one(mailroom.db())
        .await
        .unwrap();
    assert_eq!(requested, 1);
    eventually(
        Duration::from_secs(10),
        "the relay has published everything",
        || async {
            let waiting: i64 = sqlx::query_scalar("select count(*) from outbox")
                .fetch_one(mailroom.db())
                .await
                .unwrap();
            waiting == 0
        },
    )
    .await;
    assert_eq!(
        mailroom.emails_sent().await,
        1,
        "one e-mail per order and kind"
    );
}

/// A worker that dies after the provider accepted an e-mail and before it
/// recorded it sent leaves a claim that lapses unrecorded. The worker that
/// takes the command over asks the provider: it records an e-mail the
/// provider has, and sends one the provider has not.
#[tokio::test]
async fn a_worker_that_takes_over_a_lapsed_claim_sends_only_what_the_provider_does_not_have() {
    let mut mailroom = Mailroom::without_relay(&[]).await;
    let (accepted, lost) = (order_paid(), order_paid());
    for paid in [&accepted, &lost] {
        mailroom.created(paid).await;
        mailroom.publish(paid, &paid.event_id.to_string()).await;
    }
    eventually(Duration::from_secs(15), "both e-mails are owed", || async {
        let owed: i64 = sqlx::query_scalar("select count(*) from notifications")
            .fetch_one(mailroom.db())
            .await
            .unwrap();
        owed == 2
    })
    .await;
    // What a worker killed mid-send leaves: both claims lapsed and
    // unrecorded; the provider took the first e-mail, not the second.
    sqlx::query("update notifications set sending_until = now() - interval '1 second'")
        .execute(mailroom.db())
        .await
        .unwrap();
    let reference = |paid: &Envelope<OrderPaid>| format!("{}-payment_received", paid.data.order_id);
    let line = serde_json::json!({ "to": "ada@example.com", "reference": reference(&accepted) });
    std::fs::write(&mailroom.emails, format!("{line}\n")).unwrap();

    mailroom.start_relay().await;
    eventually(
        Duration::from_secs(15),
        "both e-mails are recorded sent",
        || async {
            let unsent: i64 =
                sqlx::query_scalar("select count(*) from notifications where sent_at is null")
                    .fetch_one(mailroom.db())
                    .await
                    .unwrap();
            unsent == 0
        },
    )
    .await;
    let mut sent = mailroom.references().await;
    sent.sort();
    let mut expected = vec![reference(&accepted), reference(&lost)];
    expected.sort();
    assert_eq!(
        sent, expected,
        "each e-mail once: the accepted one not again"
    );
}

#[tokio::test]
async fn a_provider_that_keeps_failing_dead_letters_the_command_after_its_retries() {
    let mailroom = Mailroom::start(&[
        ("EMAIL_FAIL_SHARE", "1"),
        ("WORKER_MAX_DELIVER", "3"),
        ("WORKER_RETRY_DELAY", "100ms"),
    ])
    .await;
    let paid = order_paid();
    mailroom.created(&paid).await;
    mailroom.publish(&paid, &paid.event_id.to_string()).await;

    eventually(
        Duration::from_secs(20),
        "the command is dead-lettered",
        || async {
            consumer::dlq::list(&mailroom.js, &mailroom.world.topology())
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;

    let letter = consumer::dlq::list(&mailroom.js, &mailroom.world.topology())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(letter.consumer, "notification-workers");
    assert_eq!(letter.delivery_count, "3");
    assert!(letter.error.contains("injected failure"), "{letter:?}");
    assert_eq!(mailroom.emails_sent().await, 0);
    let unsent: bool = sqlx::query_scalar("select sent_at is null from notifications")
        .fetch_one(mailroom.db())
        .await
        .unwrap();
    assert!(unsent, "still owed: a redrive after the fix sends it");
}

#[tokio::test]
async fn no_transaction_stays_open_while_a_worker_waits_to_send() {
    // One e-mail a second: the second and third wait for their slots.
    let mailroom = Mailroom::start(&[("EMAIL_RATE_PER_SECOND", "1"), ("WORKERS", "3")]).await;
    for _ in 0..3 {
        let paid = order_paid();
        mailroom.created(&paid).await;
        mailroom.publish(&paid, &paid.event_id.to_string()).await;
    }

    // Watch the database while they go out: a transaction open across a
    // wait shows as one older than any of the service's statements take.
    let mut longest = Duration::ZERO;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while mailroom.emails_sent().await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the e-mails are not sent"
        );
        // clock_timestamp(), not now(): now() is when this query's own
        // transaction began, and a backend whose transaction began a moment
        // later would show a negative age.
        let open: Option<f64> = sqlx::query_scalar(
            "select greatest(extract(epoch from max(clock_timestamp() - xact_start)), 0)::float8
             from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()
               and state in ('active', 'idle in transaction')",
        )
        .fetch_one(mailroom.db())
        .await
        .unwrap();
        longest = longest.max(Duration::from_secs_f64(open.unwrap_or(0.0)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        longest < Duration::from_millis(300),
        "a transaction stayed open {longest:?} while the e-mails waited for their slots"
    );
}

/// When the provider's rate is the bottleneck, `/metrics` says so: the
/// senders' wait for a slot grows, and so does their backlog.
#[tokio::test]
async fn a_rate_that_holds_the_emails_back_shows_as_wait_and_backlog_on_metrics() {
    let mailroom = Mailroom::start(&[("EMAIL_RATE_PER_SECOND", "2"), ("WORKERS", "2")]).await;
    for _ in 0..10 {
        let paid = order_paid();
        mailroom.created(&paid).await;
        mailroom.publish(&paid, &paid.event_id.to_string()).await;
    }

    // Ten e-mails at two a second: about five seconds of backlog, during
    // which a scrape shows both the wait and the commands waiting.
    eventually(
        Duration::from_secs(10),
        "a scrape shows the senders waiting on the rate with a backlog",
        || async {
            let scrape = mailroom.notification.get("/metrics").answer().await.text;
            let waited = metric(&scrape, "email_rate_limit_wait_seconds_total", "");
            let backlog = metric(&scrape, "consumer_pending", worker_label())
                + metric(&scrape, "consumer_ack_pending", worker_label());
            waited >= 1.0 && backlog >= 1.0
        },
    )
    .await;
    eventually(Duration::from_secs(20), "every e-mail is sent", || async {
        mailroom.emails_sent().await == 10
    })
    .await;
}

/// The label of the senders' durable in a scrape.
fn worker_label() -> &'static str {
    "notification-workers\""
}

/// The sum of the samples of `name` in `scrape` whose labels contain
/// `label` (every sample of it for an empty `label`).
fn metric(scrape: &str, name: &str, label: &str) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let bare = series.split('{').next()?;
            (bare == name && series.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
