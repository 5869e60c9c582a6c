//! The one test harness: a [`World`] of real servers, and [`Running`]
//! services in it.
//!
//! ```ignore
//! let world = World::start().await;
//! let inventory = Running::<inventory::Inventory>::start(&world, &[]).await;
//! let orders = Running::<orders::Orders>::start(&world, &[
//!     ("INVENTORY_URL", &inventory.base_url()),
//! ]).await;
//! let answer = orders.post("/orders").bearer_auth(world.customer(id)).json(&body).answer().await;
//! ```
//!
//! A world is Postgres (a database per service, created on first use),
//! NATS with the streams provisioned under a name prefix of its own, Redis
//! under a key prefix of its own, and an identity provider whose keys the
//! services trust. Everything is dropped with the world. A service started
//! in it gets the world's settings for every variable it shares with the
//! others (`HTTP_ADDR` on a free port, `DATABASE_URL`, `NATS_URL`,
//! `NATS_PREFIX`, `REDIS_URL`, `REDIS_PREFIX`, `AUTH_JWKS_PATH`), and the
//! test's extra settings on top.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use service::{App, Service, Serving};
use uuid::Uuid;

use crate::{TestIdentity, TestNats, TestPostgres, TestRedis};

/// Real servers for one test, dropped with it.
pub struct World {
    /// Databases: one per service, created on first use.
    pub postgres: TestPostgres,
    /// NATS, with the streams provisioned under [`TestNats::prefix`].
    pub nats: TestNats,
    /// Redis, keys under [`TestRedis::prefix`].
    pub redis: TestRedis,
    /// The identity provider the services trust.
    pub identity: TestIdentity,
    /// A client for the test's own requests.
    pub http: reqwest::Client,
}

impl World {
    /// Starts (or connects to) the servers and provisions the streams, so
    /// that consumers need not wait for a relay to create them.
    pub async fn start() -> Self {
        let world = Self::start_unprovisioned().await;
        messaging::provision(
            &world.nats.jetstream().await,
            &world.topology(),
            Duration::from_mins(10),
        )
        .await
        .expect("the streams are provisioned");
        world
    }

    /// Starts (or connects to) the servers, with no stream under the
    /// world's prefix yet: for the relay, which provisions them itself.
    pub async fn start_unprovisioned() -> Self {
        let (postgres, nats, redis) =
            tokio::join!(TestPostgres::start(), TestNats::start(), TestRedis::start());
        Self {
            postgres,
            nats,
            redis,
            identity: TestIdentity::new(),
            http: reqwest::Client::new(),
        }
    }

    /// Stream, subject and consumer names of this world.
    pub fn topology(&self) -> messaging::Topology {
        messaging::Topology::new(self.nats.prefix()).expect("a valid prefix")
    }

    /// A customer's bearer token.
    pub fn customer(&self, id: Uuid) -> String {
        self.identity.customer(id)
    }

    /// An operator's bearer token.
    pub fn operator(&self) -> String {
        self.identity.operator()
    }

    /// A concert with seats `A-1` … `A-<seats>` at 45.00, on sale now and
    /// starting in a week, created through the API of `inventory` (a running
    /// inventory service; testkit cannot name its type) as an operator
    /// would: the one way tests make concerts.
    pub async fn concert<S: Service>(&self, inventory: &Running<S>, seats: usize) -> Uuid {
        self.concert_with_sale_in(inventory, seats, chrono::Duration::zero())
            .await
    }

    /// [`World::concert`], with its sale opening `sale_in` from now (in the
    /// past when negative).
    pub async fn concert_with_sale_in<S: Service>(
        &self,
        inventory: &Running<S>,
        seats: usize,
        sale_in: chrono::Duration,
    ) -> Uuid {
        let now = chrono::Utc::now();
        let seats: Vec<_> = (1..=seats)
            .map(|i| serde_json::json!({ "seat_id": format!("A-{i}"), "price_cents": 4500 }))
            .collect();
        let created = inventory
            .post("/events")
            .bearer_auth(self.operator())
            .json(&serde_json::json!({
                "name": "Night Shift",
                "venue": "Hall 1",
                "starts_at": now + sale_in + chrono::Duration::days(7),
                "sale_opens_at": now + sale_in,
                "seats": seats,
            }))
            .answer()
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("the created concert's id")
    }

    /// The settings every service started in this world gets, for service
    /// `name` (whose database is created on first use).
    pub async fn settings(&self, name: &str) -> BTreeMap<String, String> {
        let database = self.postgres.database(name).await;
        [
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE_URL", database),
            ("NATS_URL", self.nats.url().to_owned()),
            ("NATS_PREFIX", self.nats.prefix().to_owned()),
            ("REDIS_URL", self.redis.url().to_owned()),
            ("REDIS_PREFIX", self.redis.prefix().to_owned()),
            (
                "AUTH_JWKS_PATH",
                self.identity.jwks_path().display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Service `S`, built and serving in a world, until dropped or stopped.
pub struct Running<S: Service> {
    settings: BTreeMap<String, String>,
    port: u16,
    lent: http::Extensions,
    service: PhantomData<fn() -> S>,
    http: reqwest::Client,
    serving: Serving,
}

impl<S: Service> Running<S> {
    /// Builds `S` with the world's settings and `extra` on top, and serves.
    /// A build that fails fails the test, naming the service.
    pub async fn start(world: &World, extra: &[(&str, &str)]) -> Self {
        let mut settings = world.settings(S::NAME).await;
        settings.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Self::start_with(settings, world.http.clone()).await
    }

    /// Builds `S` with exactly `settings`, and serves.
    pub async fn start_with(settings: BTreeMap<String, String>, http: reqwest::Client) -> Self {
        let app = Self::build(&settings).await;
        let port = app.port();
        let lent = app.lent_all();
        let serving = app.spawn();
        Self {
            settings,
            port,
            lent,
            service: PhantomData,
            http,
            serving,
        }
    }

    /// Builds `S` from `settings` without serving: for tests of the build
    /// itself and of the router.
    pub async fn build(settings: &BTreeMap<String, String>) -> App {
        service::build::<S>(&settings::Env::from_pairs(settings.clone()))
            .await
            .unwrap_or_else(|e| panic!("{} did not start: {e}", S::NAME))
    }

    /// Builds `S` and checks, from its router, that every route it mounts
    /// is documented and every documented route is mounted
    /// (`service::ops::route_report`); returns the document's title and
    /// its `(METHOD, path)` operations for the caller's own checks.
    pub async fn documented(
        settings: &BTreeMap<String, String>,
    ) -> (String, BTreeSet<(String, String)>) {
        let app = Self::build(settings).await;
        let report = app.route_report().await;
        assert!(
            report.undocumented.is_empty() && report.unmounted.is_empty(),
            "{}: the router and its document disagree: {report:?}",
            S::NAME
        );
        (
            app.openapi().info.title.clone(),
            httpkit::docs::operations(app.openapi()),
        )
    }

    /// Waits until `/readyz` answers 200: NATS connects in the background,
    /// so a service just started may not be ready yet.
    pub async fn ready(&self) -> Answer {
        crate::eventually(Duration::from_secs(10), "the service is ready", || async {
            self.get("/readyz").answer().await.status == StatusCode::OK
        })
        .await;
        self.get("/readyz").answer().await
    }

    /// Waits until `/metrics` shows `needle` (a value measured at scrape
    /// time, such as a consumer's lag, appears once its source exists).
    pub async fn scraped(&self, needle: &str) -> Answer {
        crate::eventually(Duration::from_secs(10), needle, || async {
            self.get("/metrics").answer().await.text.contains(needle)
        })
        .await;
        self.get("/metrics").answer().await
    }

    /// Asserts that `/docs` is the HTML page that renders `/openapi.json`.
    pub async fn assert_serves_its_docs_page(&self) {
        let page = self.get("/docs").answer().await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert_eq!(
            page.headers[reqwest::header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.text.starts_with("<!doctype html>"));
        assert!(
            page.text.contains("openapi.json"),
            "the page reads the document"
        );
    }

    /// The settings it was started with.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// What the service lent to tests, by type (`service::Builder::lend`):
    /// `inventory.lent::<PgPool>()`.
    pub fn lent<T: Clone + Send + Sync + 'static>(&self) -> &T {
        self.lent
            .get::<T>()
            .unwrap_or_else(|| panic!("{} lends no {}", S::NAME, std::any::type_name::<T>()))
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request to `path` on this service.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url()))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// `GET path` as the holder of bearer `token`.
    pub fn get_as(&self, path: &str, token: impl std::fmt::Display) -> RequestBuilder {
        self.get(path).bearer_auth(token)
    }

    /// `POST path` as the holder of bearer `token`.
    pub fn post_as(&self, path: &str, token: impl std::fmt::Display) -> RequestBuilder {
        self.post(path).bearer_auth(token)
    }

    /// Stops serving: the requests and messages in hand finish first.
    pub async fn stop(&mut self) {
        self.serving
            .stop()
            .await
            .unwrap_or_else(|e| panic!("{} failed while serving: {e}", S::NAME));
    }

    /// Stops, then starts again on the same port with the same settings,
    /// as a process restart would.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.insert("HTTP_ADDR".to_owned(), format!("127.0.0.1:{}", self.port));
        let http = self.http.clone();
        *self = Self::start_with(settings, http).await;
    }
}

/// The operations every service has (`service::ops`), as
/// [`Running::documented`] lists them: all a service without a business
/// API documents.
pub fn operational_routes() -> BTreeSet<(String, String)> {
    ["/docs", "/healthz", "/metrics", "/openapi.json", "/readyz"]
        .into_iter()
        .map(|path| ("GET".to_owned(), path.to_owned()))
        .collect()
}

/// A response read whole: status, headers, and the body as JSON (`Null`
/// when it is empty or not JSON, with the text kept).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, parsed.
    pub body: serde_json::Value,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// Asserts that the body contains `needle` (a metric line, say),
    /// showing the whole body when it does not.
    #[track_caller]
    pub fn assert_contains(&self, needle: &str) {
        assert!(
            self.text.contains(needle),
            "expected {needle:?} in:\n{}",
            self.text
        );
    }

    /// The body's `type` member: a problem's type, e.g. `/problems/sold-out`.
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

/// Sending a request and reading its answer in one step.
pub trait Ask {
    /// Sends the request; a transport error fails the test.
    fn answer(self) -> impl Future<Output = Answer> + Send;
}

impl Ask for RequestBuilder {
    async fn answer(self) -> Answer {
        let response = self.send().await.expect("the service answers");
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.expect("the body arrives");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }
}
