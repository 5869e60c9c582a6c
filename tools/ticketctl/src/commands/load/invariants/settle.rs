//! Waiting for the system to settle after the load: nothing of the sale
//! still in flight anywhere, so that what the checks then find is the
//! outcome, not a moment in the middle.
//!
//! Settled means, all at once: no order of the run's concerts still `PAID` (each
//! saga has its answer), every outbox empty, every durable consumer caught
//! up, and every e-mail owed to the concerts' paid orders sent. Polled
//! every 250 ms up to the deadline (`--settle`).
//!
//! The four are read one after the other, not in one snapshot, and a
//! message moves on between two reads (say from inventory's consumer into
//! inventory's outbox after the outbox was read): one clear poll could
//! miss it. Two clear polls in a row are required; a message cannot keep
//! dodging the reads for the 250 ms between them, since each hop takes
//! the relay or a consumer a pass of its own.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use uuid::Uuid;

use super::{Sources, first_few, pipes};
use crate::commands::load::Check;

const SETTLES: &str = "the system settles";

/// How often the state is read.
const POLL: Duration = Duration::from_millis(250);

/// Clear polls in a row that count as settled (module docs).
const CLEAR_POLLS: u32 = 2;

/// Waits until the system has settled or `within` has passed; the check
/// says how long it took, or what was still in flight at the deadline.
pub(super) async fn wait(sources: &Sources, concerts: &[Uuid], within: Duration) -> Check {
    let started = Instant::now();
    let mut paid_orders = None;
    let mut clear = 0;
    loop {
        let unsettled = unsettled(sources, concerts, &mut paid_orders).await;
        clear = if unsettled.is_empty() { clear + 1 } else { 0 };
        if clear == CLEAR_POLLS {
            return Check {
                name: SETTLES,
                ok: true,
                detail: format!("settled in {:.1} s", started.elapsed().as_secs_f64()),
            };
        }
        if started.elapsed() >= within {
            return Check {
                name: SETTLES,
                ok: false,
                detail: format!(
                    "still in flight after {:.0} s: {}",
                    within.as_secs_f64(),
                    first_few(&unsettled)
                ),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What is still in flight (or could not be read); empty when settled.
/// `paid_orders` caches the concerts' paid orders: no payment starts
/// after the load, so the set is read once.
async fn unsettled(
    sources: &Sources,
    concerts: &[Uuid],
    paid_orders: &mut Option<Vec<Uuid>>,
) -> Vec<String> {
    let mut waiting = Vec::new();
    match still_paid(sources, concerts).await {
        Ok(0) => {}
        Ok(n) => waiting.push(format!("{n} orders still PAID")),
        Err(e) => waiting.push(format!("{e:#}")),
    }
    for database in sources.outboxes() {
        match pipes::unpublished(database).await {
            Ok(0) => {}
            Ok(n) => waiting.push(format!("{n} rows in the {} outbox", database.name)),
            Err(e) => waiting.push(format!("{} outbox: {e:#}", database.name)),
        }
    }
    match pipes::lags(sources).await {
        Ok(lags) => waiting.extend(lags.iter().filter(|l| l.behind()).map(ToString::to_string)),
        Err(e) => waiting.push(format!("consumers: {e:#}")),
    }
    if paid_orders.is_none() {
        match read_paid_orders(sources, concerts).await {
            Ok(ids) => *paid_orders = Some(ids),
            Err(e) => waiting.push(format!("{e:#}")),
        }
    }
    if let Some(ids) = paid_orders {
        match unsent_emails(sources, ids).await {
            Ok(0) => {}
            Ok(n) => waiting.push(format!("{n} e-mails not sent")),
            Err(e) => waiting.push(format!("{e:#}")),
        }
    }
    waiting
}

async fn still_paid(sources: &Sources, concerts: &[Uuid]) -> anyhow::Result<i64> {
    sqlx::query_scalar("select count(*) from orders where event_id = any($1) and status = 'PAID'")
        .bind(concerts)
        .fetch_one(sources.orders.pool()?)
        .await
        .context("counting the orders still PAID")
}

async fn read_paid_orders(sources: &Sources, concerts: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "select id from orders where event_id = any($1)
           and (paid_at is not null or status in ('PAID', 'CONFIRMED', 'REFUNDED'))",
    )
    .bind(concerts)
    .fetch_all(sources.orders.pool()?)
    .await
    .context("reading the paid orders")
}

/// E-mails requested for `orders` and not sent yet. One not requested yet
/// is still a message in a consumer's backlog or an outbox, which the
/// other conditions wait for.
async fn unsent_emails(sources: &Sources, orders: &[Uuid]) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "select count(*) from notifications where order_id = any($1) and sent_at is null",
    )
    .bind(orders)
    .fetch_one(sources.notification.pool()?)
    .await
    .context("counting the e-mails not sent")
}
