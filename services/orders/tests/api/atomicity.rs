//! Transactional outbox: the order change and its event commit together or
//! not at all.
//!
//! The failure is injected from outside the code under test: a trigger makes
//! the database reject a write that comes *after* the order row was written
//! in the same transaction. If the service committed the order separately,
//! the order would survive; it must not.

use reqwest::StatusCode;
use uuid::Uuid;

use crate::test_app::{TestApp, new_key, problem};

/// Makes every insert into `table` fail, as a crash or a constraint would.
async fn fail_inserts_into(app: &TestApp, table: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r"
        create function inject_failure() returns trigger language plpgsql as $$
        begin
            raise exception 'injected failure';
        end $$;
        create trigger inject_failure before insert on {table}
            for each row execute function inject_failure();
        "
    )))
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_failure_after_the_order_write_leaves_neither_order_nor_event() {
    let app = TestApp::spawn().await;
    fail_inserts_into(&app, "outbox").await;

    let response = app.create_order(&app.order_body().await, &new_key()).await;

    let body = problem(
        response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "/problems/internal",
    )
    .await;
    assert!(
        body["correlation_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let text = body.to_string();
    assert!(
        !text.contains("injected") && !text.contains("outbox"),
        "internals leaked: {text}"
    );
    assert_eq!(app.count("orders").await, 0);
    assert_eq!(app.count("order_lines").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);
}

#[tokio::test]
async fn a_failure_after_the_payment_write_leaves_the_order_pending() {
    let app = TestApp::spawn().await;
    let id: Uuid = app.created_order().await;
    fail_inserts_into(&app, "outbox").await;

    let response = app.command(id, "pay", &new_key()).await;

    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.status_of(id).await, "PENDING");
    assert_eq!(app.events_of(id).await, [("OrderCreated".to_owned(), 1)]);
}

#[tokio::test]
async fn a_failure_storing_the_response_rolls_back_the_order_and_event() {
    let app = TestApp::spawn().await;
    // The key row is inserted first and updated with the response last, so
    // failing that final update fails after both business writes.
    sqlx::raw_sql(
        r"
        create function inject_failure() returns trigger language plpgsql as $$
        begin
            if new.response_status is not null then
                raise exception 'injected failure';
            end if;
            return new;
        end $$;
        create trigger inject_failure before update on idempotency_keys
            for each row execute function inject_failure();
        ",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let response = app.create_order(&app.order_body().await, &new_key()).await;

    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.count("orders").await, 0);
    assert_eq!(app.count("outbox").await, 0);
}
