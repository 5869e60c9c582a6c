//! The payment saga across services: orders → relay → inventory → relay →
//! orders, with reporting projecting it and notification e-mailing about
//! it, on real Postgres, NATS and Redis, every service in this process.
//!
//! Every order is created as a customer would: hold the seats in inventory,
//! then order with the hold tokens (orders verifies them with inventory and
//! stores their fencing tokens). A losing order is one whose hold was
//! released and granted to someone else: it was valid when created, and
//! the fencing token is what makes it lose at the sale.
//!
//! Invariants checked: no seat is sold twice; every paid order ends
//! CONFIRMED or REFUNDED; a refund is a new fact (`OrderRefunded`), not an
//! undone payment; only the latest holder of a seat can buy it.
//!
//! Long because it starts the whole system in-process (five services and
//! three relays) for each test; one harness in testkit (#12) will shrink it.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestIdentity, TestNats, TestPostgres, TestRedis, eventually};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Orders, inventory and a relay for each, sharing one NATS topology.
struct System {
    orders_base: String,
    orders_db: PgPool,
    inventory_base: String,
    inventory_db: PgPool,
    reports_base: String,
    emails: std::path::PathBuf,
    mailer: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    rebuild: (PgPool, async_nats::jetstream::Context, messaging::Topology),
    concert: Uuid,
    http: reqwest::Client,
    /// The identity provider every service trusts; each customer signs in
    /// with a token from it.
    identity: TestIdentity,
    /// Who created each order, to pay it as them.
    owners: std::sync::Mutex<std::collections::HashMap<Uuid, Uuid>>,
    shutdown: CancellationToken,
    _databases: (TestPostgres, TestPostgres, TestPostgres, TestPostgres),
    _nats: TestNats,
    _redis: TestRedis,
}

/// A granted hold: what a customer orders with.
struct Hold {
    seat: String,
    token: String,
    customer: Uuid,
}

/// A concert with seats and B-1 at 45.00, written into
/// inventory's database.
async fn seed_concert(inventory_db: &PgPool) -> Uuid {
    let concert = Uuid::new_v4();
    sqlx::query(
        "insert into events (id, name, venue, starts_at, sale_opens_at) \
         values ($1, 'Night Shift', 'Hall 1', now() + interval '30 days', now())",
    )
    .bind(concert)
    .execute(inventory_db)
    .await
    .unwrap();
    sqlx::query(
        "insert into seats (event_id, seat_id, price_cents) \
         select $1, s, 4500 from unnest(array['A-1', 'A-2', 'B-1']) s",
    )
    .bind(concert)
    .execute(inventory_db)
    .await
    .unwrap();
    concert
}

impl System {
    async fn start() -> Self {
        let nats = TestNats::start().await;
        let redis = TestRedis::start().await;
        let (orders_pg, inventory_pg, reporting_pg, notification_pg) = (
            TestPostgres::start().await,
            TestPostgres::start().await,
            TestPostgres::start().await,
            TestPostgres::start().await,
        );
        let shutdown = CancellationToken::new();
        // Streams first, so consumers need not wait for a relay to create them.
        let js = async_nats::jetstream::new(nats.client().await);
        let topology = messaging::Topology::new(nats.prefix()).unwrap();
        messaging::provision(&js, &topology, Duration::from_mins(10))
            .await
            .unwrap();

        let identity = TestIdentity::new();
        let jwks_path = identity.jwks_path().display().to_string();
        let common = |db: &str| {
            vec![
                ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
                ("DATABASE_URL", db.to_owned()),
                ("NATS_URL", nats.url().to_owned()),
                ("NATS_PREFIX", nats.prefix().to_owned()),
                ("AUTH_JWKS_PATH", jwks_path.clone()),
            ]
        };
        let env = |vars: Vec<(&str, String)>| settings::Env::from_pairs(vars);

        // Inventory first: orders needs its address to verify holds.
        let mut vars = common(inventory_pg.url());
        vars.extend([
            ("REDIS_URL", redis.url().to_owned()),
            ("REDIS_PREFIX", redis.prefix().to_owned()),
        ]);
        let inventory =
            inventory::Application::build(inventory::Config::from_env(&env(vars)).unwrap())
                .await
                .unwrap();
        let inventory_base = format!("http://127.0.0.1:{}", inventory.port());
        let inventory_db = inventory.db().clone();
        tokio::spawn(inventory.run_until_stopped(shutdown.clone()));

        let mut vars = common(orders_pg.url());
        vars.push(("INVENTORY_URL", inventory_base.clone()));
        let orders = orders::Application::build(orders::Config::from_env(&env(vars)).unwrap())
            .await
            .unwrap();
        let orders_base = format!("http://127.0.0.1:{}", orders.port());
        let orders_db = orders.db().clone();
        tokio::spawn(orders.run_until_stopped(shutdown.clone()));

        let reporting = reporting::Application::build(
            reporting::Config::from_env(&env(common(reporting_pg.url()))).unwrap(),
        )
        .await
        .unwrap();
        let reports_base = format!("http://127.0.0.1:{}", reporting.port());
        let rebuild = reporting.rebuild_handles();
        tokio::spawn(reporting.run_until_stopped(shutdown.clone()));

        let emails = std::env::temp_dir().join(format!("emails-{}.jsonl", Uuid::new_v4().simple()));
        let mut vars = common(notification_pg.url());
        vars.extend([
            ("EMAIL_PROVIDER", "log".to_owned()),
            ("EMAIL_LOG_PATH", emails.display().to_string()),
        ]);
        let notification =
            notification::Application::build(notification::Config::from_env(&env(vars)).unwrap())
                .await
                .unwrap();
        let mailer = tokio::spawn(notification.run_until_stopped(shutdown.clone()));

        for db in [orders_pg.url(), inventory_pg.url(), notification_pg.url()] {
            let mut vars = common(db);
            // Keep published rows so the test can read which events were written.
            vars.extend([
                ("RELAY_RETENTION", "1h".to_owned()),
                ("RELAY_POLL_INTERVAL", "50ms".to_owned()),
            ]);
            let relay = relay::Application::build(relay::Config::from_env(&env(vars)).unwrap())
                .await
                .unwrap();
            tokio::spawn(relay.run_until_stopped(shutdown.clone()));
        }

        let concert = seed_concert(&inventory_db).await;

        Self {
            orders_base,
            orders_db,
            inventory_base,
            inventory_db,
            reports_base,
            emails,
            mailer: Some(mailer),
            rebuild,
            concert,
            http: reqwest::Client::new(),
            identity,
            owners: std::sync::Mutex::default(),
            shutdown,
            _databases: (orders_pg, inventory_pg, reporting_pg, notification_pg),
            _nats: nats,
            _redis: redis,
        }
    }

    /// Holds `seats` for a new customer, asserting each 201.
    async fn hold(&self, seats: &[&str]) -> Vec<Hold> {
        let customer = Uuid::new_v4();
        let mut holds = Vec::new();
        for seat in seats {
            let response = self
                .http
                .post(format!(
                    "{}/events/{}/seats/{seat}/hold",
                    self.inventory_base, self.concert
                ))
                .bearer_auth(self.identity.customer(customer))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED, "hold {seat}");
            let hold: Value = response.json().await.unwrap();
            holds.push(Hold {
                seat: (*seat).to_owned(),
                token: hold["hold_token"].as_str().unwrap().to_owned(),
                customer,
            });
        }
        holds
    }

    /// Gives the holds back, as a customer who changed their mind would.
    async fn release(&self, holds: &[Hold]) {
        for hold in holds {
            let response = self
                .http
                .delete(format!(
                    "{}/events/{}/seats/{}/hold",
                    self.inventory_base, self.concert, hold.seat
                ))
                .bearer_auth(self.identity.customer(hold.customer))
                .header("hold-token", &hold.token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::NO_CONTENT,
                "release {}",
                hold.seat
            );
        }
    }

    /// Creates an order with `holds`, as the customer who holds them;
    /// returns its id.
    async fn order(&self, holds: &[Hold]) -> Uuid {
        let customer = holds[0].customer;
        let body = json!({
            "event_id": self.concert,
            "seats": holds
                .iter()
                .map(|h| json!({ "seat_id": h.seat, "hold_token": h.token }))
                .collect::<Vec<_>>(),
            "customer_email": "ada@example.com",
        });
        let created = self
            .http
            .post(format!("{}/orders", self.orders_base))
            .bearer_auth(self.identity.customer(customer))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let order: Uuid = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        self.owners.lock().unwrap().insert(order, customer);
        order
    }

    async fn pay(&self, order: Uuid) {
        let owner = self.owners.lock().unwrap()[&order];
        let paid = self
            .http
            .post(format!("{}/orders/{order}/pay", self.orders_base))
            .bearer_auth(self.identity.customer(owner))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status(), StatusCode::OK);
    }

    /// Holds `seats`, creates an order for them and pays it; returns its id.
    async fn paid_order(&self, seats: &[&str]) -> Uuid {
        let order = self.order(&self.hold(seats).await).await;
        self.pay(order).await;
        order
    }

    /// An order for `seats` whose customer then released the holds, so
    /// that another customer can hold (and buy) the seats: created from
    /// live holds, it is bound to lose any seat held after it. Not paid.
    async fn order_then_released(&self, seats: &[&str]) -> Uuid {
        let holds = self.hold(seats).await;
        let order = self.order(&holds).await;
        self.release(&holds).await;
        order
    }

    async fn status(&self, order: Uuid) -> String {
        sqlx::query_scalar("select status from orders where id = $1")
            .bind(order)
            .fetch_one(&self.orders_db)
            .await
            .unwrap()
    }

    async fn settled(&self, order: Uuid) -> String {
        eventually(
            Duration::from_secs(30),
            "the paid order is settled",
            || async { matches!(self.status(order).await.as_str(), "CONFIRMED" | "REFUNDED") },
        )
        .await;
        self.status(order).await
    }

    async fn owner_of(&self, seat: &str) -> Option<Uuid> {
        sqlx::query_scalar("select order_id from seats where event_id = $1 and seat_id = $2")
            .bind(self.concert)
            .bind(seat)
            .fetch_one(&self.inventory_db)
            .await
            .unwrap()
    }

    async fn order_events(&self, order: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "select event_type from outbox where aggregate_id = $1 order by aggregate_version",
        )
        .bind(order)
        .fetch_all(&self.orders_db)
        .await
        .unwrap()
    }
}

impl System {
    /// The concert's report, or `None` before its first sale.
    async fn report(&self) -> Option<Value> {
        let response = self
            .http
            .get(format!(
                "{}/reports/events/{}",
                self.reports_base, self.concert
            ))
            .bearer_auth(self.identity.operator())
            .send()
            .await
            .unwrap();
        (response.status() == StatusCode::OK).then_some(response.json().await.unwrap())
    }
}

impl System {
    /// The e-mails sent about `order`, by subject.
    async fn emails_about(&self, order: Uuid) -> Vec<String> {
        let text = tokio::fs::read_to_string(&self.emails)
            .await
            .unwrap_or_default();
        let mut subjects: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|email| {
                email["reference"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&order.to_string()))
            })
            .map(|email| email["subject"].as_str().unwrap().to_owned())
            .collect();
        subjects.sort();
        subjects
    }
}

impl System {
    /// Stops every service, waits for the mailer to finish, and removes the
    /// e-mail file (which a still-running worker could otherwise recreate).
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(mailer) = self.mailer.take() {
            mailer.await.unwrap().unwrap();
        }
        let _ = tokio::fs::remove_file(&self.emails).await;
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // A failed test ends here without `stop`; best effort.
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.emails);
    }
}

#[tokio::test]
async fn a_paid_order_is_confirmed_when_its_seats_are_free() {
    let system = Box::pin(System::start()).await;

    let order = system.paid_order(&["A-1", "A-2"]).await;

    assert_eq!(system.settled(order).await, "CONFIRMED");
    assert_eq!(system.owner_of("A-1").await, Some(order));
    assert_eq!(system.owner_of("A-2").await, Some(order));
    assert_eq!(
        system.order_events(order).await,
        ["OrderCreated", "OrderPaid", "OrderConfirmed"]
    );
    system.stop().await;
}

#[tokio::test]
async fn two_paid_orders_for_one_seat_end_one_confirmed_and_one_refunded() {
    let system = Box::pin(System::start()).await;

    // The second order wants B-1 and A-1; it was created from live holds,
    // whose customer then let them go. The first order holds B-1 next and
    // is paid and settled; the second is paid after that, so which one
    // loses is known.
    let second = system.order_then_released(&["B-1", "A-1"]).await;
    let first = system.paid_order(&["B-1"]).await;
    assert_eq!(system.settled(first).await, "CONFIRMED");
    system.pay(second).await;

    assert_eq!(system.settled(second).await, "REFUNDED");
    assert_eq!(
        system.owner_of("B-1").await,
        Some(first),
        "the seat is sold once"
    );
    assert_eq!(
        system.owner_of("A-1").await,
        None,
        "all of an order's seats or none"
    );
    assert_eq!(
        system.order_events(second).await,
        ["OrderCreated", "OrderPaid", "OrderRefunded"],
        "the payment stays a fact; the refund is a new one"
    );
    system.stop().await;
}

#[tokio::test]
async fn an_order_whose_hold_went_to_another_customer_loses_the_seat_even_when_paid_first() {
    let system = Box::pin(System::start()).await;

    // Both orders were valid when created; the earlier one's hold on A-2
    // was released and granted to the later customer, with a newer token.
    let stale = system.order_then_released(&["A-2"]).await;
    let current = system.order(&system.hold(&["A-2"]).await).await;
    // The stale order pays first, while A-2 is still available: only its
    // fencing token can stop it.
    system.pay(stale).await;
    assert_eq!(system.settled(stale).await, "REFUNDED");
    system.pay(current).await;

    assert_eq!(system.settled(current).await, "CONFIRMED");
    assert_eq!(system.owner_of("A-2").await, Some(current));
    let fences: Vec<Option<i64>> = sqlx::query_scalar(
        "select fencing_token from order_lines where order_id = any($1) order by fencing_token",
    )
    .bind([stale, current])
    .fetch_all(&system.orders_db)
    .await
    .unwrap();
    assert!(
        matches!(fences[..], [Some(old), Some(new)] if old < new),
        "each order stored its hold's token: {fences:?}"
    );
    system.stop().await;
}

#[tokio::test]
async fn reporting_follows_the_orders_and_a_rebuild_from_the_log_reproduces_it() {
    let system = Box::pin(System::start()).await;
    let refunded = system.order_then_released(&["A-1"]).await;
    let confirmed = system.paid_order(&["A-1", "A-2"]).await;
    assert_eq!(system.settled(confirmed).await, "CONFIRMED");
    system.pay(refunded).await;
    assert_eq!(system.settled(refunded).await, "REFUNDED");

    // Live totals: two tickets at 45.00, one refund.
    eventually(
        Duration::from_secs(20),
        "the report shows both outcomes",
        || async {
            system
                .report()
                .await
                .is_some_and(|r| r["tickets_sold"] == 2 && r["refunds"] == 1)
        },
    )
    .await;
    let live = system.report().await.unwrap();
    assert_eq!(live["revenue_cents"], 9_000);

    let (db, js, topology) = &system.rebuild;
    let mut progress = Vec::new();
    let report =
        reporting::rebuild::rebuild(db, js, topology, |done, total| progress.push((done, total)))
            .await
            .unwrap();

    let rebuilt = system.report().await.unwrap();
    assert_eq!(rebuilt["generation"], report.generation);
    assert_ne!(
        rebuilt["generation"], live["generation"],
        "a new generation answers"
    );
    for field in ["tickets_sold", "revenue_cents", "refunds"] {
        assert_eq!(
            rebuilt[field], live[field],
            "{field}: rebuilt from the log = live"
        );
    }
    assert!(
        progress.last().is_some_and(|(done, total)| done == total),
        "progress reached the end"
    );

    // The backlog is visible: every event applied, nothing pending.
    let metrics = system
        .http
        .get(format!("{}/metrics", system.reports_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("consumer_pending{consumer=\"reporting\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("consumer_dead_lettered_total{consumer=\"reporting\"} 0"),
        "{metrics}"
    );
    system.stop().await;
}

#[tokio::test]
async fn the_full_flow_confirms_or_refunds_sends_one_email_per_step_and_updates_the_report() {
    let system = Box::pin(System::start()).await;
    let refunded = system.order_then_released(&["A-1"]).await;
    let confirmed = system.paid_order(&["A-1"]).await;
    assert_eq!(system.settled(confirmed).await, "CONFIRMED");
    system.pay(refunded).await;
    assert_eq!(system.settled(refunded).await, "REFUNDED");

    eventually(Duration::from_secs(20), "four e-mails are sent", || async {
        system.emails_about(confirmed).await.len() + system.emails_about(refunded).await.len() == 4
    })
    .await;
    assert_eq!(
        system.emails_about(confirmed).await,
        ["We received your payment", "Your tickets are confirmed"]
    );
    assert_eq!(
        system.emails_about(refunded).await,
        ["We received your payment", "Your payment was refunded"]
    );
    // And the report counted the same story.
    eventually(Duration::from_secs(10), "the report is updated", || async {
        system.report().await.is_some_and(|r| {
            r["tickets_sold"] == 1 && r["refunds"] == 1 && r["revenue_cents"] == 4_500
        })
    })
    .await;
    system.stop().await;
}
