//! The API documents itself: `/openapi.json` lists exactly the routes the
//! router mounts (`orders::http::ROUTES`), every documented route answers,
//! and `/docs` serves the page that renders the document.

use std::collections::BTreeSet;

use reqwest::{Method, Response, StatusCode, header};
use utoipa::openapi::OpenApi;
use uuid::Uuid;

use crate::test_app::TestApp;

async fn document(app: &TestApp) -> OpenApi {
    let response = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
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
    let app = TestApp::spawn().await;

    let doc = document(&app).await;

    assert_eq!(doc.info.title, "Orders API");
    assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
    let mounted: BTreeSet<(String, String)> = orders::http::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(httpkit::docs::operations(&doc), mounted);
    let schemas = doc.components.expect("components").schemas;
    for schema in ["Problem", "CreateOrder", "Order", "OrderStatus"] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
}

#[tokio::test]
async fn every_documented_route_exists() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;

    for (method, path) in httpkit::docs::operations(&doc) {
        // Requests that change nothing: no Idempotency-Key, an unknown order.
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{id}", &Uuid::new_v4().to_string())
        );
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.http.request(method.clone(), url).send().await.unwrap();
        assert!(
            answered_by_a_handler(&response),
            "{method} {path} is documented but not routed: {}",
            response.status()
        );
    }
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn docs_is_an_html_page_that_reads_the_document() {
    let app = TestApp::spawn().await;

    let response = app
        .http
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("openapi.json"));
}
