//! Schema evolution end to end: a log that holds every committed version
//! of the order events, as the producers of each era wrote them, is
//! counted the same live and by a rebuild.
//!
//! The old events are published here as raw JSON, with their old
//! `schema_version` and their old field names (the concert in `event_id`,
//! hold tokens on the seats): exactly what `ORDER_EVENTS` keeps from
//! before each breaking change, and what no type in the code writes any
//! more.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reporting::Reporting;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{Ask as _, Running, World, eventually};
use uuid::Uuid;

/// Reporting and a hand on its stream.
struct Log {
    reporting: Running<Reporting>,
    js: async_nats::jetstream::Context,
    concert: Uuid,
    // Last: the service stops before its servers go.
    world: World,
}

/// What one order's events carry.
struct Order {
    id: Uuid,
    seats: Vec<&'static str>,
}

/// The three facts of one order's life, each with the `schema_version` its
/// producer wrote.
struct Versions {
    created: u32,
    paid: u32,
    outcome: Outcome,
}

/// How the order ended, and in which version of that event.
enum Outcome {
    Confirmed { version: u32, amount_cents: i64 },
    Refunded { version: u32 },
}

impl Log {
    async fn start() -> Self {
        let world = Box::pin(World::start()).await;
        let reporting = Box::pin(Running::<Reporting>::start(&world, &[])).await;
        Self {
            js: world.nats.jetstream().await,
            reporting,
            concert: Uuid::new_v4(),
            world,
        }
    }

    /// Publishes the order's created, paid and final events (aggregate
    /// versions 1, 2, 3), each in the payload shape of its version.
    async fn order(&self, seats: &[&'static str], versions: Versions) {
        let order = Order {
            id: Uuid::new_v4(),
            seats: seats.to_vec(),
        };
        let created = self.payload(&order, versions.created, &[]);
        self.publish(&order, 1, "OrderCreated", versions.created, created)
            .await;
        let paid_at = [("paid_at", json!("2026-03-01T19:30:00Z"))];
        let paid = self.payload(&order, versions.paid, &paid_at);
        self.publish(&order, 2, "OrderPaid", versions.paid, paid)
            .await;
        match versions.outcome {
            Outcome::Confirmed {
                version,
                amount_cents,
            } => {
                let fields = [
                    ("amount_cents", json!(amount_cents)),
                    ("confirmed_at", json!("2026-03-01T19:30:05Z")),
                ];
                let confirmed = self.payload(&order, version, &fields);
                self.publish(&order, 3, "OrderConfirmed", version, confirmed)
                    .await;
            }
            Outcome::Refunded { version } => {
                let mut refunded = json!({
                    "order_id": order.id,
                    "customer_email": "ada@example.com",
                    "reason": "a seat was sold to someone else",
                    "refunded_at": "2026-03-01T19:30:05Z",
                });
                refunded[concert_field(version, 2)] = json!(self.concert);
                self.publish(&order, 3, "OrderRefunded", version, refunded)
                    .await;
            }
        }
    }

    /// An `OrderCreated`, `OrderPaid` or `OrderConfirmed` payload at
    /// `version`, with `extra` fields: v3 names the concert `concert_id`,
    /// v1 and v2 `event_id`; v1 seats carry the customer's hold token.
    fn payload(&self, order: &Order, version: u32, extra: &[(&str, Value)]) -> Value {
        let seats: Vec<Value> = order
            .seats
            .iter()
            .map(|seat| match version {
                1 => json!({ "seat_id": seat, "hold_token": Uuid::new_v4() }),
                _ => json!({ "seat_id": seat }),
            })
            .collect();
        let mut data = json!({
            "order_id": order.id,
            "customer_email": "ada@example.com",
            "seats": seats,
        });
        data[concert_field(version, 3)] = json!(self.concert);
        for (name, value) in extra {
            data[*name] = value.clone();
        }
        data
    }

    /// Publishes one envelope to `ORDER_EVENTS`, as the relay would.
    async fn publish(
        &self,
        order: &Order,
        aggregate_version: i64,
        event_type: &str,
        schema_version: u32,
        data: Value,
    ) {
        let message_id = Uuid::new_v4();
        let envelope = json!({
            "event_id": message_id,
            "event_type": event_type,
            "schema_version": schema_version,
            "aggregate_type": "order",
            "aggregate_id": order.id,
            "aggregate_version": aggregate_version,
            "occurred_at": "2026-03-01T19:30:00Z",
            "producer": "orders",
            "data": data,
        });
        let subject = match event_type {
            "OrderCreated" => "orders.events.order_created",
            "OrderPaid" => "orders.events.order_paid",
            "OrderConfirmed" => "orders.events.order_confirmed",
            "OrderRefunded" => "orders.events.order_refunded",
            other => panic!("no subject for {other}"),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(messaging::headers::MSG_ID, message_id.to_string().as_str());
        self.js
            .send_publish(
                self.world.topology().subject(subject),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(serde_json::to_vec(&envelope).unwrap().into())
                    .headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The concert's report, or `None` before its first sale.
    async fn report(&self) -> Option<Value> {
        let report = self
            .reporting
            .get_as(
                &format!("/reports/events/{}", self.concert),
                self.world.operator(),
            )
            .answer()
            .await;
        (report.status == StatusCode::OK).then_some(report.body)
    }
}

/// The concert's field name at `version` of an event type whose rename
/// came with version `renamed_in` (3 for created, paid and confirmed, 2
/// for refunded).
fn concert_field(version: u32, renamed_in: u32) -> &'static str {
    if version >= renamed_in {
        "concert_id"
    } else {
        "event_id"
    }
}

#[tokio::test]
async fn a_log_holding_every_version_of_the_order_events_rebuilds_the_report_counted_live() {
    let log = Log::start().await;
    // Before hold tokens left the seats: everything v1.
    let v1 = Versions {
        created: 1,
        paid: 1,
        outcome: Outcome::Confirmed {
            version: 1,
            amount_cents: 9_000,
        },
    };
    log.order(&["A-1", "A-2"], v1).await;
    // Before the concert's field was renamed: v2, and refunds still v1.
    let v2 = Versions {
        created: 2,
        paid: 2,
        outcome: Outcome::Confirmed {
            version: 2,
            amount_cents: 4_500,
        },
    };
    log.order(&["A-3"], v2).await;
    let v2_refunded = Versions {
        created: 2,
        paid: 2,
        outcome: Outcome::Refunded { version: 1 },
    };
    log.order(&["A-4"], v2_refunded).await;
    // Today's producers: v3, and refunds v2.
    let current = Versions {
        created: 3,
        paid: 3,
        outcome: Outcome::Confirmed {
            version: 3,
            amount_cents: 5_000,
        },
    };
    log.order(&["A-5"], current).await;
    let current_refunded = Versions {
        created: 3,
        paid: 3,
        outcome: Outcome::Refunded { version: 2 },
    };
    log.order(&["A-6"], current_refunded).await;

    // Live: every version counted, none dead-lettered.
    eventually(
        Duration::from_secs(20),
        "the live report counts all five orders",
        || async {
            log.report()
                .await
                .is_some_and(|r| r["tickets_sold"] == 4 && r["refunds"] == 2)
        },
    )
    .await;
    let live = log.report().await.unwrap();
    assert_eq!(live["revenue_cents"], 18_500);
    log.reporting
        .scraped(r#"consumer_dead_lettered_total{consumer="reporting"} 0"#)
        .await;

    let rebuilt_generation = reporting::rebuild::rebuild(
        log.reporting.lent::<sqlx::PgPool>(),
        log.reporting.lent::<async_nats::jetstream::Context>(),
        log.reporting.lent::<messaging::Topology>(),
        |_, _| {},
    )
    .await
    .unwrap()
    .generation;

    let rebuilt = log.report().await.unwrap();
    assert_eq!(rebuilt["generation"], rebuilt_generation);
    assert_ne!(rebuilt["generation"], live["generation"]);
    for field in ["tickets_sold", "revenue_cents", "refunds"] {
        assert_eq!(
            rebuilt[field], live[field],
            "{field}: rebuilt from the mixed log = live"
        );
    }
}
