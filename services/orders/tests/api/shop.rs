//! What every test starts from: a [`World`] with a real inventory in it,
//! selling a concert, and orders next to it verifying holds there; the
//! customer the test acts as; and what the test reads back from the orders
//! database.

use std::sync::atomic::{AtomicUsize, Ordering};

use orders::Orders;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{Answer, Ask as _, Running, World};
use uuid::Uuid;

/// How many seats the test concert has; a test takes fresh ones as it goes.
const CONCERT_SEATS: usize = 100;

/// Orders and inventory in one world, a concert on sale, and the customer
/// the helpers act as.
pub(crate) struct Shop {
    pub(crate) orders: Running<Orders>,
    pub(crate) inventory: Running<inventory::Inventory>,
    /// The concert whose seats [`Shop::fresh_seats`] hands out.
    pub(crate) concert: Uuid,
    /// The customer the helpers act as.
    pub(crate) customer: Uuid,
    next_seat: AtomicUsize,
    // Last: the services stop before their servers go.
    pub(crate) world: World,
}

impl Shop {
    pub(crate) async fn open() -> Self {
        Self::open_with(&[], &[]).await
    }

    /// Opens with extra settings for inventory (`("HOLD_TTL", "1s")`) and
    /// for orders (`("INVENTORY_TIMEOUT", "300ms")`).
    pub(crate) async fn open_with(
        inventory_extra: &[(&str, &str)],
        orders_extra: &[(&str, &str)],
    ) -> Self {
        let world = World::start().await;
        // Each test acts as one customer, and some order many seats.
        let inventory = [&[("HOLD_LIMIT", "1000")], inventory_extra].concat();
        // Boxed: building a service is a large future, and every test awaits
        // this one.
        let inventory = Box::pin(Running::<inventory::Inventory>::start(&world, &inventory)).await;
        let inventory_url = inventory.base_url();
        let defaults = [
            ("INVENTORY_URL", inventory_url.as_str()),
            // The reactions to inventory's answers are the saga test's
            // (tests/tests/saga.rs); these tests pay without them.
            ("CONSUME_INVENTORY_EVENTS", "false"),
            // Tests fire many requests as one customer; `admission.rs`
            // sets its own limits.
            ("RATE_LIMIT_PER_SECOND", "100000"),
            ("RATE_LIMIT_BURST", "100000"),
            ("MAX_IN_FLIGHT", "5000"),
        ];
        let orders = Box::pin(Running::<Orders>::start(
            &world,
            &[&defaults, orders_extra].concat(),
        ))
        .await;
        Self {
            concert: world.concert(&inventory, CONCERT_SEATS).await,
            orders,
            inventory,
            customer: Uuid::new_v4(),
            next_seat: AtomicUsize::new(1),
            world,
        }
    }

    /// `POST /events` to inventory, as an operator: a concert of the
    /// test's own making.
    pub(crate) async fn create_event(&self, body: &Value) -> Answer {
        let operator = self.world.operator();
        let request = self.inventory.post("/events").bearer_auth(operator);
        request.json(body).answer().await
    }

    /// The orders database.
    pub(crate) fn db(&self) -> &PgPool {
        self.orders.lent::<PgPool>()
    }

    /// `request` as [`Self::customer`], with their bearer token.
    pub(crate) fn signed(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(self.world.customer(self.customer))
    }

    /// `POST /orders` with `body` under `key`, as the customer.
    pub(crate) async fn create_order(&self, body: &Value, key: &str) -> Answer {
        let request = self.signed(self.orders.post("/orders"));
        request
            .header("idempotency-key", key)
            .json(body)
            .answer()
            .await
    }

    /// `POST /orders/{id}/{verb}` under `key`, as the customer.
    pub(crate) async fn command(&self, order_id: Uuid, verb: &str, key: &str) -> Answer {
        self.post_keyed(&format!("/orders/{order_id}/{verb}"), key)
            .await
    }

    /// `POST path` without a body under `key`, as the customer.
    pub(crate) async fn post_keyed(&self, path: &str, key: &str) -> Answer {
        let request = self.signed(self.orders.post(path));
        request.header("idempotency-key", key).answer().await
    }

    /// `GET /orders/{id}`, as the customer.
    pub(crate) async fn read_order(&self, order_id: Uuid) -> Answer {
        let request = self.signed(self.orders.get(&format!("/orders/{order_id}")));
        request.answer().await
    }

    /// A valid create body: two fresh seats of the test concert, held in
    /// inventory by the test's customer.
    pub(crate) async fn order_body(&self) -> Value {
        self.order_body_for(2).await.0
    }

    /// A create body for `seats` fresh seats held by the test's customer,
    /// and the holds as inventory granted them (`hold_token`,
    /// `fencing_token`…).
    pub(crate) async fn order_body_for(&self, seats: usize) -> (Value, Vec<Value>) {
        let mut holds = Vec::with_capacity(seats);
        for seat in self.fresh_seats(seats) {
            holds.push(self.held(self.concert, &seat, self.customer).await);
        }
        let seats = holds
            .iter()
            .map(|h| json!({ "seat_id": h["seat_id"], "hold_token": h["hold_token"] }))
            .collect::<Vec<_>>();
        let body = json!({
            "event_id": self.concert, "seats": seats, "customer_email": "ada@example.com",
        });
        (body, holds)
    }

    /// Creates an order and returns its id, asserting the 201.
    pub(crate) async fn created_order(&self) -> Uuid {
        let created = self
            .create_order(&self.order_body().await, &new_key())
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        id_of(&created.body)
    }

    /// `n` seats of the concert no earlier call returned.
    pub(crate) fn fresh_seats(&self, n: usize) -> Vec<String> {
        let first = self.next_seat.fetch_add(n, Ordering::SeqCst);
        assert!(
            first + n - 1 <= CONCERT_SEATS,
            "the test concert has only {CONCERT_SEATS} seats"
        );
        (first..first + n).map(|i| format!("A-{i}")).collect()
    }

    /// Holds `seat` of `concert` for `customer`, as the customer's browser
    /// would (with their token), asserting the 201; returns the hold.
    pub(crate) async fn held(&self, concert: Uuid, seat: &str, customer: Uuid) -> Value {
        let path = format!("/events/{concert}/seats/{seat}/hold");
        let request = self.inventory.post(&path);
        let hold = request
            .bearer_auth(self.world.customer(customer))
            .answer()
            .await;
        assert_eq!(
            hold.status,
            StatusCode::CREATED,
            "hold {seat}: {}",
            hold.text
        );
        hold.body
    }

    /// Releases the customer's `hold` (as [`Self::held`] returned it),
    /// asserting the 204.
    pub(crate) async fn release(&self, hold: &Value) {
        let path = format!(
            "/events/{}/seats/{}/hold",
            self.concert,
            hold["seat_id"].as_str().unwrap()
        );
        let request = self.signed(self.inventory.request(reqwest::Method::DELETE, &path));
        let released = request
            .header("hold-token", hold["hold_token"].as_str().unwrap())
            .answer()
            .await;
        assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.text);
    }

    /// Inventory's own answer to the customer's verification of the holds
    /// in `body`.
    pub(crate) async fn verify_status(&self, body: &Value) -> StatusCode {
        let request = self.signed(self.inventory.post("/holds/verify"));
        let verify = json!({ "event_id": body["event_id"], "seats": body["seats"] });
        request.json(&verify).answer().await.status
    }

    pub(crate) async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(self.db())
            .await
            .unwrap()
    }

    /// Asserts that no table a create writes has a row.
    pub(crate) async fn assert_nothing_written(&self) {
        for table in ["orders", "order_lines", "outbox", "idempotency_keys"] {
            assert_eq!(self.count(table).await, 0, "{table} was written");
        }
    }

    /// `(event_type, aggregate_version)` of every outbox row of `order_id`.
    pub(crate) async fn events_of(&self, order_id: Uuid) -> Vec<(String, i64)> {
        sqlx::query_as(
            "select event_type, aggregate_version from outbox where aggregate_id = $1 order by aggregate_version",
        )
        .bind(order_id)
        .fetch_all(self.db())
        .await
        .unwrap()
    }

    pub(crate) async fn status_of(&self, order_id: Uuid) -> String {
        sqlx::query_scalar("select status from orders where id = $1")
            .bind(order_id)
            .fetch_one(self.db())
            .await
            .unwrap()
    }

    /// Runs `sql` (triggers, functions) on the orders database.
    pub(crate) async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(self.db())
            .await
            .unwrap();
    }

    /// Runs the PL/pgSQL `body` before each `op` (`insert`, `update`) on
    /// `table`: failures and delays injected from outside the code under
    /// test. One such trigger per `op` and `table`.
    pub(crate) async fn before_each(&self, op: &str, table: &str, body: &str) {
        let name = format!("before_{op}_on_{table}");
        self.execute(&format!(
            r"
            create function {name}() returns trigger language plpgsql as $$
            begin
                {body}
            end $$;
            create trigger {name} before {op} on {table}
                for each row execute function {name}();
            "
        ))
        .await;
    }

    /// Makes every `op` on `table` sleep `seconds` first, so that
    /// concurrent requests provably overlap instead of hopefully.
    pub(crate) async fn slow_down(&self, op: &str, table: &str, seconds: f64) {
        let sleep = format!("perform pg_sleep({seconds}); return new;");
        self.before_each(op, table, &sleep).await;
    }
}

pub(crate) fn new_key() -> String {
    Uuid::new_v4().to_string()
}

/// The `id` of a created order or concert.
pub(crate) fn id_of(body: &Value) -> Uuid {
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Asserts a problem+json answer and returns its body.
pub(crate) fn problem(answer: Answer, status: StatusCode, kind: &str) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert_eq!(answer.problem_type(), kind, "{}", answer.text);
    answer.body
}
