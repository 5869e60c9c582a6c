//! Idempotency keys: one write per key, whatever the client retries.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::test_app::{TestApp, new_key, problem, slow_down};

#[tokio::test]
async fn retrying_a_create_with_the_same_key_replays_the_response_without_writing_again() {
    let app = TestApp::spawn().await;
    let (body, key) = (app.order_body().await, new_key());

    let first = app.create_order(&body, &key).await;
    let first_status = first.status();
    let first_body: Value = first.json().await.unwrap();
    let retry = app.create_order(&body, &key).await;

    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("outbox").await, 1);
}

#[tokio::test]
async fn retrying_a_pay_with_the_same_key_replays_instead_of_conflicting() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;
    let key = new_key();

    let first = app.command(id, "pay", &key).await;
    let retry = app.command(id, "pay", &key).await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        retry.status(),
        StatusCode::OK,
        "a retry is not a second payment"
    );
    assert_eq!(
        retry.json::<Value>().await.unwrap(),
        first.json::<Value>().await.unwrap()
    );
    assert_eq!(app.events_of(id).await.len(), 2);
}

#[tokio::test]
async fn reusing_a_key_for_a_different_request_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let key = new_key();
    app.create_order(&app.order_body().await, &key).await;

    let different_body = app.create_order(&app.order_body().await, &key).await;
    let body = problem(
        different_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    )
    .await;
    assert_eq!(body["field"], "Idempotency-Key");

    let id = app.created_order().await;
    let other_path = app.command(id, "pay", &key).await;
    problem(
        other_path,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/idempotency-key-reused",
    )
    .await;
    assert_eq!(app.count("orders").await, 2);
    assert_eq!(app.status_of(id).await, "PENDING");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_write_once_and_all_get_the_same_answer() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    // The first request holds its key for half a second: all the others
    // arrive while it is uncommitted, so a check-then-insert would fail here.
    slow_down(&app, "insert", "orders", 0.5).await;
    let (body, key) = (app.order_body().await, new_key());

    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let (app, body, key) = (app.clone(), body.clone(), key.clone());
        requests.spawn(async move {
            let response = app.create_order(&body, &key).await;
            (response.status(), response.json::<Value>().await.unwrap())
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
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("outbox").await, 1);
}

#[tokio::test]
async fn an_expired_key_runs_the_request_again() {
    let app = TestApp::spawn().await;
    let (body, key) = (app.order_body().await, new_key());
    app.create_order(&body, &key).await;
    sqlx::query("update idempotency_keys set expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();

    let again = app.create_order(&body, &key).await;

    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.count("orders").await, 2);
}

#[tokio::test]
async fn the_sweeper_deletes_only_expired_keys() {
    let app = TestApp::spawn().await;
    app.created_order().await;
    app.created_order().await;
    sqlx::query(
        "update idempotency_keys set expires_at = now() - interval '1 second' \
         where key = (select key from idempotency_keys limit 1)",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let deleted = orders::idempotency::sweep_expired(&app.db, 100)
        .await
        .unwrap();

    assert_eq!(deleted, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_post_without_a_key_is_rejected_and_changes_nothing() {
    let app = TestApp::spawn().await;

    let response = app
        .http
        .post(format!("{}/orders", app.base))
        .json(&app.order_body().await)
        .send()
        .await
        .unwrap();

    problem(
        response,
        StatusCode::BAD_REQUEST,
        "/problems/idempotency-key-missing",
    )
    .await;
    assert_eq!(app.count("orders").await, 0);
}

#[tokio::test]
async fn when_the_first_of_two_same_key_requests_fails_the_waiting_one_runs() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    // The first order insert waits, then fails; later ones succeed.
    sqlx::raw_sql(
        r"
        create sequence attempts;
        create function fail_first() returns trigger language plpgsql as $$
        begin
            if nextval('attempts') = 1 then
                perform pg_sleep(0.5);
                raise exception 'injected failure';
            end if;
            return new;
        end $$;
        create trigger fail_first before insert on orders
            for each row execute function fail_first();
        ",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (body, key) = (app.order_body().await, new_key());

    let first = {
        let (app, body, key) = (app.clone(), body.clone(), key.clone());
        tokio::spawn(async move { app.create_order(&body, &key).await.status() })
    };
    testkit::eventually(
        std::time::Duration::from_secs(5),
        "the first request holds the key",
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from pg_stat_activity where wait_event = 'PgSleep'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
                > 0
        },
    )
    .await;
    let second = app.create_order(&body, &key).await.status();

    assert_eq!(first.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        second,
        StatusCode::CREATED,
        "the waiting request ran after the first rolled back"
    );
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("outbox").await, 1);
}
