//! The relay documents its routes: `/openapi.json` lists exactly the
//! routes the router mounts (`relay::http::ROUTES`), each of them answers,
//! and `/docs` serves the page that renders the document.

use std::collections::BTreeSet;

use testkit::TestNats;
use utoipa::openapi::OpenApi;

use crate::World;

#[tokio::test]
async fn openapi_json_documents_exactly_the_routes_the_router_mounts_and_each_answers() {
    let nats = TestNats::start().await;
    let world = World::new(nats.url(), nats.prefix()).await;
    let relay = world.spawn_relay(&[]).await;

    let (status, body) = relay.get("/openapi.json").await;
    assert_eq!(status, 200);
    let doc: OpenApi = serde_json::from_str(&body).expect("an OpenAPI document");

    let mounted: BTreeSet<(String, String)> = relay::http::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let documented = httpkit::docs::operations(&doc);
    assert_eq!(documented, mounted);
    // Every route is a GET without parameters: each answers something
    // other than the router's 404 (readiness may be 503 while it starts).
    for (_, path) in documented {
        let (status, _) = relay.get(&path).await;
        assert_ne!(status, 404, "{path} is documented but not routed");
    }
    relay.stop().await;
}

#[tokio::test]
async fn docs_is_an_html_page_that_reads_the_document() {
    let nats = TestNats::start().await;
    let world = World::new(nats.url(), nats.prefix()).await;
    let relay = world.spawn_relay(&[]).await;

    let (status, page) = relay.get("/docs").await;

    assert_eq!(status, 200);
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("openapi.json"));
    relay.stop().await;
}
