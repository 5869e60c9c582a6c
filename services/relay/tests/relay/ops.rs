//! The relay's HTTP server: only the operational routes, documented by the
//! router that mounts them; readiness names what is missing and metrics
//! carry the source, even while Postgres and NATS are down (the relay
//! starts anyway and retries).

use std::time::Duration;

use relay::Relay;
use reqwest::StatusCode;
use testkit::{Ask as _, Running};

use crate::Outbox;

#[tokio::test]
async fn the_router_documents_every_route_it_mounts_and_mounts_every_route_it_documents() {
    let outbox = Outbox::start().await;

    let (title, operations) =
        Running::<Relay>::documented(&outbox.world.settings("relay").await).await;

    assert_eq!(title, "Outbox relay");
    assert_eq!(operations, testkit::operational_routes(), "no business API");
    // And `/docs` is the page that renders the document.
    outbox.relay(&[]).await.assert_serves_its_docs_page().await;
}

#[tokio::test]
async fn a_working_relay_is_ready_and_measures_its_backlog() {
    let outbox = Outbox::start().await;
    let relay = outbox.relay(&[]).await;

    testkit::eventually(Duration::from_secs(10), "the relay is ready", || async {
        relay.get("/readyz").answer().await.status == StatusCode::OK
    })
    .await;
    let ready = relay.get("/readyz").answer().await;
    let metrics = relay.get("/metrics").answer().await.text;

    for check in ["postgres", "nats"] {
        assert_eq!(ready.body["checks"][check], "ok", "{}", ready.text);
    }
    assert!(
        metrics.contains("relay_published_total{source=\"test\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_backlog{source=\"test\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_oldest_pending_age_seconds{source=\"test\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn with_postgres_and_nats_down_it_starts_says_why_it_is_not_ready_and_leaves_out_the_backlog()
{
    let outbox = Outbox::start().await;
    // Nothing listens on port 1.
    let relay = Running::<Relay>::start(
        &outbox.world,
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"),
            ("NATS_URL", "nats://127.0.0.1:1"),
            ("RELAY_SOURCE", "test"),
        ],
    )
    .await;

    let ready = relay.get("/readyz").answer().await;
    let metrics = relay.get("/metrics").answer().await;

    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    for check in ["postgres", "nats", "streams"] {
        let verdict = ready.body["checks"][check].as_str().unwrap_or_default();
        assert!(
            verdict.starts_with("unavailable"),
            "{check}: {}",
            ready.text
        );
    }
    assert_eq!(metrics.status, StatusCode::OK);
    metrics.assert_contains("relay_published_total{source=\"test\"} 0\n");
    assert!(
        !metrics.text.contains("relay_backlog"),
        "no backlog without a measurement: {}",
        metrics.text
    );
}
