//! What the tests share: inventory started in a world with admission
//! control out of the way, and the steps they arrange and read back with.

use consumer::{Delivery, Handler as _};
use contracts::orders::{self, OrderPaid, OrderSeat};
use contracts::{Envelope, Event};
use inventory::Inventory;
use inventory::allocation::SeatAllocation;
use inventory::seat_map::SeatMaps;
use reqwest::StatusCode;
use sqlx::PgPool;
use testkit::{Answer, Ask as _, Running, World};
use uuid::Uuid;

/// Inventory in `world` with `extra` settings, such as `("HOLD_TTL", "1s")`.
/// Tests fire hundreds of requests from one address, so the rate limit and
/// the in-flight cap are lifted unless `extra` sets them. The refreshes
/// around a sale's opening are off unless `extra` sets them: their loads
/// would add to the counts that the cache tests assert.
pub(crate) async fn start(world: &World, extra: &[(&str, &str)]) -> Running<Inventory> {
    let mut settings = vec![
        ("RATE_LIMIT_PER_SECOND", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
        ("MAX_IN_FLIGHT", "5000"),
        ("SEATMAP_OPENING_LEAD", "0s"),
        ("SEATMAP_OPENING_HOT_FOR", "0s"),
    ];
    settings.extend_from_slice(extra);
    Running::start(world, &settings).await
}

/// The usual start: a world, inventory in it, and a concert of `seats`
/// seats (`A-1` …) on sale now.
pub(crate) async fn with_concert(seats: usize) -> (World, Running<Inventory>, Uuid) {
    let world = World::start().await;
    let inventory = start(&world, &[]).await;
    let concert = world.concert(&inventory, seats).await;
    (world, inventory, concert)
}

/// Inventory whose clients may each send `burst` requests, then one per
/// ten seconds: the rate limit at work, within one test.
pub(crate) async fn start_rate_limited(world: &World, burst: &str) -> Running<Inventory> {
    start(
        world,
        &[
            ("RATE_LIMIT_PER_SECOND", "0.1"),
            ("RATE_LIMIT_BURST", burst),
        ],
    )
    .await
}

/// The steps the tests take on a running inventory: an extension of
/// `Running<Inventory>`, written once as the trait's own methods.
pub(crate) trait Steps {
    /// The running inventory.
    fn app(&self) -> &Running<Inventory>;

    /// Its database.
    fn db(&self) -> &PgPool {
        self.app().lent::<PgPool>()
    }

    /// Seat maps it has loaded from Postgres so far.
    fn db_loads(&self) -> u64 {
        self.app().lent::<SeatMaps>().metrics().db_loads.get()
    }

    /// `POST /ops/warmup` as an operator; returns how many maps it warmed.
    async fn warmup(&self, world: &World) -> u64 {
        let warmed = self
            .app()
            .post_as("/ops/warmup", world.operator())
            .answer()
            .await;
        assert_eq!(warmed.status, StatusCode::OK, "{}", warmed.text);
        warmed.body["warmed"].as_u64().unwrap()
    }

    /// `GET /events/{event}/seats`, anonymously.
    async fn seat_map(&self, event: Uuid) -> Answer {
        self.app()
            .get(&format!("/events/{event}/seats"))
            .answer()
            .await
    }

    /// `POST` a hold on `seat` as `customer`.
    async fn hold(&self, world: &World, event: Uuid, seat: &str, customer: Uuid) -> Answer {
        self.app()
            .post_as(
                &format!("/events/{event}/seats/{seat}/hold"),
                world.customer(customer),
            )
            .answer()
            .await
    }

    /// Holds a seat, asserting the 201; returns `(hold_token, fencing_token)`.
    async fn held(&self, world: &World, event: Uuid, seat: &str, customer: Uuid) -> (Uuid, i64) {
        let hold = self.hold(world, event, seat, customer).await;
        assert_eq!(
            hold.status,
            StatusCode::CREATED,
            "hold {seat}: {}",
            hold.text
        );
        (
            hold.body["hold_token"].as_str().unwrap().parse().unwrap(),
            hold.body["fencing_token"].as_i64().unwrap(),
        )
    }

    /// Retries the hold every 50 ms until it is granted (the seat's hold
    /// lapsed, Redis came back…); returns its fencing token.
    async fn hold_once_free(
        &self,
        world: &World,
        event: Uuid,
        seat: &str,
        customer: Uuid,
        within: std::time::Duration,
    ) -> i64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let hold = self.hold(world, event, seat, customer).await;
            if hold.status == StatusCode::CREATED {
                return hold.body["fencing_token"].as_i64().unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "seat {seat} not granted within {within:?}: last answer {}",
                hold.status
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Runs the sale of `seats` (with their fencing tokens) for a new order,
    /// as the consumer does on `OrderPaid`; returns the order id and the
    /// answer's event type.
    async fn sell(&self, event: Uuid, seats: &[(&str, Option<i64>)]) -> (Uuid, String) {
        self.apply_sale(paid(event, seats)).await
    }

    /// Applies an `OrderPaid` delivery as the consumer does, with the step
    /// after its commit; returns the order id and the answer's event type.
    async fn apply_sale(&self, delivery: Delivery) -> (Uuid, String) {
        let order_id = delivery.envelope.aggregate_id;
        let mut tx = self.db().begin().await.unwrap();
        let allocation = SeatAllocation {
            outbox: outbox::Writer::new(),
            seat_maps: Some(self.app().lent::<SeatMaps>().clone()),
        };
        allocation.handle(&mut tx, &delivery).await.unwrap();
        tx.commit().await.unwrap();
        allocation.after_commit(&delivery).await;
        let answer: String = sqlx::query_scalar(
            "select event_type from outbox where aggregate_id = $1 and event_type <> 'OrderPaid'",
        )
        .bind(order_id)
        .fetch_one(self.db())
        .await
        .unwrap();
        (order_id, answer)
    }

    /// The order a seat is sold to.
    async fn owner_of(&self, event: Uuid, seat: &str) -> Option<Uuid> {
        sqlx::query_scalar("select order_id from seats where event_id = $1 and seat_id = $2")
            .bind(event)
            .bind(seat)
            .fetch_one(self.db())
            .await
            .unwrap()
    }
}

impl Steps for Running<Inventory> {
    fn app(&self) -> &Running<Inventory> {
        self
    }
}

/// An `OrderPaid` delivery for a new order of `seats` with fencing tokens,
/// in the version the orders service writes today.
pub(crate) fn paid(concert: Uuid, seats: &[(&str, Option<i64>)]) -> Delivery {
    paid_written_at(OrderPaid::SCHEMA_VERSION, concert, seats)
}

/// The same as [`paid`], as a producer of `OrderPaid` v`version` wrote it,
/// in that version's committed struct: v2 named the concert `event_id`, v1
/// also gave each seat the customer's hold token. Streams still hold them.
pub(crate) fn paid_written_at(
    version: u32,
    concert: Uuid,
    seats: &[(&str, Option<i64>)],
) -> Delivery {
    let order_id = Uuid::new_v4();
    let customer_email = "ada@example.com".to_owned();
    let paid_at = chrono::Utc::now();
    let current_seats = seats
        .iter()
        .map(|(seat, fence)| OrderSeat {
            seat_id: (*seat).into(),
            fencing_token: *fence,
        })
        .collect();
    match version {
        3 => delivery(
            order_id,
            OrderPaid {
                order_id,
                concert_id: concert,
                customer_email,
                seats: current_seats,
                paid_at,
            },
        ),
        2 => delivery(
            order_id,
            orders::v2::OrderPaid {
                order_id,
                event_id: concert,
                customer_email,
                seats: current_seats,
                paid_at,
            },
        ),
        1 => delivery(
            order_id,
            orders::v1::OrderPaid {
                order_id,
                event_id: concert,
                customer_email,
                seats: seats
                    .iter()
                    .map(|(seat, fence)| orders::v1::OrderSeat {
                        seat_id: (*seat).into(),
                        hold_token: Uuid::new_v4(),
                        fencing_token: *fence,
                    })
                    .collect(),
                paid_at,
            },
        ),
        other => panic!("OrderPaid has no committed version {other}"),
    }
}

/// `data` in an envelope as the consumer hands it to a handler: the
/// payload still JSON, its type and version in the envelope. Version 2 of
/// order `order_id`, after its `OrderCreated`.
fn delivery<T: Event>(order_id: Uuid, data: T) -> Delivery {
    let envelope = Envelope::new("orders", order_id, 2, chrono::Utc::now(), data);
    Delivery {
        envelope: Envelope {
            event_id: envelope.event_id,
            event_type: envelope.event_type,
            schema_version: envelope.schema_version,
            aggregate_type: envelope.aggregate_type,
            aggregate_id: envelope.aggregate_id,
            aggregate_version: envelope.aggregate_version,
            occurred_at: envelope.occurred_at,
            producer: envelope.producer,
            data: serde_json::to_value(&envelope.data).unwrap(),
        },
        subject: T::SUBJECT.into(),
        stream_sequence: 1,
        delivered: 1,
    }
}

/// The `Retry-After` header in seconds; fails the test if it is missing.
pub(crate) fn retry_after(answer: &Answer) -> u64 {
    answer
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The status of `seat` on a seat map's JSON body.
pub(crate) fn status_of<'a>(map: &'a serde_json::Value, seat: &str) -> &'a str {
    map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seat_id"] == seat)
        .and_then(|s| s["status"].as_str())
        .unwrap()
}
