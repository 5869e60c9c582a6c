//! End-to-end latency of every paid order, stage by stage, from the
//! timestamps the system itself recorded: nothing here polls, so nothing
//! here adds its own delay to the figures.
//!
//! For each order of the run's concerts that was paid, t0 is orders' `paid_at`,
//! and each stage is the time from t0 to:
//!
//! | stage | recorded as |
//! |---|---|
//! | `OrderPaid published` | JetStream's stored time of the order's `OrderPaid` in `ORDER_EVENTS` |
//! | `inventory applied` | inventory's `inbox.processed_at` (consumer `inventory`) of that message |
//! | `CONFIRMED in orders` | orders' `inbox.processed_at` (consumer `orders`) of the `SeatsConfirmed` that confirmed it; when that message is no longer in the stream, the confirmed order's `updated_at`, the same transaction's time |
//! | `reporting applied` | reporting's `inbox.processed_at` (consumer `reporting`) of the order's `OrderConfirmed` |
//! | `e-mail sent` | notification's `notifications.sent_at` of its `payment_received` e-mail |
//!
//! The message ids come from reading each stream once, through an
//! ephemeral ordered consumer filtered on one subject (as a reporting
//! rebuild replays `ORDER_EVENTS`): the envelope's `event_id` is the
//! message id every consumer's inbox keys on.
//!
//! What the figures mean:
//! - `paid_at` is `now()` in the payment's transaction, which Postgres
//!   fixes at the transaction's *start*: t0 is a little before the commit
//!   (by the time the payment's own statements take), so every stage reads
//!   slightly longer than from the commit;
//! - the inbox times are `now()` of each consumer's transaction, that is
//!   when it began applying the message, not when it committed;
//! - every timestamp but the JetStream one comes from the one Postgres
//!   server, and JetStream's from the NATS server on the same machine: one
//!   clock, so differences between them are not skewed (with the services
//!   on several hosts this would no longer hold for the publish time).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use chrono::{DateTime, TimeDelta, Utc};
use contracts::Event as _;
use contracts::inventory::SeatsConfirmed;
use contracts::orders::{OrderConfirmed, OrderPaid};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use messaging::StreamKind;
use orders::domain::OrderStatus;
use sqlx::PgPool;
use uuid::Uuid;

use super::report::percentiles;
use super::{Drive, Stage, Targets};
use crate::commands::support::connect_postgres;

/// The stages' latencies; see the module docs. A stage whose source cannot
/// be read is reported with no orders measured (and a warning), so a
/// database that is down costs one row of the table, not the report.
pub(super) async fn measure(targets: &Targets, drive: &Drive) -> anyhow::Result<Vec<Stage>> {
    let paid = match paid_orders(targets, &drive.concerts).await {
        Ok(paid) => paid,
        Err(e) => {
            eprintln!("latency: cannot read the paid orders, so nothing is measured: {e:#}");
            HashMap::new()
        }
    };
    let timeline = Timeline::read(targets, &paid).await;
    Ok(timeline.stages(&paid))
}

/// A paid order, as orders has it.
struct PaidOrder {
    paid_at: DateTime<Utc>,
    status: OrderStatus,
    updated_at: DateTime<Utc>,
}

async fn paid_orders(
    targets: &Targets,
    concerts: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, PaidOrder>> {
    let db = connect_postgres(&targets.orders_database_url, 1).await?;
    let rows: Vec<(Uuid, DateTime<Utc>, String, DateTime<Utc>)> = sqlx::query_as(
        "select id, paid_at, status, updated_at from orders
         where event_id = any($1) and paid_at is not null",
    )
    .bind(concerts)
    .fetch_all(&db)
    .await
    .context("reading the paid orders")?;
    rows.into_iter()
        .map(|(id, paid_at, status, updated_at)| {
            let status = status.parse().map_err(anyhow::Error::msg)?;
            Ok((
                id,
                PaidOrder {
                    paid_at,
                    status,
                    updated_at,
                },
            ))
        })
        .collect()
}

/// When each paid order passed each stage, by order; an order missing
/// from a map did not reach that stage (or its record could not be read).
#[derive(Default)]
struct Timeline {
    published: HashMap<Uuid, DateTime<Utc>>,
    inventory_applied: HashMap<Uuid, DateTime<Utc>>,
    confirmed: HashMap<Uuid, DateTime<Utc>>,
    reporting_applied: HashMap<Uuid, DateTime<Utc>>,
    email_sent: HashMap<Uuid, DateTime<Utc>>,
}

impl Timeline {
    async fn read(targets: &Targets, paid: &HashMap<Uuid, PaidOrder>) -> Self {
        let mut timeline = Self::default();
        if paid.is_empty() {
            return timeline;
        }
        if let Err(e) = timeline.read_sagas(targets, paid).await {
            eprintln!(
                "latency: cannot replay the streams, the saga's stages are left empty: {e:#}"
            );
        }
        timeline.email_sent = or_warn("the e-mails", email_times(targets, paid).await);
        timeline
    }

    /// Everything that needs the streams: the publish times, and the inbox
    /// times of the messages found there.
    async fn read_sagas(
        &mut self,
        targets: &Targets,
        paid: &HashMap<Uuid, PaidOrder>,
    ) -> anyhow::Result<()> {
        let (js, topology) = targets.nats.connect().await?;
        let by_aggregate = |envelope: &Envelope| Some(envelope.aggregate_id);
        let order_paid = stored_messages(
            &js,
            &topology,
            StreamKind::OrderEvents,
            OrderPaid::SUBJECT,
            paid,
            by_aggregate,
        )
        .await?;
        self.published = order_paid
            .iter()
            .map(|(order, message)| (*order, message.published))
            .collect();
        self.inventory_applied = or_warn(
            "inventory's inbox",
            applied(
                &targets.inventory_database_url,
                inventory::allocation::CONSUMER,
                &order_paid,
            )
            .await,
        );

        let by_order_id = |envelope: &Envelope| {
            envelope.data["order_id"]
                .as_str()
                .and_then(|id| id.parse().ok())
        };
        let seats_confirmed = stored_messages(
            &js,
            &topology,
            StreamKind::InventoryEvents,
            SeatsConfirmed::SUBJECT,
            paid,
            by_order_id,
        )
        .await?;
        self.confirmed = or_warn(
            "orders' inbox",
            applied(
                &targets.orders_database_url,
                orders::reactions::CONSUMER,
                &seats_confirmed,
            )
            .await,
        );
        // An order confirmed without its SeatsConfirmed in the stream (it
        // expired, or was redriven under a new id): its last change is the
        // confirmation, written in the transaction that recorded the inbox
        // row, so `updated_at` is the same `now()`.
        for (id, order) in paid {
            if order.status == OrderStatus::Confirmed {
                self.confirmed.entry(*id).or_insert(order.updated_at);
            }
        }

        let order_confirmed = stored_messages(
            &js,
            &topology,
            StreamKind::OrderEvents,
            OrderConfirmed::SUBJECT,
            paid,
            by_aggregate,
        )
        .await?;
        self.reporting_applied = or_warn(
            "reporting's inbox",
            applied(
                &targets.reporting_database_url,
                reporting::projection::CONSUMER,
                &order_confirmed,
            )
            .await,
        );
        Ok(())
    }

    fn stages(&self, paid: &HashMap<Uuid, PaidOrder>) -> Vec<Stage> {
        let stage = |name, times: &HashMap<Uuid, DateTime<Utc>>| {
            let deltas = times
                .iter()
                .filter_map(|(order, at)| paid.get(order).map(|p| *at - p.paid_at));
            stage(name, deltas)
        };
        vec![
            stage("OrderPaid published", &self.published),
            stage("inventory applied", &self.inventory_applied),
            stage("CONFIRMED in orders", &self.confirmed),
            stage("reporting applied", &self.reporting_applied),
            stage("e-mail sent", &self.email_sent),
        ]
    }
}

/// The times read, or none (and a warning) when `what` cannot be read.
fn or_warn(
    what: &str,
    times: anyhow::Result<HashMap<Uuid, DateTime<Utc>>>,
) -> HashMap<Uuid, DateTime<Utc>> {
    times.unwrap_or_else(|e| {
        eprintln!("latency: cannot read {what}, its stage is left empty: {e:#}");
        HashMap::new()
    })
}

type Envelope = contracts::Envelope<serde_json::Value>;

/// Attempts at creating a replay consumer.
const REPLAY_ATTEMPTS: u32 = 4;

/// A message of a stream: its id (the envelope's `event_id`) and when
/// JetStream stored it.
struct Stored {
    message_id: Uuid,
    published: DateTime<Utc>,
}

/// The messages on `subject` about the `paid` orders (which order: `of`),
/// the first stored of each when there are several (a redrive stores a
/// fact again under a new id).
async fn stored_messages(
    js: &async_nats::jetstream::Context,
    topology: &messaging::Topology,
    kind: StreamKind,
    subject: &str,
    paid: &HashMap<Uuid, PaidOrder>,
    of: impl Fn(&Envelope) -> Option<Uuid>,
) -> anyhow::Result<HashMap<Uuid, Stored>> {
    let stream = js
        .get_stream(topology.stream(kind))
        .await
        .with_context(|| format!("no stream {}", topology.stream(kind)))?;
    // On a cluster that lost a node, the server may place the ephemeral
    // consumer on the lost node's replica of the stream, and the request
    // times out; another attempt is placed again.
    let mut attempt = 1;
    let consumer = loop {
        let created = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: topology.subject(subject),
                deliver_policy: DeliverPolicy::All,
                ..pull::OrderedConfig::default()
            })
            .await;
        match created {
            Ok(consumer) => break consumer,
            Err(e) if attempt < REPLAY_ATTEMPTS => {
                tracing::debug!(subject, error = %e, "replay consumer not created; trying again");
                attempt += 1;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot replay {subject} ({REPLAY_ATTEMPTS} attempts)"
                )));
            }
        }
    };
    // What is stored on the subject now; nothing of the sale arrives later.
    let count = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await?;
    let mut found = HashMap::new();
    for _ in 0..count {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .with_context(|| format!("replaying {subject}: no message within 10 s"))?
            .with_context(|| format!("replaying {subject}: the replay ended early"))?
            .map_err(|e| anyhow::anyhow!("replaying {subject}: {e}"))?;
        let published = message
            .info()
            .map_err(|e| anyhow::anyhow!("replaying {subject}: {e}"))?
            .published;
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&message.payload) else {
            continue;
        };
        let Some(order) = of(&envelope).filter(|order| paid.contains_key(order)) else {
            continue;
        };
        let published = i64::try_from(published.unix_timestamp_nanos())
            .map(DateTime::from_timestamp_nanos)
            .context("a publish time beyond the year 2262")?;
        found.entry(order).or_insert(Stored {
            message_id: envelope.event_id.0,
            published,
        });
    }
    Ok(found)
}

/// When `consumer` applied each order's message (`inbox.processed_at`).
async fn applied(
    database_url: &str,
    consumer: &str,
    messages: &HashMap<Uuid, Stored>,
) -> anyhow::Result<HashMap<Uuid, DateTime<Utc>>> {
    let db = connect_postgres(database_url, 1).await?;
    let order_of: HashMap<Uuid, Uuid> = messages
        .iter()
        .map(|(order, stored)| (stored.message_id, *order))
        .collect();
    let ids: Vec<Uuid> = order_of.keys().copied().collect();
    let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "select event_id, processed_at from inbox where consumer = $1 and event_id = any($2)",
    )
    .bind(consumer)
    .bind(&ids)
    .fetch_all(&db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(message, at)| order_of.get(&message).map(|order| (*order, at)))
        .collect())
}

/// When each order's `payment_received` e-mail was sent.
async fn email_times(
    targets: &Targets,
    paid: &HashMap<Uuid, PaidOrder>,
) -> anyhow::Result<HashMap<Uuid, DateTime<Utc>>> {
    let db: PgPool = connect_postgres(&targets.notification_database_url, 1).await?;
    let ids: Vec<Uuid> = paid.keys().copied().collect();
    let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "select order_id, sent_at from notifications
         where kind = 'payment_received' and order_id = any($1) and sent_at is not null",
    )
    .bind(&ids)
    .fetch_all(&db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The longest stage a histogram tells apart: an hour, in microseconds;
/// a longer one (a saga stuck through a long fault) counts as an hour.
const LONGEST_MICROS: u64 = 3_600_000_000;

/// A stage's percentiles over `deltas`, recorded in microseconds. A
/// negative delta (a stage recorded before `paid_at`, which one clock
/// cannot produce) counts as zero rather than being dropped, so the count
/// stays the number of orders measured.
fn stage(name: &'static str, deltas: impl Iterator<Item = TimeDelta>) -> Stage {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, LONGEST_MICROS, 3)
        .expect("bounds and precision are valid");
    for delta in deltas {
        let micros = u64::try_from(delta.num_microseconds().unwrap_or(i64::MAX)).unwrap_or(0);
        histogram.saturating_record(micros);
    }
    let summary = percentiles(&histogram);
    Stage {
        name,
        count: summary.count,
        p50_ms: summary.p50_ms,
        p90_ms: summary.p90_ms,
        p99_ms: summary.p99_ms,
        max_ms: summary.max_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_summarises_the_deltas_in_milliseconds() {
        let deltas = (1..=100).map(TimeDelta::milliseconds);
        let stage = stage("inventory applied", deltas);
        assert_eq!(stage.count, 100);
        assert!((stage.p50_ms - 50.0).abs() < 0.1, "{stage:?}");
        assert!((stage.p99_ms - 99.0).abs() < 0.1, "{stage:?}");
        assert!((stage.max_ms - 100.0).abs() < 0.1, "{stage:?}");
    }

    #[test]
    fn a_stage_beyond_an_hour_counts_as_an_hour_and_is_still_counted() {
        let stage = stage("reporting applied", [TimeDelta::hours(3)].into_iter());
        assert_eq!(stage.count, 1);
        assert!((stage.max_ms - 3_600_000.0).abs() < 3_600.0, "{stage:?}");
    }

    #[test]
    fn a_negative_delta_counts_as_zero() {
        let stage = stage("e-mail sent", [TimeDelta::milliseconds(-3)].into_iter());
        assert_eq!(stage.count, 1);
        assert!(stage.max_ms.abs() < f64::EPSILON, "{stage:?}");
    }
}
