//! A running inventory service for one test: its own database, NATS
//! prefix and Redis key prefix, and helpers to arrange and read back.

use std::sync::atomic::Ordering;

use consumer::{Delivery, Handler as _};
use contracts::Envelope;
use contracts::orders::{OrderPaid, OrderSeat};
use inventory::allocation::SeatAllocation;
use inventory::seatmap::SeatMaps;
use inventory::{Application, Config};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use settings::Env;
use sqlx::PgPool;
use testkit::{TestIdentity, TestNats, TestPostgres, TestRedis};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The servers one test's inventory instances share, and the identity
/// provider whose tokens they trust.
pub(crate) struct Servers {
    pub(crate) postgres: TestPostgres,
    pub(crate) nats: TestNats,
    pub(crate) redis: TestRedis,
    pub(crate) identity: TestIdentity,
}

impl Servers {
    pub(crate) async fn start() -> Self {
        Self {
            postgres: TestPostgres::start().await,
            nats: TestNats::start().await,
            redis: TestRedis::start().await,
            identity: TestIdentity::new(),
        }
    }
}

/// A running inventory instance.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) db: PgPool,
    /// Anonymous requests.
    pub(crate) http: reqwest::Client,
    /// Requests with an operator's token.
    pub(crate) ops: reqwest::Client,
    issuer: httpkit::auth::dev::Issuer,
    pub(crate) seat_maps: SeatMaps,
    shutdown: CancellationToken,
    stopped: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    /// An instance on `servers`, with extra settings such as `("HOLD_TTL", "1s")`.
    pub(crate) async fn spawn(servers: &Servers, extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_redis(servers, servers.redis.url(), extra).await
    }

    /// An instance whose Redis is `redis_url` (a restartable server).
    pub(crate) async fn spawn_with_redis(
        servers: &Servers,
        redis_url: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let jwks_path = servers.identity.jwks_path().display().to_string();
        let mut vars: Vec<(String, String)> = [
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", servers.postgres.url()),
            ("NATS_URL", servers.nats.url()),
            ("NATS_PREFIX", servers.nats.prefix()),
            ("REDIS_URL", redis_url),
            ("REDIS_PREFIX", servers.redis.prefix()),
            ("AUTH_JWKS_PATH", jwks_path.as_str()),
            // Tests fire hundreds of requests from one address.
            ("RATE_LIMIT_PER_SECOND", "100000"),
            ("RATE_LIMIT_BURST", "100000"),
            ("MAX_IN_FLIGHT", "5000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_env(&Env::from_pairs(vars)).expect("test config");
        let app = Application::build(config).await.expect("inventory starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let db = app.db().clone();
        let seat_maps = app.seat_maps().clone();
        let shutdown = CancellationToken::new();
        let stopped = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let mut operator = reqwest::header::HeaderMap::new();
        operator.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", servers.identity.operator())
                .parse()
                .unwrap(),
        );
        Self {
            base,
            db,
            http: reqwest::Client::new(),
            ops: reqwest::Client::builder()
                .default_headers(operator)
                .build()
                .unwrap(),
            issuer: servers.identity.issuer().clone(),
            seat_maps,
            shutdown,
            stopped,
        }
    }

    /// Stops the instance and waits until it has.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.stopped.await.unwrap().unwrap();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A bearer token for `customer` from the issuer this instance trusts.
    pub(crate) fn token(&self, customer: Uuid) -> String {
        self.issuer
            .mint(&httpkit::auth::dev::TokenRequest::customer(customer))
            .unwrap()
    }

    /// Creates a concert whose sale opens in `sale_in` with `seats` seats
    /// `A-1`…, and returns its id.
    pub(crate) async fn concert_with_sale_in(
        &self,
        seats: usize,
        sale_in: chrono::Duration,
    ) -> Uuid {
        let now = chrono::Utc::now();
        let body = json!({
            "name": "Night Shift",
            "venue": "Hall 1",
            "starts_at": now + sale_in + chrono::Duration::days(7),
            "sale_opens_at": now + sale_in,
            "seats": (1..=seats).map(|i| json!({ "seat_id": format!("A-{i}"), "price_cents": 4500 })).collect::<Vec<_>>(),
        });
        let response = self
            .ops
            .post(self.url("/events"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().parse().unwrap()
    }

    pub(crate) async fn concert(&self, seats: usize) -> Uuid {
        self.concert_with_sale_in(seats, chrono::Duration::zero())
            .await
    }

    pub(crate) async fn seat_map(&self, event: Uuid) -> Response {
        self.http
            .get(self.url(&format!("/events/{event}/seats")))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn hold(&self, event: Uuid, seat: &str, customer: Uuid) -> Response {
        self.http
            .post(self.url(&format!("/events/{event}/seats/{seat}/hold")))
            .bearer_auth(self.token(customer))
            .send()
            .await
            .unwrap()
    }

    /// Holds a seat, asserting the 201; returns `(hold_token, fencing_token)`.
    pub(crate) async fn held(&self, event: Uuid, seat: &str, customer: Uuid) -> (Uuid, i64) {
        let response = self.hold(event, seat, customer).await;
        assert_eq!(response.status(), StatusCode::CREATED, "hold {seat}");
        let hold: Value = response.json().await.unwrap();
        (
            hold["hold_token"].as_str().unwrap().parse().unwrap(),
            hold["fencing_token"].as_i64().unwrap(),
        )
    }

    /// Retries the hold every 50 ms until it is granted (the seat's hold
    /// lapsed, Redis came back…); returns its fencing token.
    pub(crate) async fn hold_once_free(
        &self,
        event: Uuid,
        seat: &str,
        customer: Uuid,
        within: std::time::Duration,
    ) -> i64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let response = self.hold(event, seat, customer).await;
            if response.status() == StatusCode::CREATED {
                let hold: Value = response.json().await.unwrap();
                return hold["fencing_token"].as_i64().unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "seat {seat} not granted within {within:?}: last answer {}",
                response.status()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn db_loads(&self) -> u64 {
        self.seat_maps.metrics().db_loads.load(Ordering::SeqCst)
    }

    /// Runs the sale of `seats` (with their fencing tokens) for a new order,
    /// as the consumer does on `OrderPaid`; returns the order id and the
    /// answer's event type.
    pub(crate) async fn sell(&self, event: Uuid, seats: &[(&str, Option<i64>)]) -> (Uuid, String) {
        let delivery = paid(event, seats);
        let order_id = delivery.envelope.aggregate_id;
        let mut tx = self.db.begin().await.unwrap();
        let allocation = SeatAllocation {
            outbox: outbox::Writer::new(),
            seat_maps: Some(self.seat_maps.clone()),
        };
        allocation.handle(&mut tx, &delivery).await.unwrap();
        tx.commit().await.unwrap();
        allocation.after_commit(&delivery).await;
        let answer: String = sqlx::query_scalar(
            "select event_type from outbox where aggregate_id = $1 and event_type <> 'OrderPaid'",
        )
        .bind(order_id)
        .fetch_one(&self.db)
        .await
        .unwrap();
        (order_id, answer)
    }

    pub(crate) async fn owner_of(&self, event: Uuid, seat: &str) -> Option<Uuid> {
        sqlx::query_scalar("select order_id from seats where event_id = $1 and seat_id = $2")
            .bind(event)
            .bind(seat)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

/// An `OrderPaid` delivery for a new order of `seats` with fencing tokens.
pub(crate) fn paid(concert: Uuid, seats: &[(&str, Option<i64>)]) -> Delivery {
    let order_id = Uuid::new_v4();
    let data = OrderPaid {
        order_id,
        event_id: concert,
        customer_email: "ada@example.com".into(),
        seats: seats
            .iter()
            .map(|(seat, fence)| OrderSeat {
                seat_id: (*seat).into(),
                fencing_token: *fence,
            })
            .collect(),
        paid_at: chrono::Utc::now(),
    };
    let envelope = Envelope::new("orders", order_id, 2, chrono::Utc::now(), data);
    Delivery {
        envelope: Envelope {
            event_id: envelope.event_id,
            event_type: envelope.event_type,
            schema_version: envelope.schema_version,
            aggregate_type: envelope.aggregate_type,
            aggregate_id: envelope.aggregate_id,
            aggregate_version: envelope.aggregate_version,
            occurred_at: envelope.occurred_at,
            producer: envelope.producer,
            data: serde_json::to_value(&envelope.data).unwrap(),
        },
        subject: "orders.events.order_paid".into(),
        stream_sequence: 1,
        delivered: 1,
    }
}

/// The `Retry-After` header in seconds; fails the test if it is missing.
pub(crate) fn retry_after(response: &Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}
