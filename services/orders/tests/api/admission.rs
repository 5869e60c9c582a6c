//! Admission control on orders: a flood from one customer gets 429 with
//! `Retry-After` at once, instead of queueing on the connection pool and
//! calling inventory; other customers are not affected. Before, orders had
//! no admission control at all.

use reqwest::StatusCode;
use uuid::Uuid;

use crate::test_app::{TestApp, TestInventory, problem};

#[tokio::test]
async fn a_customer_over_its_rate_is_refused_at_once_and_others_are_not() {
    let inventory = TestInventory::start(&[]).await;
    let app = TestApp::spawn_next_to(
        inventory,
        &[("RATE_LIMIT_PER_SECOND", "0.1"), ("RATE_LIMIT_BURST", "2")],
    )
    .await;
    let read = |client: reqwest::Client| {
        let url = format!("{}/orders/{}", app.base, Uuid::new_v4());
        async move { client.get(url).send().await.unwrap() }
    };

    for _ in 0..2 {
        assert_eq!(read(app.http.clone()).await.status(), StatusCode::NOT_FOUND);
    }
    let refused = read(app.http.clone()).await;
    assert!(refused.headers().contains_key("retry-after"));
    problem(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/rate-limited",
    )
    .await;

    let other = app.inventory.client_for(Uuid::new_v4());
    assert_eq!(read(other).await.status(), StatusCode::NOT_FOUND);
    // Health and metrics stay outside: an instance under load still reports.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("http_admission_rejected_total{reason=\"rate_limited\"} 1"),
        "{text}"
    );
}
