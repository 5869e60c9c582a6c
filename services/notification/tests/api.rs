//! Notification's HTTP routes against real Postgres and NATS: they are
//! documented. `/openapi.json` lists exactly the routes the service mounts
//! (`notification::startup::ROUTES`), each of them answers, and `/docs`
//! serves the page that renders the document.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{StatusCode, header};
use testkit::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;

/// A running notification service with its own database and stream prefix.
struct World {
    base: String,
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
        let env = settings::Env::from_pairs(
            [
                ("HTTP_ADDR", "127.0.0.1:0"),
                ("DATABASE_URL", postgres.url()),
                ("NATS_URL", nats.url()),
                ("NATS_PREFIX", nats.prefix()),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let app = notification::Application::build(notification::Config::from_env(&env).unwrap())
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base,
            shutdown,
            _postgres: postgres,
            _nats: nats,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.base)).await.unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn openapi_json_documents_exactly_the_routes_the_service_mounts_and_each_answers() {
    let world = World::start().await;

    let response = world.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: OpenApi = response.json().await.expect("an OpenAPI document");

    let mounted: BTreeSet<(String, String)> = notification::startup::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let documented = httpkit::docs::operations(&doc);
    assert_eq!(documented, mounted);
    // Every route is a GET without parameters: each answers something
    // other than the router's 404.
    for (_, path) in documented {
        let status = world.get(&path).await.status();
        assert_ne!(
            status,
            StatusCode::NOT_FOUND,
            "{path} is documented but not routed"
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
