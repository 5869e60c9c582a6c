//! Notification's HTTP routes against real Postgres and NATS: it has no
//! business API, the router and its `OpenAPI` document agree, `/docs`
//! serves the page that renders it, and the operational routes report the
//! service's own checks and its two consumers (the senders as one).

use notification::Notification;
use testkit::{Running, World};

#[tokio::test]
async fn the_router_documents_every_route_it_mounts_and_mounts_every_route_it_documents() {
    let world = World::start().await;

    let (title, operations) =
        Running::<Notification>::documented(&world.settings("notification").await).await;

    assert_eq!(title, "Notification service");
    assert_eq!(operations, testkit::operational_routes(), "no business API");
    // And `/docs` is the page that renders the document.
    let notification = Running::<Notification>::start(&world, &[]).await;
    notification.assert_serves_its_docs_page().await;
}

#[tokio::test]
async fn readiness_and_metrics_report_the_translator_and_the_senders_as_one() {
    let world = World::start().await;
    let notification = Running::<Notification>::start(&world, &[("WORKERS", "3")]).await;

    // The NATS client connects in the background.
    let ready = notification.ready().await;

    assert_eq!(ready.body["checks"]["postgres"], "ok");
    assert_eq!(ready.body["checks"]["nats"], "ok");
    // The lag is JetStream's: reported once each consumer has made its durable.
    notification
        .scraped(r#"consumer_pending{consumer="notification"} 0"#)
        .await;
    let text = notification
        .scraped(r#"consumer_pending{consumer="notification-workers"} 0"#)
        .await
        .text;
    for consumer in ["notification", "notification-workers"] {
        let series = format!(r#"consumer_applied_total{{consumer="{consumer}"}} 0"#);
        assert_eq!(text.matches(&series).count(), 1, "{text}");
    }
}
