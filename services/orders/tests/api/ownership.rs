//! Identity: an order belongs to the customer whose verified token created
//! it. For anyone else it does not exist, whatever they know about it, and
//! nothing a client writes into a body or a header names the customer.

use httpkit::auth::dev::TokenRequest;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::test_app::{TestApp, new_key, problem};

#[tokio::test]
async fn a_stranger_who_knows_an_order_id_cannot_read_pay_or_cancel_it() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;
    let stranger = app.inventory.client_for(Uuid::new_v4());
    let url = |suffix: &str| format!("{}/orders/{id}{suffix}", app.base);

    let read = stranger.get(url("")).send().await.unwrap();
    problem(read, StatusCode::NOT_FOUND, "/problems/order-not-found").await;
    for verb in ["pay", "cancel"] {
        let response = stranger
            .post(url(&format!("/{verb}")))
            .header("idempotency-key", new_key())
            .send()
            .await
            .unwrap();
        // The same answer as for an id that does not exist: ids reveal nothing.
        problem(response, StatusCode::NOT_FOUND, "/problems/order-not-found").await;
    }

    assert_eq!(app.status_of(id).await, "PENDING");
    assert_eq!(app.events_of(id).await, [("OrderCreated".to_owned(), 1)]);
    let own: Value = app
        .http
        .get(url(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["id"], id.to_string());
}

#[tokio::test]
async fn idempotency_keys_are_each_customers_own() {
    let app = TestApp::spawn().await;
    let key = new_key();
    let first = app.create_order(&app.order_body().await, &key).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    // Another customer, by chance or on purpose, sends the same key with a
    // request of their own: it runs as theirs, and replays nothing of ours.
    let other = Uuid::new_v4();
    let mut body = app.order_body().await;
    let seat = app.inventory.fresh_seats(1).remove(0);
    let hold = app.inventory.held(&seat, other).await;
    body["seats"] = serde_json::json!([{ "seat_id": seat, "hold_token": hold["hold_token"] }]);
    let second = app
        .inventory
        .client_for(other)
        .post(format!("{}/orders", app.base))
        .header("idempotency-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(second.status(), StatusCode::CREATED);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let second: Value = second.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["customer_id"], other.to_string());
    assert_eq!(app.count("orders").await, 2);
}

#[tokio::test]
async fn the_order_is_the_token_holders_and_its_events_carry_no_hold_token() {
    let app = TestApp::spawn().await;
    let (body, _) = app.order_body_for(1).await;
    let created: Value = app
        .create_order(&body, &new_key())
        .await
        .json()
        .await
        .unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    app.command(id, "pay", &new_key()).await;

    let (owner,): (Option<Uuid>,) = sqlx::query_as("select customer_id from orders where id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(owner, Some(app.customer));
    let payloads: Vec<String> =
        sqlx::query_scalar("select payload::text from outbox where aggregate_id = $1")
            .bind(id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(payloads.len(), 2);
    for payload in payloads {
        assert!(!payload.contains("hold_token"), "{payload}");
        let event: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(event["schema_version"], 2, "{payload}");
    }
}

#[tokio::test]
async fn every_order_route_refuses_a_missing_expired_foreign_or_operator_token() {
    let app = TestApp::spawn().await;
    let id = app.created_order().await;
    let identity = &app.inventory.identity;
    let expired = identity.mint(&TokenRequest {
        ttl_secs: -120,
        ..TokenRequest::customer(app.customer)
    });
    let other_audience = identity.mint(&TokenRequest {
        audience: "billing".into(),
        ..TokenRequest::customer(app.customer)
    });
    let foreign_key = testkit::TestIdentity::new().customer(app.customer);
    let routes = [
        (reqwest::Method::POST, "/orders".to_owned()),
        (reqwest::Method::GET, format!("/orders/{id}")),
        (reqwest::Method::POST, format!("/orders/{id}/pay")),
        (reqwest::Method::POST, format!("/orders/{id}/cancel")),
    ];
    let plain = reqwest::Client::new();
    for (method, path) in &routes {
        let send = |token: Option<&str>| {
            let mut request = plain
                .request(method.clone(), format!("{}{path}", app.base))
                .header("idempotency-key", new_key());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let missing = send(None).await.unwrap();
        assert!(
            missing.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{method} {path}"
        );
        problem(
            missing,
            StatusCode::UNAUTHORIZED,
            "/problems/unauthenticated",
        )
        .await;
        for (what, token) in [
            ("expired", &expired),
            ("another audience", &other_audience),
            ("an unknown key", &foreign_key),
        ] {
            let refused = send(Some(token)).await.unwrap();
            assert_eq!(
                refused.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a token of {what}"
            );
        }
        let operator = send(Some(&identity.operator())).await.unwrap();
        problem(operator, StatusCode::FORBIDDEN, "/problems/forbidden").await;
    }
    assert_eq!(app.status_of(id).await, "PENDING");
    assert_eq!(app.count("orders").await, 1);
}
