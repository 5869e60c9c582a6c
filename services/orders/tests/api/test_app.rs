//! A running orders service for one test, with a real inventory next to it
//! (orders verifies every order's holds there), and what the test reads
//! back from the orders database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orders::{Application, Config};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use settings::Env;
use sqlx::PgPool;
use testkit::{TestIdentity, TestNats, TestPostgres, TestRedis};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running orders service with its own database and its own inventory,
/// and the customer the test acts as.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) db: PgPool,
    /// Requests as [`Self::customer`] (its bearer token on every request).
    pub(crate) http: reqwest::Client,
    /// The customer the helpers act as.
    pub(crate) customer: Uuid,
    pub(crate) inventory: TestInventory,
    shutdown: CancellationToken,
    // The database outlives the service's tasks only loosely (dropping
    // cancels them without waiting); the drop uses `with (force)`, which
    // disconnects whatever is still connected.
    _postgres: TestPostgres,
}

impl TestApp {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Spawns with extra environment settings, e.g. `("IDEMPOTENCY_KEY_TTL", "1s")`.
    pub(crate) async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let inventory = TestInventory::start(&[]).await;
        Self::spawn_next_to(inventory, extra).await
    }

    /// Spawns orders talking to `inventory` (one started with settings of
    /// the test's choosing), with extra orders settings.
    pub(crate) async fn spawn_next_to(inventory: TestInventory, extra: &[(&str, &str)]) -> Self {
        let postgres = TestPostgres::start().await;
        let mut vars = vec![
            ("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("DATABASE_URL".to_owned(), postgres.url().to_owned()),
            ("CONSUME_INVENTORY_EVENTS".to_owned(), "false".to_owned()),
            ("INVENTORY_URL".to_owned(), inventory.base.clone()),
            // The same identity provider as inventory's: orders passes the
            // customer's token on, and both must trust it.
            (
                "AUTH_JWKS_PATH".to_owned(),
                inventory.identity.jwks_path().display().to_string(),
            ),
            // Tests fire many requests as one customer; `admission.rs`
            // sets its own limits.
            ("RATE_LIMIT_PER_SECOND".to_owned(), "100000".to_owned()),
            ("RATE_LIMIT_BURST".to_owned(), "100000".to_owned()),
            ("MAX_IN_FLIGHT".to_owned(), "5000".to_owned()),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_env(&Env::from_pairs(vars)).expect("test config");
        let app = Application::build(config).await.expect("orders starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let db = app.db().clone();
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let customer = Uuid::new_v4();
        Self {
            base,
            db,
            http: inventory.client_for(customer),
            customer,
            inventory,
            shutdown,
            _postgres: postgres,
        }
    }

    pub(crate) async fn create_order(&self, body: &Value, key: &str) -> Response {
        self.http
            .post(format!("{}/orders", self.base))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A valid create body: two fresh seats of the test concert, held in
    /// inventory by a new customer.
    pub(crate) async fn order_body(&self) -> Value {
        self.order_body_for(2).await.0
    }

    /// A create body for `seats` fresh seats held by the test's customer,
    /// and the holds as inventory granted them (`hold_token`,
    /// `fencing_token`…).
    pub(crate) async fn order_body_for(&self, seats: usize) -> (Value, Vec<Value>) {
        let customer = self.customer;
        let mut holds = Vec::with_capacity(seats);
        for seat in self.inventory.fresh_seats(seats) {
            holds.push(self.inventory.held(&seat, customer).await);
        }
        let body = json!({
            "event_id": self.inventory.concert,
            "seats": holds
                .iter()
                .map(|h| json!({ "seat_id": h["seat_id"], "hold_token": h["hold_token"] }))
                .collect::<Vec<_>>(),
            "customer_email": "ada@example.com",
        });
        (body, holds)
    }

    /// Creates an order and returns its id, asserting the 201.
    pub(crate) async fn created_order(&self) -> Uuid {
        let response = self
            .create_order(&self.order_body().await, &new_key())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub(crate) async fn command(&self, order_id: Uuid, verb: &str, key: &str) -> Response {
        self.http
            .post(format!("{}/orders/{order_id}/{verb}", self.base))
            .header("idempotency-key", key)
            .send()
            .await
            .expect("request sent")
    }

    pub(crate) async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&self.db)
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
        .fetch_all(&self.db)
        .await
        .unwrap()
    }

    pub(crate) async fn status_of(&self, order_id: Uuid) -> String {
        sqlx::query_scalar("select status from orders where id = $1")
            .bind(order_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How many seats the test concert has; a test takes fresh ones as it goes.
const CONCERT_SEATS: usize = 100;

/// A real inventory service for one test: its own database, NATS prefix
/// and Redis key prefix, the identity provider it trusts, and a concert
/// with [`CONCERT_SEATS`] seats `A-1`… created through its API.
pub(crate) struct TestInventory {
    pub(crate) base: String,
    pub(crate) concert: Uuid,
    /// Requests with an operator's token.
    pub(crate) http: reqwest::Client,
    pub(crate) identity: TestIdentity,
    port: u16,
    vars: Vec<(String, String)>,
    next_seat: AtomicUsize,
    shutdown: CancellationToken,
    stopped: Option<JoinHandle<std::io::Result<()>>>,
    _servers: (TestPostgres, TestNats, TestRedis),
}

impl TestInventory {
    /// Starts inventory on the shared Redis, with extra settings such as
    /// `("HOLD_TTL", "1s")`.
    pub(crate) async fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_with_redis(None, extra).await
    }

    /// Starts inventory on `redis_url` (a server the test can stop) if given.
    pub(crate) async fn start_with_redis(redis_url: Option<&str>, extra: &[(&str, &str)]) -> Self {
        let (postgres, nats, redis) = (
            TestPostgres::start().await,
            TestNats::start().await,
            TestRedis::start().await,
        );
        // Streams first, so inventory's consumer need not wait for a relay
        // to create them.
        let js = async_nats::jetstream::new(nats.client().await);
        let topology = messaging::Topology::new(nats.prefix()).unwrap();
        messaging::provision(&js, &topology, Duration::from_mins(10))
            .await
            .unwrap();
        let identity = TestIdentity::new();
        let jwks_path = identity.jwks_path().display().to_string();
        let mut vars: Vec<(String, String)> = [
            ("DATABASE_URL", postgres.url()),
            ("NATS_URL", nats.url()),
            ("NATS_PREFIX", nats.prefix()),
            ("REDIS_URL", redis_url.unwrap_or(redis.url())),
            ("REDIS_PREFIX", redis.prefix()),
            ("AUTH_JWKS_PATH", jwks_path.as_str()),
            // Each test acts as one customer, and some order many seats.
            ("HOLD_LIMIT", "1000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let shutdown = CancellationToken::new();
        let (port, stopped) = run_inventory(&vars, 0, &shutdown).await;
        let operator = authorized(&identity.operator());
        let mut inventory = Self {
            base: format!("http://127.0.0.1:{port}"),
            concert: Uuid::nil(),
            http: operator,
            identity,
            port,
            vars,
            next_seat: AtomicUsize::new(1),
            shutdown,
            stopped: Some(stopped),
            _servers: (postgres, nats, redis),
        };
        inventory.concert = inventory.create_concert().await;
        inventory
    }

    async fn create_concert(&self) -> Uuid {
        let now = chrono::Utc::now();
        let body = json!({
            "name": "Night Shift",
            "venue": "Hall 1",
            "starts_at": now + chrono::Duration::days(30),
            "sale_opens_at": now,
            "seats": (1..=CONCERT_SEATS)
                .map(|i| json!({ "seat_id": format!("A-{i}"), "price_cents": 4500 }))
                .collect::<Vec<_>>(),
        });
        let response = self
            .http
            .post(format!("{}/events", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "concert created");
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// `n` seats no earlier call returned.
    pub(crate) fn fresh_seats(&self, n: usize) -> Vec<String> {
        let first = self.next_seat.fetch_add(n, Ordering::SeqCst);
        assert!(
            first + n - 1 <= CONCERT_SEATS,
            "the test concert has only {CONCERT_SEATS} seats"
        );
        (first..first + n).map(|i| format!("A-{i}")).collect()
    }

    /// A client whose every request carries `customer`'s bearer token.
    pub(crate) fn client_for(&self, customer: Uuid) -> reqwest::Client {
        authorized(&self.identity.customer(customer))
    }

    /// Asks for a hold on `seat` of the concert for `customer`, as the
    /// customer's browser would (with their bearer token).
    pub(crate) async fn hold(&self, seat: &str, customer: Uuid) -> Response {
        self.client_for(customer)
            .post(format!(
                "{}/events/{}/seats/{seat}/hold",
                self.base, self.concert
            ))
            .send()
            .await
            .unwrap()
    }

    /// Holds `seat` for `customer`, asserting the 201; returns the hold.
    pub(crate) async fn held(&self, seat: &str, customer: Uuid) -> Value {
        let response = self.hold(seat, customer).await;
        assert_eq!(response.status(), StatusCode::CREATED, "hold {seat}");
        response.json().await.unwrap()
    }

    /// Releases `customer`'s hold, asserting the 204.
    pub(crate) async fn release(&self, seat: &str, hold_token: &str, customer: Uuid) {
        let response = self
            .client_for(customer)
            .delete(format!(
                "{}/events/{}/seats/{seat}/hold",
                self.base, self.concert
            ))
            .header("hold-token", hold_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "release {seat}");
    }

    /// Inventory's own answer to `customer`'s verification of the holds in
    /// `body`.
    pub(crate) async fn verify_status(&self, body: &Value, customer: Uuid) -> StatusCode {
        self.client_for(customer)
            .post(format!("{}/holds/verify", self.base))
            .json(&json!({ "event_id": body["event_id"], "seats": body["seats"] }))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Stops the service and waits until it has: its port refuses
    /// connections afterwards.
    pub(crate) async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(stopped) = self.stopped.take() {
            stopped.await.unwrap().unwrap();
        }
    }

    /// Starts it again on the same port, with the same database and Redis
    /// (so holds granted before are still there).
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        self.shutdown = CancellationToken::new();
        let (_, stopped) = run_inventory(&self.vars, self.port, &self.shutdown).await;
        self.stopped = Some(stopped);
    }
}

impl Drop for TestInventory {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds and spawns inventory with `vars`, listening on `port` (0: any).
async fn run_inventory(
    vars: &[(String, String)],
    port: u16,
    shutdown: &CancellationToken,
) -> (u16, JoinHandle<std::io::Result<()>>) {
    let mut vars = vars.to_vec();
    vars.push(("HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")));
    let config = inventory::Config::from_env(&Env::from_pairs(vars)).expect("inventory config");
    let app = inventory::Application::build(config)
        .await
        .expect("inventory starts");
    let port = app.port();
    (port, tokio::spawn(app.run_until_stopped(shutdown.clone())))
}

/// A client whose every request carries `token`.
fn authorized(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub(crate) fn new_key() -> String {
    Uuid::new_v4().to_string()
}

/// Asserts a problem+json response and returns its body.
pub(crate) async fn problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], kind, "{body}");
    body
}

/// Makes every `op` (`insert` or `update`) on `table` sleep `seconds` first,
/// so that concurrent requests provably overlap instead of hopefully.
pub(crate) async fn slow_down(app: &TestApp, op: &str, table: &str, seconds: f64) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r"
        create function slow_down() returns trigger language plpgsql as $$
        begin
            perform pg_sleep({seconds});
            return new;
        end $$;
        create trigger slow_down before {op} on {table}
            for each row execute function slow_down();
        "
    )))
    .execute(&app.db)
    .await
    .unwrap();
}
