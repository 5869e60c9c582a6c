//! The README's curl walk-through, step for step, as a test: if this fails,
//! the README is lying to the next reader.

use orders::{Application, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_readme_walkthrough_works_as_written() {
    let postgres = testkit::TestPostgres::start().await;
    let env = settings::Env::from_pairs([
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", postgres.url()),
        ("CONSUME_INVENTORY_EVENTS", "false"),
    ]);
    let app = Application::build(Config::from_env(&env).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::new();
    let create_body = json!({
        "event_id": "0190a5e4-0000-7000-8000-000000000001",
        "seats": [{ "seat_id": "A-1", "hold_token": "4c1f0c6e-6a59-4d1a-9a55-3f1b9d0e7a10" }],
        "customer_email": "ada@example.com"
    });

    // 1. Create an order.
    let created = http
        .post(format!("{base}/orders"))
        .header("Idempotency-Key", "create-1")
        .json(&create_body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let order: Value = created.json().await.unwrap();
    assert_eq!(order["status"], "PENDING");
    let id = order["id"].as_str().unwrap().to_owned();

    // 2. Pay it.
    let paid = http
        .post(format!("{base}/orders/{id}/pay"))
        .header("Idempotency-Key", "pay-1")
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), StatusCode::OK);

    // 3. Read it.
    let read: Value = http
        .get(format!("{base}/orders/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "PAID");
    assert_eq!(read["version"], 2);

    // 4. Retry the payment with the same key: replayed, not repeated.
    let replay = http
        .post(format!("{base}/orders/{id}/pay"))
        .header("Idempotency-Key", "pay-1")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    // 5. Two bad inputs.
    let mut bad_email = create_body.clone();
    bad_email["customer_email"] = json!("ada-at-example");
    let rejected = http
        .post(format!("{base}/orders"))
        .header("Idempotency-Key", "create-2")
        .json(&bad_email)
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        rejected.json::<Value>().await.unwrap()["field"],
        "customer_email"
    );

    let unkeyed = http
        .post(format!("{base}/orders"))
        .json(&create_body)
        .send()
        .await
        .unwrap();
    assert_eq!(unkeyed.status(), StatusCode::BAD_REQUEST);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
