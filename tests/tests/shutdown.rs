//! Graceful shutdown: work in hand when a service is told to stop is
//! finished, not dropped, and the stop still ends within a deadline.
//!
//! Each test holds a Postgres row lock that the work needs, so the work is
//! provably in flight (its query waits on the lock, as `pg_stat_activity`
//! shows) when the stop begins; then it lets go and checks that the stop
//! waited for the work, that the work took effect, and that the stop ended
//! within [`DEADLINE`]. The relay's half is in
//! `services/relay/tests/relay/shutdown.rs`, next to its harness.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use inventory::Inventory;
use messaging::StreamKind;
use reporting::Reporting;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use testkit::{Ask as _, Running, World, eventually};
use uuid::Uuid;

/// How long a stop may take once the work in hand can finish: well inside
/// the 10 s a container runtime waits between SIGTERM and SIGKILL.
const DEADLINE: Duration = Duration::from_secs(5);

/// How long the work is kept waiting after the stop began: long enough
/// that a stop which did not wait for it would have ended by then.
const HELD: Duration = Duration::from_millis(500);

/// A pool of the test's own on a service's database (the service's pool
/// closes when it stops).
async fn connect<S: service::Service>(app: &Running<S>) -> PgPool {
    PgPool::connect(&app.settings()["DATABASE_URL"])
        .await
        .unwrap()
}

/// Waits until a query of the service's is blocked on a lock in its
/// database: the work is in flight.
async fn until_waiting_on_a_lock(db: &PgPool) {
    eventually(
        Duration::from_secs(10),
        "the work waits on the lock",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'",
            )
            .fetch_one(db)
            .await
            .unwrap();
            waiting > 0
        },
    )
    .await;
}

#[tokio::test]
async fn an_http_request_in_flight_when_the_service_stops_is_answered() {
    let world = World::start().await;
    let mut inventory = Running::<Inventory>::start(&world, &[]).await;
    let concert = world.concert(&inventory, 1).await;

    // The change waits for this lock on the concert's row.
    let db = connect(&inventory).await;
    let mut lock = db.begin().await.unwrap();
    sqlx::query("select 1 from events where id = $1 for update")
        .bind(concert)
        .execute(&mut *lock)
        .await
        .unwrap();
    let change = tokio::spawn(
        inventory
            .request(Method::PATCH, &format!("/events/{concert}"))
            .bearer_auth(world.operator())
            .json(&json!({ "name": "Renamed" }))
            .answer(),
    );
    until_waiting_on_a_lock(&db).await;

    let stopping = tokio::spawn(async move {
        inventory.stop().await;
    });
    tokio::time::sleep(HELD).await;
    assert!(
        !stopping.is_finished(),
        "the service stopped with a request in hand"
    );
    lock.rollback().await.unwrap();

    let changed = change.await.unwrap();
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the stop ends within the deadline once the request is answered")
        .unwrap();
    let name: String = sqlx::query_scalar("select name from events where id = $1")
        .bind(concert)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(name, "Renamed");
}

#[tokio::test]
async fn a_consumer_told_to_stop_finishes_and_acks_the_message_in_hand() {
    let world = World::start().await;
    let mut reporting = Running::<Reporting>::start(&world, &[]).await;

    // Counting waits for this lock on the projection's state (the live
    // projection reads it `for share`).
    let db = connect(&reporting).await;
    let mut lock = db.begin().await.unwrap();
    sqlx::query("select 1 from projection_state for update")
        .execute(&mut *lock)
        .await
        .unwrap();
    let concert = Uuid::new_v4();
    publish_confirmed_order(&world, concert, 2, 9_000).await;
    until_waiting_on_a_lock(&db).await;

    let stopping = tokio::spawn(async move {
        reporting.stop().await;
    });
    tokio::time::sleep(HELD).await;
    assert!(
        !stopping.is_finished(),
        "the consumer stopped with a message in hand"
    );
    lock.rollback().await.unwrap();
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the stop ends within the deadline once the message is counted")
        .unwrap();

    // Counted, and acked: nothing is pending and the ack floor is past it,
    // so no other instance gets it again.
    let sold: i64 = sqlx::query_scalar("select tickets_sold from sales where event_id = $1")
        .bind(concert)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sold, 2);
    let info = reporting_consumer(&world)
        .await
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.ack_floor.stream_sequence, 1, "{info:?}");
}

/// Publishes an `OrderConfirmed` of `seats` seats for `concert`, as the
/// orders relay would.
async fn publish_confirmed_order(world: &World, concert: Uuid, seats: usize, amount_cents: i64) {
    let order = Uuid::new_v4();
    let message = Uuid::new_v4();
    let seats: Vec<_> = (1..=seats)
        .map(|i| json!({ "seat_id": format!("A-{i}") }))
        .collect();
    // Version 2 of `OrderConfirmed`: the concert is still `event_id`;
    // consumers read it whichever version producers have moved on to.
    let envelope = json!({
        "event_id": message,
        "event_type": "OrderConfirmed",
        "schema_version": 2,
        "aggregate_type": "order",
        "aggregate_id": order,
        "aggregate_version": 1,
        "occurred_at": "2026-11-30T12:00:00Z",
        "producer": "orders",
        "data": {
            "order_id": order,
            "event_id": concert,
            "customer_email": "ada@example.com",
            "seats": seats,
            "amount_cents": amount_cents,
            "confirmed_at": "2026-11-30T12:00:00Z",
        },
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(messaging::headers::MSG_ID, message.to_string().as_str());
    let js = jetstream(world).await;
    js.send_publish(
        world.topology().subject("orders.events.order_confirmed"),
        async_nats::jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(&envelope).unwrap().into())
            .headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

async fn jetstream(world: &World) -> async_nats::jetstream::Context {
    let client = async_nats::connect(world.nats.url()).await.unwrap();
    async_nats::jetstream::new(client)
}

/// The live projection's durable consumer.
async fn reporting_consumer(world: &World) -> PullConsumer {
    let topology = world.topology();
    jetstream(world)
        .await
        .get_stream(topology.stream(StreamKind::OrderEvents))
        .await
        .unwrap()
        .get_consumer(&topology.durable(reporting::projection::CONSUMER))
        .await
        .unwrap()
}
