//! The outbox row carries the trace of the request that wrote it, so the
//! relay's publish span (and every consumer after it) joins that trace.

use reqwest::StatusCode;

use crate::test_app::{TestApp, new_key};

#[tokio::test]
async fn the_outbox_row_carries_the_trace_of_the_request() {
    let app = TestApp::spawn().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace_id}-00f067aa0ba902b7-01");

    let response = app
        .http
        .post(format!("{}/orders", app.base))
        .header("idempotency-key", new_key())
        .header("traceparent", &incoming)
        .json(&app.order_body().await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let traceparent: String = sqlx::query_scalar("select traceparent from outbox")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "same trace as the request");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "a child span of ours, not the caller's span"
    );
}

#[tokio::test]
async fn liveness_and_readiness_answer() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
