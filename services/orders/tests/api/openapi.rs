//! The API documents itself: the router produces `/openapi.json` as it
//! mounts the routes, so the two agree (`route_report`), and `/docs`
//! serves the page that renders the document.

use orders::Orders;
use testkit::{Running, World};

#[tokio::test]
async fn the_router_documents_every_route_it_mounts_and_mounts_every_route_it_documents() {
    let world = World::start().await;
    let settings = world.settings("orders").await;
    let (title, operations) = Running::<Orders>::documented(&settings).await;
    let app = Running::<Orders>::build(&settings).await;

    assert_eq!(title, "Orders API");
    let doc = app.openapi();
    assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
    let expected = [
        ("POST", "/orders"),
        ("GET", "/orders/{id}"),
        ("POST", "/orders/{id}/pay"),
        ("POST", "/orders/{id}/cancel"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ]
    .map(|(method, path)| (method.to_owned(), path.to_owned()));
    assert_eq!(operations, expected.into());
    let schemas = &doc.components.as_ref().expect("components").schemas;
    for schema in ["Problem", "CreateOrder", "Order", "OrderStatus"] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
}

#[tokio::test]
async fn docs_is_an_html_page_that_reads_the_document() {
    let world = World::start().await;
    let orders = Running::<Orders>::start(&world, &[]).await;

    orders.assert_serves_its_docs_page().await;
}
