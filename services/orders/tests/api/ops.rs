//! The operational routes report orders' own checks and metrics: Postgres
//! decides readiness, NATS only degrades it (inventory's answers wait in
//! the stream), and `/metrics` has the inventory-reactions consumer's
//! counts and lag next to the RED metrics of the order routes.

use std::time::Duration;

use orders::Orders;
use reqwest::StatusCode;
use testkit::{Ask as _, Running, World};
use uuid::Uuid;

#[tokio::test]
async fn liveness_readiness_and_metrics_report_the_services_own_checks_and_counts() {
    let world = World::start().await;
    let orders = Running::<Orders>::start(&world, &[]).await;
    let read = format!("/orders/{}", Uuid::new_v4());
    orders.get(&read).answer().await;

    let live = orders.get("/healthz").answer().await;
    let ready = orders.get("/readyz").answer().await;

    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["checks"]["postgres"], "ok");
    // The client connects in the background (`messaging::connect`); until
    // then the instance is ready, and says it is degraded.
    testkit::eventually(Duration::from_secs(10), "NATS is connected", || async {
        let ready = orders.get("/readyz").answer().await;
        ready.status == StatusCode::OK && ready.body["checks"]["nats"] == "ok"
    })
    .await;
    // The lag is JetStream's: reported once the consumer has made its durable.
    let metrics = orders
        .scraped(r#"consumer_pending{consumer="orders"} 0"#)
        .await;
    metrics.assert_contains(
        r#"http_requests_total{method="GET",route="/orders/{id}",status="401"} 1"#,
    );
    metrics.assert_contains(r#"consumer_applied_total{consumer="orders"} 0"#);
    metrics.assert_contains(r#"http_admission_rejected_total{reason="shed"} 0"#);
}

#[tokio::test]
async fn without_the_consumer_readiness_is_postgres_alone() {
    let world = World::start().await;
    let orders = Running::<Orders>::start(&world, &[("CONSUME_INVENTORY_EVENTS", "false")]).await;

    let ready = orders.get("/readyz").answer().await;

    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["checks"]["postgres"], "ok");
    assert!(ready.body["checks"].get("nats").is_none(), "{}", ready.text);
}
