//! The curl walk-through in `docs/api.md`, step for step, as a test: if this fails,
//! `docs/api.md` is lying to the next reader.
//!
//! Orders and inventory run as in the walk-through (orders verifies holds
//! with inventory), on real Postgres, NATS and Redis; no relay, so the
//! events stay in the outbox, as the walk-through shows.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use inventory::Inventory;
use orders::Orders;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{Answer, Ask as _, Running, World};

const CONCERT: &str = "0190a5e4-0000-7000-8000-000000000001";
/// The walk-through's customer: the `sub` of `ticketctl token --customer …`.
const CUSTOMER: uuid::Uuid = uuid::Uuid::from_u128(0x6f1d_3c2a_8b4e_4f5a_9c7d_1e2f_3a4b_5c6d);

/// Orders and inventory as the walk-through runs them (no relay).
struct Services {
    world: World,
    orders: Running<Orders>,
    inventory: Running<Inventory>,
    /// `Authorization: Bearer $TOKEN`, the walk-through customer's.
    token: String,
}

impl Services {
    async fn start() -> Self {
        let world = World::start().await;
        let inventory = Running::<Inventory>::start(&world, &[]).await;
        let orders = Running::<Orders>::start(
            &world,
            &[
                ("CONSUME_INVENTORY_EVENTS", "false"),
                ("INVENTORY_URL", &inventory.base_url()),
            ],
        )
        .await;
        let token = world.customer(CUSTOMER);
        Self {
            world,
            orders,
            inventory,
            token,
        }
    }

    /// Steps 1 and 2: a concert with seats, both held; returns
    /// the holds.
    async fn concert_and_holds(&self) -> Vec<Value> {
        // 1. A concert with two seats, in inventory: an operator's call.
        let concert = self
            .inventory
            .post_as("/events", self.world.operator())
            .json(&json!({
                "id": CONCERT,
                "name": "Night Shift",
                "venue": "Hall 1",
                "starts_at": "2027-03-01T20:00:00Z",
                "sale_opens_at": "2026-11-01T10:00:00Z",
                "seats": [
                    { "seat_id": "A-1", "price_cents": 4500 },
                    { "seat_id": "A-2", "price_cents": 4500 },
                ],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(concert.status(), StatusCode::CREATED);

        // 2. Hold both seats, as the customer.
        let mut holds = Vec::new();
        for seat in ["A-1", "A-2"] {
            let hold = self
                .inventory
                .post_as(&format!("/events/{CONCERT}/seats/{seat}/hold"), &self.token)
                .send()
                .await
                .unwrap();
            assert_eq!(hold.status(), StatusCode::CREATED, "hold {seat}");
            let hold: Value = hold.json().await.unwrap();
            assert!(hold["fencing_token"].is_i64(), "{hold}");
            holds.push(hold);
        }
        holds
    }

    /// Stops inventory and waits until it has stopped serving.
    async fn stop_inventory(&mut self) {
        self.inventory.stop().await;
    }

    async fn stop(mut self) {
        self.orders.stop().await;
        self.inventory.stop().await;
    }
}

impl Services {
    /// `POST {path}` on orders, with `key` as the `Idempotency-Key` if given.
    async fn post(&self, path: &str, key: Option<&str>, body: Option<&Value>) -> Answer {
        let mut request = self.orders.post(path).bearer_auth(&self.token);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.answer().await
    }

    /// `(event_type, aggregate_version, subject, traceparent)` of every outbox row.
    async fn outbox(&self) -> Vec<(String, i64, String, Option<String>)> {
        sqlx::query_as(
            "select event_type, aggregate_version, subject, traceparent from outbox order by id",
        )
        .fetch_all(self.orders.lent::<sqlx::PgPool>())
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn the_curl_walkthrough_in_docs_api_md_works_as_written() {
    let mut services = Box::pin(Services::start()).await;
    let holds = services.concert_and_holds().await;
    let create_body = json!({
        "event_id": CONCERT,
        "seats": holds
            .iter()
            .map(|h| json!({ "seat_id": h["seat_id"], "hold_token": h["hold_token"] }))
            .collect::<Vec<_>>(),
        "customer_email": "ada@example.com"
    });

    // 3. Create an order with the holds: each seat gets its fencing token.
    let created = services
        .post("/orders", Some("create-1"), Some(&create_body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let order = created.body;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["customer_id"], CUSTOMER.to_string());
    for (seat, hold) in order["seats"].as_array().unwrap().iter().zip(&holds) {
        assert_eq!(seat["seat_id"], hold["seat_id"]);
        assert_eq!(seat["fencing_token"], hold["fencing_token"]);
        assert!(seat.get("hold_token").is_none(), "{seat}");
    }
    let id = order["id"].as_str().unwrap().to_owned();
    let pay = format!("/orders/{id}/pay");

    // 4. Pay it.
    let paid = services.post(&pay, Some("pay-1"), None).await;
    assert_eq!(paid.status, StatusCode::OK);

    // 5. Read it.
    let read: Value = services
        .orders
        .get_as(&format!("/orders/{id}"), &services.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "PAID");
    assert_eq!(read["version"], 2);
    assert_eq!(read["seats"], order["seats"]);

    // 6. Retry the payment with the same key: replayed, not repeated.
    let replay = services.post(&pay, Some("pay-1"), None).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    // 7. Paying again with a new key is refused by the state machine.
    let again = services.post(&pay, Some("pay-2"), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.problem_type(), "/problems/invalid-transition");
    assert_eq!(
        again.body["detail"],
        format!("cannot pay order {id}: it is PAID")
    );

    // 8, 9. Bad input, and a hold that is not live.
    bad_input_is_named_by_field(&services, &create_body).await;

    // 10. Inventory down.
    inventory_down(&mut services, &create_body, &holds[1]).await;

    // 11. The events wait in the outbox, each with its request's trace.
    let outbox = services.outbox().await;
    let rows: Vec<(&str, i64, &str)> = outbox
        .iter()
        .map(|(t, v, s, _)| (t.as_str(), *v, s.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("OrderCreated", 1, "orders.events.order_created"),
            ("OrderPaid", 2, "orders.events.order_paid")
        ]
    );
    assert!(outbox.iter().all(|(.., tp)| tp.is_some()));

    services.stop().await;
}

/// The body of `POST /orders` for one seat of the concert with `hold_token`.
fn order_for(seat: &str, hold_token: &str) -> Value {
    json!({
        "event_id": CONCERT,
        "seats": [{ "seat_id": seat, "hold_token": hold_token }],
        "customer_email": "ada@example.com"
    })
}

/// Steps 8 and 9: bad input, and a hold that is not live, are refused and
/// named by field.
async fn bad_input_is_named_by_field(services: &Services, create_body: &Value) {
    // Each refusal: (status, problem type, the field it names).
    let refused = async |key: &str, body: &Value| {
        let answer = services.post("/orders", Some(key), Some(body)).await;
        let named = |member: &str| answer.body[member].as_str().unwrap_or_default().to_owned();
        (answer.status, named("type"), named("field"))
    };
    let invalid = |field: &str| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/invalid-field".to_owned(),
            field.to_owned(),
        )
    };

    let mut bad_email = create_body.clone();
    bad_email["customer_email"] = json!("ada-at-example");
    assert_eq!(
        refused("create-2", &bad_email).await,
        invalid("customer_email")
    );

    let bad_token = json!({
        "event_id": CONCERT,
        "seats": [{ "seat_id": "A-3", "hold_token": "not-a-token" }],
        "customer_email": "ada@example.com"
    });
    assert_eq!(
        refused("create-2", &bad_token).await,
        invalid("seats[0].hold_token")
    );

    // 9. A hold that is not live (here: a made-up token) is refused by
    //    inventory, named by field.
    let not_held = order_for("A-2", "9d2e4b7a-1c3f-4e5d-8a6b-7c8d9e0f1a2b");
    assert_eq!(
        refused("create-3", &not_held).await,
        (
            StatusCode::CONFLICT,
            "/problems/hold-not-valid".to_owned(),
            "seats[0].hold_token".to_owned()
        )
    );

    let unkeyed = services.post("/orders", None, Some(create_body)).await;
    assert_eq!(unkeyed.status, StatusCode::BAD_REQUEST);
}

/// Step 10: inventory down: no new order, a 503 naming it with
/// `Retry-After`; the create that succeeded is still replayed from storage.
async fn inventory_down(services: &mut Services, create_body: &Value, hold_a2: &Value) {
    services.stop_inventory().await;
    let second = order_for("A-2", hold_a2["hold_token"].as_str().unwrap());
    let down = services
        .post("/orders", Some("create-4"), Some(&second))
        .await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.headers["retry-after"], "1");
    assert_eq!(down.problem_type(), "/problems/dependency-unavailable");
    assert_eq!(down.body["dependency"], "inventory");
    let replayed = services
        .post("/orders", Some("create-1"), Some(create_body))
        .await;
    assert_eq!(replayed.status, StatusCode::CREATED);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
}
