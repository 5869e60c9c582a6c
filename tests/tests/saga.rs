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
//! undone payment; only the latest holder of a seat can buy it. And the
//! docs tell the truth about metrics: every name they give is scraped.
//!
//! Long because each test starts the whole system in one world and drives
//! it as customers do; the steps they share are methods of `System`.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use inventory::Inventory;
use notification::Notification;
use orders::Orders;
use relay::Relay;
use reporting::Reporting;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{Ask as _, Running, World, eventually};
use uuid::Uuid;

/// The whole system in this process: the five services and a relay for
/// each outbox (orders, inventory, notification), in one world.
struct System {
    world: World,
    inventory: Running<Inventory>,
    orders: Running<Orders>,
    reporting: Running<Reporting>,
    notification: Running<Notification>,
    relays: Vec<Running<Relay>>,
    emails: PathBuf,
    concert: Uuid,
    /// Who created each order, to pay it as them.
    owners: Mutex<HashMap<Uuid, Uuid>>,
}

/// A granted hold: what a customer orders with.
struct Hold {
    seat: String,
    token: String,
    customer: Uuid,
}

impl System {
    async fn start() -> Self {
        let world = World::start().await;
        // Inventory first: orders needs its address to verify holds.
        let inventory = Running::<Inventory>::start(&world, &[]).await;
        let orders =
            Running::<Orders>::start(&world, &[("INVENTORY_URL", &inventory.base_url())]).await;
        let reporting = Running::<Reporting>::start(&world, &[]).await;
        let emails = std::env::temp_dir().join(format!("emails-{}.jsonl", Uuid::new_v4().simple()));
        let notification = Running::<Notification>::start(
            &world,
            &[
                ("EMAIL_PROVIDER", "log"),
                ("EMAIL_LOG_PATH", &emails.display().to_string()),
            ],
        )
        .await;
        let mut relays = Vec::new();
        for source in ["orders", "inventory", "notification"] {
            let database = world.postgres.database(source).await;
            // Keep published rows so the test can read which events were written.
            let settings = [
                ("DATABASE_URL", database.as_str()),
                ("RELAY_SOURCE", source),
                ("RELAY_RETENTION", "1h"),
                ("RELAY_POLL_INTERVAL", "50ms"),
            ];
            relays.push(Running::<Relay>::start(&world, &settings).await);
        }
        // Seats.
        let concert = world.concert(&inventory, 3).await;
        Self {
            world,
            inventory,
            orders,
            reporting,
            notification,
            relays,
            emails,
            concert,
            owners: Mutex::default(),
        }
    }

    /// Holds `seats` for a new customer, asserting each 201.
    async fn hold(&self, seats: &[&str]) -> Vec<Hold> {
        let customer = Uuid::new_v4();
        let mut holds = Vec::new();
        for seat in seats {
            let hold = self
                .inventory
                .post_as(
                    &format!("/events/{}/seats/{seat}/hold", self.concert),
                    self.world.customer(customer),
                )
                .answer()
                .await;
            assert_eq!(hold.status, StatusCode::CREATED, "hold {seat}");
            holds.push(Hold {
                seat: (*seat).to_owned(),
                token: hold.body["hold_token"].as_str().unwrap().to_owned(),
                customer,
            });
        }
        holds
    }

    /// Gives the holds back, as a customer who changed their mind would.
    async fn release(&self, holds: &[Hold]) {
        for hold in holds {
            let path = format!("/events/{}/seats/{}/hold", self.concert, hold.seat);
            let released = self
                .inventory
                .request(reqwest::Method::DELETE, &path)
                .bearer_auth(self.world.customer(hold.customer))
                .header("hold-token", &hold.token)
                .answer()
                .await;
            assert_eq!(released.status, StatusCode::NO_CONTENT, "release {path}");
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
            .orders
            .post_as("/orders", self.world.customer(customer))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&body)
            .answer()
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let order: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
        self.owners.lock().unwrap().insert(order, customer);
        order
    }

    async fn pay(&self, order: Uuid) {
        let owner = self.owners.lock().unwrap()[&order];
        let paid = self
            .orders
            .post_as(&format!("/orders/{order}/pay"), self.world.customer(owner))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .answer()
            .await;
        assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
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

    /// Two paid orders competing for A-1: one buys `seats`, the other
    /// (whose hold on A-1 was released to it) is refunded. Returns
    /// `(confirmed, refunded)`, both settled.
    async fn one_confirmed_one_refunded(&self, seats: &[&str]) -> (Uuid, Uuid) {
        let refunded = self.order_then_released(&["A-1"]).await;
        let confirmed = self.paid_order(seats).await;
        assert_eq!(self.settled(confirmed).await, "CONFIRMED");
        self.pay(refunded).await;
        assert_eq!(self.settled(refunded).await, "REFUNDED");
        (confirmed, refunded)
    }

    async fn status(&self, order: Uuid) -> String {
        sqlx::query_scalar("select status from orders where id = $1")
            .bind(order)
            .fetch_one(self.orders.lent::<PgPool>())
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
            .fetch_one(self.inventory.lent::<PgPool>())
            .await
            .unwrap()
    }

    async fn order_events(&self, order: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "select event_type from outbox where aggregate_id = $1 order by aggregate_version",
        )
        .bind(order)
        .fetch_all(self.orders.lent::<PgPool>())
        .await
        .unwrap()
    }
}

impl System {
    /// The concert's report, or `None` before its first sale.
    async fn report(&self) -> Option<Value> {
        let report = self
            .reporting
            .get_as(
                &format!("/reports/events/{}", self.concert),
                self.world.operator(),
            )
            .answer()
            .await;
        (report.status == StatusCode::OK).then_some(report.body)
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
    /// Stops every service, the mailer last so that it finishes, and
    /// removes the e-mail file (which a still-running worker could
    /// otherwise recreate).
    async fn stop(mut self) {
        for relay in &mut self.relays {
            relay.stop().await;
        }
        self.orders.stop().await;
        self.inventory.stop().await;
        self.reporting.stop().await;
        self.notification.stop().await;
        let _ = tokio::fs::remove_file(&self.emails).await;
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // A failed test ends here without `stop`: the services stop as
        // their `Running` drop; the file goes now.
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
async fn a_paid_order_is_confirmed_while_inventorys_requests_hold_every_connection() {
    let system = Box::pin(System::start()).await;
    let order = system.order(&system.hold(&["A-1"]).await).await;

    // A sale's requests on every connection of inventory's request pool:
    // the consumer that sells the seats has a pool of its own, so the
    // payment still settles. On one shared pool it waited for a connection
    // until its acquire timed out, again and again, for as long as the
    // requests held them (docs/design.md §4).
    let requests = system.inventory.lent::<PgPool>();
    let mut held = Vec::new();
    for _ in 0..requests.options().get_max_connections() {
        held.push(requests.acquire().await.unwrap());
    }
    system.pay(order).await;

    assert_eq!(system.settled(order).await, "CONFIRMED");
    drop(held);
    assert_eq!(system.owner_of("A-1").await, Some(order));
    system.stop().await;
}

#[tokio::test]
async fn two_paid_orders_for_one_seat_end_one_confirmed_and_one_refunded() {
    let system = Box::pin(System::start()).await;

    // The second order wants; it was created from live holds,
    // whose customer then let them go. The first order holds A-3 next and
    // is paid and settled; the second is paid after that, so which one
    // loses is known.
    let second = system.order_then_released(&["A-3", "A-1"]).await;
    let first = system.paid_order(&["A-3"]).await;
    assert_eq!(system.settled(first).await, "CONFIRMED");
    system.pay(second).await;

    assert_eq!(system.settled(second).await, "REFUNDED");
    assert_eq!(
        system.owner_of("A-3").await,
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
    .fetch_all(system.orders.lent::<PgPool>())
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
    // Both outcomes settled: one order confirmed, one refunded.
    system.one_confirmed_one_refunded(&["A-1", "A-2"]).await;

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

    let reporting = &system.reporting;
    let (db, js, topology) = (
        reporting.lent::<PgPool>(),
        reporting.lent::<async_nats::jetstream::Context>(),
        reporting.lent::<messaging::Topology>(),
    );
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
    let metrics = system.reporting.get("/metrics").answer().await.text;
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
    let (confirmed, refunded) = system.one_confirmed_one_refunded(&["A-1"]).await;

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

/// The metric names the docs promise: the first column of the Metrics
/// table in docs/operations.md, and every name in README.md that is one of
/// those or looks like a metric (`…_total`, `…_seconds`).
fn documented_metric_names() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let read = |file: &str| std::fs::read_to_string(format!("{root}/{file}")).unwrap();
    let backticked = |text: &str| -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| {
                name.contains('_') && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
            .map(str::to_owned)
            .collect()
    };
    let operations = read("docs/operations.md");
    let table = operations
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/operations.md has a Metrics section");
    let mut names: BTreeSet<String> = table
        .lines()
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(backticked)
        .collect();
    assert!(names.len() >= 20, "the Metrics table lists them: {names:?}");
    let readme = backticked(&read("README.md"));
    names.extend(readme.into_iter().filter(|name| {
        let prefixed = ["http_", "consumer_", "relay_", "seatmap_"]
            .iter()
            .any(|p| name.starts_with(p));
        prefixed && (name.ends_with("_total") || name.ends_with("_seconds"))
    }));
    names
}

#[tokio::test]
async fn every_metric_the_docs_name_is_in_a_scrape() {
    let system = Box::pin(System::start()).await;
    let order = system.paid_order(&["A-1"]).await;
    assert_eq!(system.settled(order).await, "CONFIRMED");
    system
        .inventory
        .get(&format!("/events/{}/seats", system.concert))
        .answer()
        .await;

    let mut answers = vec![
        system.orders.get("/metrics").answer().await,
        system.inventory.get("/metrics").answer().await,
        system.reporting.get("/metrics").answer().await,
        system.notification.get("/metrics").answer().await,
    ];
    for relay in &system.relays {
        answers.push(relay.get("/metrics").answer().await);
    }
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    let scraped: String = answers.into_iter().map(|a| a.text).collect();

    let missing: Vec<String> = documented_metric_names()
        .into_iter()
        .filter(|name| {
            !scraped.lines().any(|line| {
                line.starts_with(&format!("{name}{{"))
                    || line.starts_with(&format!("{name} "))
                    || line.starts_with(&format!("# TYPE {name} "))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not scraped: {missing:?}"
    );
    system.stop().await;
}
