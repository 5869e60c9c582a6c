//! Admission control: overload is answered at once, never queued.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::app::{Servers, TestApp, retry_after};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_concurrency_limit_requests_are_shed_with_retry_after() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[("MAX_IN_FLIGHT", "1")]).await;
    let concert = app.concert(1).await;

    // Hold a lock that the seat-map query needs: the first request stays
    // inside, occupying the only slot.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("lock table seats in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let stuck = tokio::spawn({
        let url = app.url(&format!("/events/{concert}/seats"));
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    });
    testkit::eventually(
        Duration::from_secs(5),
        "the first request is inside",
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from pg_locks where relation = 'seats'::regclass and not granted",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
                > 0
        },
    )
    .await;

    let started = Instant::now();
    let shed = app.seat_map(concert).await;
    let took = started.elapsed();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&shed) >= 1);
    let problem: Value = shed.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/overloaded");
    assert!(
        !stuck.is_finished(),
        "answered while the slot was still taken"
    );
    // Not a timing test: the point is that it did not wait for the slot.
    println!("shed after {took:?}");

    blocker.rollback().await.unwrap();
    assert_eq!(stuck.await.unwrap(), StatusCode::OK);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_admission_rejected_total{reason=\"shed\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_customer_has_a_rate_limit_of_their_own() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(
        &servers,
        &[("RATE_LIMIT_PER_SECOND", "0.1"), ("RATE_LIMIT_BURST", "2")],
    )
    .await;
    let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
    // The customer is the verified token's `sub`; a header naming someone
    // else (a fresh one on every request) changes nothing.
    let get = |customer: Uuid| {
        app.http
            .get(app.url("/events"))
            .bearer_auth(app.token(customer))
            .header("x-customer-id", Uuid::new_v4().to_string())
            .send()
    };
    assert_eq!(get(ada).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(ada).await.unwrap().status(), StatusCode::OK);
    let limited = get(ada).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&limited) >= 1);
    assert_eq!(get(bob).await.unwrap().status(), StatusCode::OK);
    // Health is not rate limited: an overloaded instance still reports.
    for _ in 0..5 {
        let ready = app
            .http
            .get(app.url("/healthz"))
            .bearer_auth(app.token(ada))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
    }
    app.stop().await;
}

#[tokio::test]
async fn anonymous_clients_are_limited_by_address_whatever_id_they_claim() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(
        &servers,
        &[("RATE_LIMIT_PER_SECOND", "0.1"), ("RATE_LIMIT_BURST", "2")],
    )
    .await;
    // Each request names a fresh customer in the header a client writes
    // itself: before identity was verified, each got a bucket of its own.
    let get = || {
        app.http
            .get(app.url("/events"))
            .header("x-customer-id", Uuid::new_v4().to_string())
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(get().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}
