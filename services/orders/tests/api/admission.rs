//! Admission control on orders: a flood from one customer gets 429 with
//! `Retry-After` at once, instead of queueing on the connection pool and
//! calling inventory; other customers are not affected. Before, orders had
//! no admission control at all.

use reqwest::StatusCode;
use testkit::Ask as _;
use uuid::Uuid;

use crate::shop::{Shop, problem};

#[tokio::test]
async fn a_customer_over_its_rate_is_refused_at_once_and_others_are_not() {
    let limits = [("RATE_LIMIT_PER_SECOND", "0.1"), ("RATE_LIMIT_BURST", "2")];
    let shop = Shop::open_with(&[], &limits).await;
    let read = |customer: Uuid| {
        let path = format!("/orders/{}", Uuid::new_v4());
        let request = shop.orders.get(&path);
        request.bearer_auth(shop.world.customer(customer)).answer()
    };

    for _ in 0..2 {
        assert_eq!(read(shop.customer).await.status, StatusCode::NOT_FOUND);
    }
    let refused = read(shop.customer).await;
    assert!(refused.headers.contains_key("retry-after"));
    problem(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/rate-limited",
    );

    assert_eq!(read(Uuid::new_v4()).await.status, StatusCode::NOT_FOUND);
    // Health and metrics stay outside: an instance under load still reports.
    let metrics = shop.signed(shop.orders.get("/metrics")).answer().await;
    assert_eq!(metrics.status, StatusCode::OK);
    metrics.assert_contains("http_admission_rejected_total{reason=\"rate_limited\"} 1");
}
