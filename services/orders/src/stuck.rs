//! Stuck sagas: paid orders that have waited too long for inventory's
//! answer.
//!
//! The payment saga ends an order `PAID → CONFIRMED` or `PAID → REFUNDED`
//! when inventory answers its `OrderPaid` ([`crate::reactions`]). Nothing
//! in the saga times out: if the `OrderPaid` or the answer stops on the
//! way (a parked outbox row, a dead letter, a consumer that is down), the
//! order stays `PAID` for good, and a customer has paid for seats nobody
//! sold them. So the wait has a deadline (`PAID_DEADLINE`, counted from
//! the order's `paid_at`), and an order past it is made visible:
//!
//! - on `/metrics`, measured at every scrape ([`install`]):
//!   `orders_stuck_paid`, how many (counted up to [`COUNT_CAP`]), and
//!   `orders_stuck_paid_oldest_seconds`, how long ago the oldest of them
//!   was paid (0 when none is);
//! - by `ticketctl orders stuck`, which lists them ([`list`]).
//!
//! Made visible, not acted on: only inventory knows whether the seats were
//! sold, so confirming or refunding at the deadline could both be wrong.
//! The operator finds where the message stopped and sends it on
//! (docs/operations.md, "Stuck paid orders").
//!
//! How it fails: the measurement is one query over an index of the orders
//! waiting right now, given [`MEASURE_TIMEOUT`]. When Postgres does not
//! answer in time, both gauges are left out of that scrape (as the relay's
//! backlog is): an alert then sees no data rather than an old "nothing
//! stuck", and the rest of the scrape is served as usual.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use service::Builder;
use sqlx::PgPool;
use uuid::Uuid;

/// The most stuck orders [`measure`] counts: beyond it the gauge reads "at
/// least this many", and the count stays cheap when many are stuck at
/// once (a consumer down during a sale), which is when it is scraped most.
pub const COUNT_CAP: i64 = 10_000;

/// How long a scrape waits for the measurement: a readiness check's time
/// (`service::ops::CHECK_TIMEOUT`), not the pool's acquire timeout, so a
/// scrape stays quick while Postgres is slow or away.
pub const MEASURE_TIMEOUT: Duration = service::ops::CHECK_TIMEOUT;

/// Paid orders past the deadline, as `/metrics` reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stuck {
    /// How many (at most [`COUNT_CAP`]).
    pub count: i64,
    /// Seconds since the oldest of them was paid; 0 when there is none.
    pub oldest_secs: f64,
}

/// Counts the orders that have been `PAID` for longer than `deadline`,
/// and measures the oldest.
///
/// Both halves read only the partial index `orders_paid_waiting_idx`
/// (the orders `PAID` right now): a range scan stopped at [`COUNT_CAP`]
/// rows, and its first entry.
pub async fn measure(db: &PgPool, deadline: Duration) -> sqlx::Result<Stuck> {
    let row = sqlx::query!(
        r#"
        select
            (select count(*) from (
                select 1 from orders
                where status = 'PAID' and paid_at < now() - make_interval(secs => $1)
                limit $2
            ) stuck) as "count!",
            coalesce((
                select extract(epoch from now() - min(paid_at))::float8
                from orders
                where status = 'PAID' and paid_at < now() - make_interval(secs => $1)
            ), 0) as "oldest_secs!"
        "#,
        deadline.as_secs_f64(),
        COUNT_CAP,
    )
    .fetch_one(db)
    .await?;
    Ok(Stuck {
        count: row.count,
        oldest_secs: row.oldest_secs,
    })
}

/// A paid order still waiting for inventory's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckOrder {
    /// The order.
    pub id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// Its customer (`None` for orders from before identity).
    pub customer_id: Option<Uuid>,
    /// When it became `PAID`.
    pub paid_at: DateTime<Utc>,
    /// Seconds since then, by the database's clock (the one `paid_at` was
    /// written with).
    pub age_secs: f64,
}

/// The orders `PAID` for longer than `older_than`, longest-waiting first,
/// at most `limit` of them.
pub async fn list(db: &PgPool, older_than: Duration, limit: i64) -> sqlx::Result<Vec<StuckOrder>> {
    sqlx::query_as!(
        StuckOrder,
        r#"
        select id, event_id, customer_id, paid_at as "paid_at!",
            extract(epoch from now() - paid_at)::float8 as "age_secs!"
        from orders
        where status = 'PAID' and paid_at < now() - make_interval(secs => $1)
        order by paid_at
        limit $2
        "#,
        older_than.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Registers the two gauges on `app` and the scrape hook that measures
/// them in `db` with `deadline`.
pub fn install(app: &mut Builder, db: PgPool, deadline: Duration) {
    let gauges = StuckGauges::default();
    app.registry().register_collector(Box::new(gauges.clone()));
    app.on_scrape(move || {
        let (db, gauges) = (db.clone(), gauges.clone());
        async move {
            let measured = tokio::time::timeout(MEASURE_TIMEOUT, measure(&db, deadline)).await;
            gauges.set(measured.ok().and_then(Result::ok));
        }
    });
}

/// The last measurement, encoded at each scrape; `None` (not measured in
/// time) leaves the gauges out.
#[derive(Debug, Clone, Default)]
struct StuckGauges(Arc<Mutex<Option<Stuck>>>);

impl StuckGauges {
    fn set(&self, stuck: Option<Stuck>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = stuck;
    }
}

impl Collector for StuckGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stuck) = *self.0.lock().unwrap_or_else(PoisonError::into_inner) else {
            return Ok(());
        };
        let count = format!(
            "Orders PAID for longer than PAID_DEADLINE, still waiting for inventory's answer \
             (counted up to {COUNT_CAP})."
        );
        ConstGauge::new(stuck.count).encode(encoder.encode_descriptor(
            "orders_stuck_paid",
            &count,
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(stuck.oldest_secs).encode(encoder.encode_descriptor(
            "orders_stuck_paid_oldest_seconds",
            "Seconds since the longest-waiting stuck order was paid (0 when none is stuck).",
            None,
            MetricType::Gauge,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    fn scrape(gauges: &StuckGauges) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(gauges.clone()));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn nothing_stuck_is_reported_as_zero() {
        let gauges = StuckGauges::default();
        gauges.set(Some(Stuck {
            count: 0,
            oldest_secs: 0.0,
        }));

        let text = scrape(&gauges);

        assert!(text.contains("\norders_stuck_paid 0\n"), "{text}");
        assert!(
            text.contains("\norders_stuck_paid_oldest_seconds 0.0\n"),
            "{text}"
        );
    }

    #[test]
    fn a_measurement_that_failed_leaves_the_gauges_out() {
        let gauges = StuckGauges::default();
        gauges.set(Some(Stuck {
            count: 2,
            oldest_secs: 400.0,
        }));
        gauges.set(None);

        assert!(!scrape(&gauges).contains("orders_stuck_paid"));
    }
}
