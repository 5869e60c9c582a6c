//! Identity: an order belongs to the customer whose verified token created
//! it. For anyone else it does not exist, whatever they know about it, and
//! nothing a client writes into a body or a header names the customer.

use std::collections::BTreeSet;

use httpkit::auth::dev::TokenRequest;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::Ask as _;
use uuid::Uuid;

use crate::shop::{Shop, id_of, new_key, problem};

#[tokio::test]
async fn a_stranger_who_knows_an_order_id_cannot_read_pay_or_cancel_it() {
    let shop = Shop::open().await;
    let id = shop.created_order().await;
    let stranger = shop.world.customer(Uuid::new_v4());

    let path = format!("/orders/{id}");
    let read = shop.orders.get(&path).bearer_auth(&stranger).answer().await;
    problem(read, StatusCode::NOT_FOUND, "/problems/order-not-found");
    for verb in ["pay", "cancel"] {
        let response = shop
            .orders
            .post_as(&format!("/orders/{id}/{verb}"), &stranger)
            .header("idempotency-key", new_key())
            .answer()
            .await;
        // The same answer as for an id that does not exist: ids reveal nothing.
        problem(response, StatusCode::NOT_FOUND, "/problems/order-not-found");
    }

    assert_eq!(shop.status_of(id).await, "PENDING");
    assert_eq!(shop.events_of(id).await, [("OrderCreated".to_owned(), 1)]);
    assert_eq!(shop.read_order(id).await.body["id"], id.to_string());
}

#[tokio::test]
async fn idempotency_keys_are_each_customers_own() {
    let shop = Shop::open().await;
    let key = new_key();
    let first = shop.create_order(&shop.order_body().await, &key).await;
    assert_eq!(first.status, StatusCode::CREATED);

    // Another customer, by chance or on purpose, sends the same key with a
    // request of their own: it runs as theirs, and replays nothing of ours.
    let other = Uuid::new_v4();
    let mut body = shop.order_body().await;
    let seat = shop.fresh_seats(1).remove(0);
    let hold = shop.held(shop.concert, &seat, other).await;
    body["seats"] = json!([{ "seat_id": seat, "hold_token": hold["hold_token"] }]);
    let second = shop
        .orders
        .post_as("/orders", shop.world.customer(other))
        .header("idempotency-key", &key)
        .json(&body)
        .answer()
        .await;

    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.headers.get("idempotent-replayed").is_none());
    assert_ne!(second.body["id"], first.body["id"]);
    assert_eq!(second.body["customer_id"], other.to_string());
    assert_eq!(shop.count("orders").await, 2);
}

#[tokio::test]
async fn the_order_is_the_token_holders_and_its_events_carry_no_hold_token() {
    let shop = Shop::open().await;
    let (body, _) = shop.order_body_for(1).await;
    let id = id_of(&shop.create_order(&body, &new_key()).await.body);
    shop.command(id, "pay", &new_key()).await;

    let (owner,): (Option<Uuid>,) = sqlx::query_as("select customer_id from orders where id = $1")
        .bind(id)
        .fetch_one(shop.db())
        .await
        .unwrap();
    assert_eq!(owner, Some(shop.customer));
    let payloads: Vec<String> =
        sqlx::query_scalar("select payload::text from outbox where aggregate_id = $1")
            .bind(id)
            .fetch_all(shop.db())
            .await
            .unwrap();
    assert_eq!(payloads.len(), 2);
    for payload in payloads {
        assert!(!payload.contains("hold_token"), "{payload}");
        let event: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(event["schema_version"], 3, "{payload}");
    }
}

#[tokio::test]
async fn every_secured_route_refuses_a_missing_expired_foreign_or_operator_token() {
    let shop = Shop::open().await;
    let id = shop.created_order().await;
    let doc = shop.orders.get("/openapi.json").answer().await.body;
    let doc: utoipa::openapi::OpenApi = serde_json::from_value(doc).unwrap();
    let secured = httpkit::docs::secured_operations(&doc);
    let order_routes = [
        ("POST", "/orders"),
        ("GET", "/orders/{id}"),
        ("POST", "/orders/{id}/pay"),
        ("POST", "/orders/{id}/cancel"),
    ]
    .map(|(method, path)| (method.to_owned(), path.to_owned()));
    assert_eq!(
        secured,
        BTreeSet::from(order_routes),
        "exactly the order routes"
    );
    let identity = &shop.world.identity;
    let expired = identity.mint(&TokenRequest {
        ttl_secs: -120,
        ..TokenRequest::customer(shop.customer)
    });
    let other_audience = identity.mint(&TokenRequest {
        audience: "billing".into(),
        ..TokenRequest::customer(shop.customer)
    });
    let foreign_key = testkit::TestIdentity::new().customer(shop.customer);
    for (method, path) in &secured {
        let path = path.replace("{id}", &id.to_string());
        let send = |token: Option<&str>| {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let request = shop
                .orders
                .request(method, &path)
                .header("idempotency-key", new_key());
            match token {
                Some(token) => request.bearer_auth(token).answer(),
                None => request.answer(),
            }
        };
        let missing = send(None).await;
        assert!(
            missing.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{method} {path}"
        );
        problem(
            missing,
            StatusCode::UNAUTHORIZED,
            "/problems/unauthenticated",
        );
        for (what, token) in [
            ("expired", &expired),
            ("another audience", &other_audience),
            ("an unknown key", &foreign_key),
        ] {
            let refused = send(Some(token)).await;
            assert_eq!(
                refused.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a token of {what}"
            );
        }
        let operator = send(Some(&identity.operator())).await;
        problem(operator, StatusCode::FORBIDDEN, "/problems/forbidden");
    }
    assert_eq!(shop.status_of(id).await, "PENDING");
    assert_eq!(shop.count("orders").await, 1);
}
