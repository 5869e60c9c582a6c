//! Admission control: overload is answered at once, never queued.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use testkit::{Ask as _, World};
use uuid::Uuid;

use crate::support::{Steps as _, retry_after, start, start_rate_limited};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_concurrency_limit_requests_are_shed_with_retry_after() {
    let world = World::start().await;
    let inventory = start(&world, &[("MAX_IN_FLIGHT", "1")]).await;
    let concert = world.concert(&inventory, 1).await;

    // Hold a lock that the seat-map query needs: the first request stays
    // inside, occupying the only slot.
    let mut blocker = inventory.db().begin().await.unwrap();
    sqlx::query("lock table seats in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let stuck = tokio::spawn(inventory.get(&format!("/events/{concert}/seats")).answer());
    testkit::eventually(
        Duration::from_secs(5),
        "the first request is inside",
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from pg_locks where relation = 'seats'::regclass and not granted",
            )
            .fetch_one(inventory.db())
            .await
            .unwrap()
                > 0
        },
    )
    .await;

    let started = Instant::now();
    let shed = inventory.seat_map(concert).await;
    let took = started.elapsed();
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&shed) >= 1);
    assert_eq!(shed.problem_type(), "/problems/overloaded");
    assert!(
        !stuck.is_finished(),
        "answered while the slot was still taken"
    );
    // Not a timing test: the point is that it did not wait for the slot.
    println!("shed after {took:?}");

    blocker.rollback().await.unwrap();
    assert_eq!(stuck.await.unwrap().status, StatusCode::OK);
    let metrics = inventory.get("/metrics").answer().await.text;
    assert!(
        metrics.contains("http_admission_rejected_total{reason=\"shed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_customer_has_a_rate_limit_of_their_own() {
    let world = World::start().await;
    let inventory = start_rate_limited(&world, "2").await;
    let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
    // The customer is the verified token's `sub`; a header naming someone
    // else (a fresh one on every request) changes nothing.
    let list = |customer: Uuid| {
        inventory
            .get_as("/events", world.customer(customer))
            .header("x-customer-id", Uuid::new_v4().to_string())
            .answer()
    };
    assert_eq!(list(ada).await.status, StatusCode::OK);
    assert_eq!(list(ada).await.status, StatusCode::OK);
    let limited = list(ada).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&limited) >= 1);
    assert_eq!(list(bob).await.status, StatusCode::OK);
    // Health is not rate limited: an overloaded instance still reports.
    for _ in 0..5 {
        let alive = inventory
            .get_as("/healthz", world.customer(ada))
            .answer()
            .await;
        assert_eq!(alive.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn anonymous_clients_are_limited_by_address_whatever_id_they_claim() {
    let world = World::start().await;
    let inventory = start_rate_limited(&world, "2").await;
    // Each request names a fresh customer in the header a client writes
    // itself: before identity was verified, each got a bucket of its own.
    let list = || {
        inventory
            .get("/events")
            .header("x-customer-id", Uuid::new_v4().to_string())
            .answer()
    };
    assert_eq!(list().await.status, StatusCode::OK);
    assert_eq!(list().await.status, StatusCode::OK);
    assert_eq!(list().await.status, StatusCode::TOO_MANY_REQUESTS);
}
