//! A running orders service for one test, and what the test reads back
//! from its database.

use orders::{Application, Config};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use settings::Env;
use sqlx::PgPool;
use testkit::TestPostgres;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running orders service with its own database.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) db: PgPool,
    pub(crate) http: reqwest::Client,
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
        let postgres = TestPostgres::start().await;
        let mut vars = vec![
            ("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("DATABASE_URL".to_owned(), postgres.url().to_owned()),
            ("CONSUME_INVENTORY_EVENTS".to_owned(), "false".to_owned()),
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
        Self {
            base,
            db,
            http: reqwest::Client::new(),
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

    /// Creates an order and returns its id, asserting the 201.
    pub(crate) async fn created_order(&self) -> Uuid {
        let response = self.create_order(&order_body(), &new_key()).await;
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

pub(crate) fn new_key() -> String {
    Uuid::new_v4().to_string()
}

pub(crate) fn order_body() -> Value {
    json!({
        "event_id": Uuid::new_v4(),
        "seats": [
            { "seat_id": "A-1", "hold_token": Uuid::new_v4() },
            { "seat_id": "A-2", "hold_token": Uuid::new_v4() },
        ],
        "customer_email": "ada@example.com",
    })
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
