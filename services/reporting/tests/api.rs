//! The reports API against real Postgres and NATS: the router and its
//! `OpenAPI` document agree, `/docs` serves the page that renders it,
//! reports are for operators only, and the operational routes report the
//! service's own checks and metrics.

use reporting::Reporting;
use reqwest::{StatusCode, header};
use testkit::{Ask as _, Running, World};
use uuid::Uuid;

#[tokio::test]
async fn the_router_documents_every_route_it_mounts_and_mounts_every_route_it_documents() {
    let world = World::start().await;

    let (title, operations) =
        Running::<Reporting>::documented(&world.settings("reporting").await).await;

    assert_eq!(title, "Reporting API");
    let mut expected = testkit::operational_routes();
    expected.insert(("GET".to_owned(), "/reports/events/{id}".to_owned()));
    assert_eq!(operations, expected);
    // And `/docs` is the page that renders the document.
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    reporting.assert_serves_its_docs_page().await;
}

#[tokio::test]
async fn a_report_needs_an_operators_token() {
    let world = World::start().await;
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    let path = format!("/reports/events/{}", Uuid::new_v4());

    let anonymous = reporting.get(&path).answer().await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers.contains_key(header::WWW_AUTHENTICATE));
    let customer = reporting
        .get_as(&path, world.customer(Uuid::new_v4()))
        .answer()
        .await;
    assert_eq!(customer.status, StatusCode::FORBIDDEN);
    // The operator gets through to the report: none exists yet.
    let operator = reporting.get_as(&path, world.operator()).answer().await;
    assert_eq!(operator.status, StatusCode::NOT_FOUND);
    assert_eq!(operator.problem_type(), "/problems/report-not-found");
}

#[tokio::test]
async fn readiness_and_metrics_report_the_services_own_checks_and_counts() {
    let world = World::start().await;
    let reporting = Running::<Reporting>::start(&world, &[]).await;
    let path = format!("/reports/events/{}", Uuid::new_v4());
    reporting.get(&path).answer().await;

    let ready = reporting.ready().await;
    let metrics = reporting.get("/metrics").answer().await;

    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["checks"]["postgres"], "ok");
    assert_eq!(ready.body["checks"]["nats"], "ok");
    assert_eq!(metrics.status, StatusCode::OK);
    metrics.assert_contains(
        r#"http_requests_total{method="GET",route="/reports/events/{id}",status="401"} 1"#,
    );
    metrics.assert_contains(r#"consumer_applied_total{consumer="reporting"} 0"#);
    // The lag is JetStream's: reported once the consumer has made its durable.
    reporting
        .scraped(r#"consumer_pending{consumer="reporting"} 0"#)
        .await;
}
