//! API documentation every service serves: its `OpenAPI` document at
//! `GET /openapi.json` and a page that reads it at `GET /docs`.
//!
//! Each service derives its document from the code (`#[utoipa::path]` on
//! the handlers, `#[derive(ToSchema)]` on the bodies, one
//! `#[derive(OpenApi)]` per service) and mounts [`routes`] next to its
//! own. The page is one self-contained HTML file, CSS and script inline,
//! so it works without internet access; a `Content-Security-Policy` lets
//! it load nothing but `openapi.json` from the same origin.
//!
//! Mount the routes outside admission control: reading the docs is not
//! traffic to shed, and a test or an operator must be able to read them
//! from an instance under load.
//!
//! [`operations`] lists a document's `(method, path)` pairs, which the
//! services' tests compare with the routes their routers mount, so a route
//! without documentation (or documentation without a route) fails a test.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, header};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;

/// The page: markup, style and script in one file, no external assets.
const PAGE: &str = include_str!("docs/page.html");

/// What the page may load: its own inline style and script, and
/// `openapi.json` from the same origin; nothing else.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
                        script-src 'unsafe-inline'; connect-src 'self'; img-src data:";

/// `GET /openapi.json` (the document, serialized once here) and
/// `GET /docs` (the page).
// Mounted by hand because the document must be complete before it is
// served; [`document`] adds these two routes to it.
#[allow(clippy::disallowed_methods)]
pub fn routes(openapi: &OpenApi) -> Router {
    let json = Bytes::from(
        serde_json::to_vec_pretty(openapi)
            .expect("an OpenAPI document has string keys, so it serializes"),
    );
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .with_state(json)
        .route("/docs", get(docs_page))
}

/// Adds `/openapi.json`, `/docs` and their tag to `openapi`, so the
/// document describes the routes that serve it; call it before [`routes`].
pub fn document(openapi: &mut OpenApi) {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(openapi_json, docs_page),
        tags((name = "docs", description = "This documentation.")),
    )]
    struct Docs;
    openapi.merge(<Docs as utoipa::OpenApi>::openapi());
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    summary = "This OpenAPI document",
    description = "The OpenAPI 3.1 document of this service, generated from its code.",
    responses((
        status = 200,
        description = "The document.",
        content_type = "application/json",
        body = Object,
    )),
)]
async fn openapi_json(State(json): State<Bytes>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
}

/// `GET /docs`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    summary = "API documentation page",
    description = "A self-contained HTML page that renders `/openapi.json`: \
                   operations, parameters, bodies and responses with their schemas.",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)),
)]
async fn docs_page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            ),
        ],
        PAGE,
    )
}

/// Every operation of `openapi` as `(METHOD, path)`, e.g.
/// `("POST", "/orders/{id}/pay")`, sorted.
pub fn operations(openapi: &OpenApi) -> BTreeSet<(String, String)> {
    operations_where(openapi, |_| true)
}

/// The operations that declare a security requirement (a bearer token),
/// as `(METHOD, path)`: the API tests check that exactly these answer 401
/// without a token.
pub fn secured_operations(openapi: &OpenApi) -> BTreeSet<(String, String)> {
    operations_where(openapi, |operation| {
        operation
            .security
            .as_ref()
            .is_some_and(|requirements| !requirements.is_empty())
    })
}

fn operations_where(
    openapi: &OpenApi,
    keep: impl Fn(&Operation) -> bool,
) -> BTreeSet<(String, String)> {
    openapi
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            let methods: [(&str, &Option<Operation>); 8] = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ];
            methods
                .into_iter()
                .filter(|(_, operation)| operation.as_ref().is_some_and(&keep))
                .map(|(method, _)| (method.to_owned(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use tower::ServiceExt as _;
    use utoipa::OpenApi as _;

    use super::*;

    /// A document with only the routes of this module.
    #[derive(utoipa::OpenApi)]
    #[openapi(info(title = "docs test"), paths(openapi_json, docs_page))]
    struct DocsOnly;

    async fn get(router: Router, path: &str) -> (StatusCode, http::HeaderMap, Bytes) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).expect("a request"))
            .await
            .expect("the router answers");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("the body is in memory");
        (parts.status, parts.headers, body)
    }

    #[tokio::test]
    async fn the_document_is_served_as_json_and_parses_back() {
        let (status, headers, body) = get(routes(&DocsOnly::openapi()), "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let served: OpenApi = serde_json::from_slice(&body).expect("an OpenAPI document");
        assert_eq!(served.info.title, "docs test");
        assert_eq!(
            operations(&served),
            [("GET", "/docs"), ("GET", "/openapi.json")]
                .map(|(m, p)| (m.to_owned(), p.to_owned()))
                .into()
        );
    }

    #[tokio::test]
    async fn the_page_is_html_that_loads_nothing_from_elsewhere() {
        let (status, headers, body) = get(routes(&DocsOnly::openapi()), "/docs").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let page = std::str::from_utf8(&body).expect("UTF-8");
        assert!(page.starts_with("<!doctype html>"));
        assert!(
            page.contains("fetch(\"openapi.json\""),
            "the page reads the document"
        );
        for external in ["http://", "https://", "<link", "src=", "@import", "url("] {
            assert!(!page.contains(external), "the page references {external}");
        }
    }
}
