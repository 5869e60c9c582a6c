//! The API documents itself: `/openapi.json` lists exactly the routes the
//! router mounts (`inventory::http::ROUTES`), every documented route
//! answers, `/docs` serves the page that renders the document, and both
//! stay outside admission control.

use std::collections::BTreeSet;

use reqwest::{Method, Response, StatusCode, header};
use utoipa::openapi::OpenApi;
use uuid::Uuid;

use crate::app::{Servers, TestApp};

async fn document(app: &TestApp) -> OpenApi {
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("an OpenAPI document")
}

/// Whether a handler answered, rather than the router finding no route
/// (404) or no such method on it (405): those carry no problem body.
fn answered_by_a_handler(response: &Response) -> bool {
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/problem+json");
    !matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) || problem
}

#[tokio::test]
async fn openapi_json_documents_exactly_the_routes_the_router_mounts() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;

    let doc = document(&app).await;

    assert_eq!(doc.info.title, "Inventory API");
    assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
    let mounted: BTreeSet<(String, String)> = inventory::http::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(httpkit::docs::operations(&doc), mounted);
    let schemas = doc.components.expect("components").schemas;
    for schema in ["Problem", "Concert", "SeatMap", "Hold", "CreateEvent"] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_documented_route_exists() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let doc = document(&app).await;

    for (method, path) in httpkit::docs::operations(&doc) {
        // Requests that change nothing: no bodies, an unknown concert.
        let url = app.url(
            &path
                .replace("{id}", &Uuid::new_v4().to_string())
                .replace("{seat}", "A-1"),
        );
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.http.request(method.clone(), url).send().await.unwrap();
        assert!(
            answered_by_a_handler(&response),
            "{method} {path} is documented but not routed: {}",
            response.status()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn exactly_the_routes_that_declare_the_bearer_scheme_refuse_anonymous_calls() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let doc = document(&app).await;
    let secured = httpkit::docs::secured_operations(&doc);
    assert!(
        doc.components
            .as_ref()
            .is_some_and(|c| c.security_schemes.contains_key("bearer")),
        "the bearer scheme is declared"
    );

    for (method, path) in httpkit::docs::operations(&doc) {
        let url = app.url(
            &path
                .replace("{id}", &Uuid::new_v4().to_string())
                .replace("{seat}", "A-1"),
        );
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.http.request(method.clone(), url).send().await.unwrap();
        let refused = response.status() == StatusCode::UNAUTHORIZED;
        let declared = secured.contains(&(method.to_string(), path.clone()));
        assert_eq!(
            refused,
            declared,
            "{method} {path}: answered {} anonymously, bearer declared: {declared}",
            response.status()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_docs_answer_while_the_api_is_rate_limited() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(
        &servers,
        &[("RATE_LIMIT_PER_SECOND", "0.1"), ("RATE_LIMIT_BURST", "1")],
    )
    .await;
    let list = || app.http.get(app.url("/events")).send();
    assert_eq!(list().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        list().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let _ = document(&app).await;
    let page = app.http.get(app.url("/docs")).send().await.unwrap();

    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        page.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(page.text().await.unwrap().contains("openapi.json"));
    app.stop().await;
}
