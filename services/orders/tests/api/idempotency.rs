//! Idempotency keys: one write per key, whatever the client retries.

use std::sync::Arc;

use reqwest::StatusCode;
use testkit::Ask as _;
use tokio::task::JoinSet;

use crate::shop::{Shop, new_key, problem};

#[tokio::test]
async fn retrying_a_create_with_the_same_key_replays_the_response_without_writing_again() {
    let shop = Shop::open().await;
    let (body, key) = (shop.order_body().await, new_key());

    let first = shop.create_order(&body, &key).await;
    let retry = shop.create_order(&body, &key).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.body, first.body);
    assert_eq!(shop.count("orders").await, 1);
    assert_eq!(shop.count("outbox").await, 1);
}

#[tokio::test]
async fn retrying_a_pay_with_the_same_key_replays_instead_of_conflicting() {
    let shop = Shop::open().await;
    let id = shop.created_order().await;
    let key = new_key();

    let first = shop.command(id, "pay", &key).await;
    let retry = shop.command(id, "pay", &key).await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        retry.status,
        StatusCode::OK,
        "a retry is not a second payment"
    );
    assert_eq!(retry.body, first.body);
    assert_eq!(shop.events_of(id).await.len(), 2);
}

#[tokio::test]
async fn reusing_a_key_for_a_different_request_is_refused_and_changes_nothing() {
    let shop = Shop::open().await;
    let key = new_key();
    shop.create_order(&shop.order_body().await, &key).await;

    let different_body = shop.create_order(&shop.order_body().await, &key).await;
    let body = problem(
        different_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    );
    assert_eq!(body["field"], "Idempotency-Key");

    let id = shop.created_order().await;
    let other_path = shop.command(id, "pay", &key).await;
    problem(
        other_path,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    );
    assert_eq!(shop.count("orders").await, 2);
    assert_eq!(shop.status_of(id).await, "PENDING");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_write_once_and_all_get_the_same_answer() {
    let shop = Arc::new(Shop::open().await);
    // The first request holds its key for half a second: all the others
    // arrive while it is uncommitted, so a check-then-insert would fail here.
    shop.slow_down("insert", "orders", 0.5).await;
    let (body, key) = (shop.order_body().await, new_key());

    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let (shop, body, key) = (shop.clone(), body.clone(), key.clone());
        requests.spawn(async move {
            let answer = shop.create_order(&body, &key).await;
            (answer.status, answer.body)
        });
    }
    let answers = requests.join_all().await;

    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|(_, b)| *b == answers[0].1),
        "one order id for all"
    );
    assert_eq!(shop.count("orders").await, 1);
    assert_eq!(shop.count("outbox").await, 1);
}

#[tokio::test]
async fn an_expired_key_runs_the_request_again() {
    let shop = Shop::open().await;
    let (body, key) = (shop.order_body().await, new_key());
    shop.create_order(&body, &key).await;
    shop.execute("update idempotency_keys set expires_at = now() - interval '1 second'")
        .await;

    let again = shop.create_order(&body, &key).await;

    assert_eq!(again.status, StatusCode::CREATED);
    assert!(again.headers.get("idempotent-replayed").is_none());
    assert_eq!(shop.count("orders").await, 2);
}

#[tokio::test]
async fn the_sweeper_deletes_only_expired_keys() {
    let shop = Shop::open().await;
    shop.created_order().await;
    shop.created_order().await;
    shop.execute(
        "update idempotency_keys set expires_at = now() - interval '1 second' \
         where key = (select key from idempotency_keys limit 1)",
    )
    .await;

    let deleted = orders::idempotency::sweep_expired(shop.db(), 100)
        .await
        .unwrap();

    assert_eq!(deleted, 1);
    assert_eq!(shop.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_post_without_a_key_is_rejected_and_changes_nothing() {
    let shop = Shop::open().await;
    let body = shop.order_body().await;

    let response = shop
        .signed(shop.orders.post("/orders"))
        .json(&body)
        .answer()
        .await;

    problem(
        response,
        StatusCode::BAD_REQUEST,
        "/problems/idempotency-key-missing",
    );
    assert_eq!(shop.count("orders").await, 0);
}

#[tokio::test]
async fn when_the_first_of_two_same_key_requests_fails_the_waiting_one_runs() {
    let shop = Arc::new(Shop::open().await);
    // The first order insert waits, then fails; later ones succeed.
    shop.execute("create sequence attempts").await;
    let fail_first = "
        if nextval('attempts') = 1 then
            perform pg_sleep(0.5);
            raise exception 'injected failure';
        end if;
        return new;";
    shop.before_each("insert", "orders", fail_first).await;
    let (body, key) = (shop.order_body().await, new_key());

    let first = {
        let (shop, body, key) = (shop.clone(), body.clone(), key.clone());
        tokio::spawn(async move { shop.create_order(&body, &key).await.status })
    };
    testkit::eventually(
        std::time::Duration::from_secs(5),
        "the first request holds the key",
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from pg_stat_activity where wait_event = 'PgSleep'",
            )
            .fetch_one(shop.db())
            .await
            .unwrap()
                > 0
        },
    )
    .await;
    let second = shop.create_order(&body, &key).await.status;

    assert_eq!(first.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        second,
        StatusCode::CREATED,
        "the waiting request ran after the first rolled back"
    );
    assert_eq!(shop.count("orders").await, 1);
    assert_eq!(shop.count("outbox").await, 1);
}
