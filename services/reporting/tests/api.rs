//! The reports API against real Postgres and NATS: it documents itself.
//! `/openapi.json` lists exactly the routes the router mounts
//! (`reporting::http::ROUTES`), each of them answers, and `/docs` serves
//! the page that renders the document. Reports are for operators only.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use testkit::{TestIdentity, TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;
use uuid::Uuid;

/// A running reporting service with its own database and stream prefix.
struct World {
    base: String,
    http: reqwest::Client,
    identity: TestIdentity,
    shutdown: CancellationToken,
    _postgres: TestPostgres,
    _nats: TestNats,
}

impl World {
    async fn start() -> Self {
        let (postgres, nats) = (TestPostgres::start().await, TestNats::start().await);
        let js = async_nats::jetstream::new(nats.client().await);
        let topology = messaging::Topology::new(nats.prefix()).unwrap();
        messaging::provision(&js, &topology, Duration::from_mins(1))
            .await
            .unwrap();
        let identity = TestIdentity::new();
        let jwks_path = identity.jwks_path().display().to_string();
        let env = settings::Env::from_pairs(
            [
                ("HTTP_ADDR", "127.0.0.1:0"),
                ("DATABASE_URL", postgres.url()),
                ("NATS_URL", nats.url()),
                ("NATS_PREFIX", nats.prefix()),
                ("AUTH_JWKS_PATH", jwks_path.as_str()),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let app = reporting::Application::build(reporting::Config::from_env(&env).unwrap())
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base,
            http: reqwest::Client::new(),
            identity,
            shutdown,
            _postgres: postgres,
            _nats: nats,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn openapi_json_documents_exactly_the_routes_the_router_mounts_and_each_answers() {
    let world = World::start().await;

    let response = world.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: OpenApi = response.json().await.expect("an OpenAPI document");

    assert_eq!(doc.info.title, "Reporting API");
    let mounted: BTreeSet<(String, String)> = reporting::http::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let documented = httpkit::docs::operations(&doc);
    assert_eq!(documented, mounted);
    for (method, path) in documented {
        let url = format!(
            "{}{}",
            world.base,
            path.replace("{id}", &Uuid::new_v4().to_string())
        );
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = world
            .http
            .request(method.clone(), url)
            .send()
            .await
            .unwrap();
        // The router's own 404 and 405 carry no problem body.
        let problem = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json");
        assert!(
            !matches!(
                response.status(),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) || problem,
            "{method} {path} is documented but not routed: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn docs_is_an_html_page_that_reads_the_document() {
    let world = World::start().await;

    let response = world.get("/docs").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(response.text().await.unwrap().contains("openapi.json"));
}

#[tokio::test]
async fn a_report_needs_an_operators_token() {
    let world = World::start().await;
    let url = format!("{}/reports/events/{}", world.base, Uuid::new_v4());
    let send = |token: Option<String>| {
        let mut request = world.http.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let anonymous = send(None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key(header::WWW_AUTHENTICATE));
    let customer = send(Some(world.identity.customer(Uuid::new_v4())))
        .await
        .unwrap();
    assert_eq!(customer.status(), StatusCode::FORBIDDEN);
    // The operator gets through to the report: none exists yet.
    let operator = send(Some(world.identity.operator())).await.unwrap();
    assert_eq!(operator.status(), StatusCode::NOT_FOUND);
    let problem: serde_json::Value = operator.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/report-not-found");
}
