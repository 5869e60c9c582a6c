//! Sweeping the consumer tables: `inbox` rows and `consumer_positions`
//! rows old enough that no message they guard can come back.
//!
//! [`Group::install`](crate::Group::install) starts one sweeper per
//! durable consumer, so no service can forget it; each deletes only its
//! own consumer's rows, in batches, every [`Retention::interval`], and a
//! failed pass is logged and tried again next time (the shape of orders'
//! idempotency-key sweeper).
//!
//! # How long a row must live
//!
//! An inbox row turns a message that comes back into a duplicate. A
//! message with the same event id comes back
//!
//! - when its ack was lost: redelivered after `ack_wait` and the retry
//!   delays, seconds to minutes;
//! - when the relay republishes it after a crash between the PubAck and
//!   marking the row: dropped by JetStream inside the duplicate window
//!   (`RELAY_DEDUP_WINDOW`, 10 minutes), delivered again after it;
//! - when a durable is recreated, or a consumer meets a message it never
//!   acked: at most as old as the stream keeps messages (7 days for the
//!   event logs, `messaging::Limits`; acked commands leave their work queue
//!   at once);
//! - when a dead letter is redriven: every consumer of the stream gets it
//!   again, however old the letter (dead letters never expire).
//!
//! So the inbox keeps a row twice the longest stream expiry (14 days),
//! which covers every path but old redrives. Those, and everything past the
//! inbox, are caught by the positions: a versioned event at or below its
//! aggregate's position is stale. A position row therefore lives longer
//! still ([`Retention::positions`], 90 days without a new version of its
//! aggregate), and a dead letter whose event is older than that must not be
//! redriven blindly (`docs/operations.md`, dead letters).
//!
//! # An event for a swept aggregate
//!
//! Sweeping a position makes the aggregate look new (position 0). If a
//! *later* version of it ever arrives, it is a gap: the consumer waits for
//! version 1 for `gap_timeout` and then dead-letters the event, whose error
//! names the missing version. It is never applied out of order and never
//! dropped without a trace; an operator decides (the runbook). Version 1
//! itself could only come back through a redrive of an event older than
//! the positions' retention, which the runbook says not to do blindly:
//! other consumers would apply it again.

use std::future::Future;
use std::time::Duration;

use messaging::{Limits, StreamKind};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// How long the consumer tables keep their rows, and how they are swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Inbox rows older than this are deleted.
    pub inbox: Duration,
    /// Positions not moved for longer than this are deleted; never shorter
    /// than `inbox`, since they guard what the inbox has forgotten.
    pub positions: Duration,
    /// Time between two sweeps.
    pub interval: Duration,
    /// Rows deleted per statement: small, so each delete's locks and WAL
    /// stay short (and a busy table is not locked for long).
    pub batch: i64,
}

impl Default for Retention {
    /// Inbox: twice the longest stream expiry; positions 90 days; a sweep
    /// every 10 minutes, 1,000 rows at a time.
    fn default() -> Self {
        Self {
            inbox: 2 * longest_stream_expiry(),
            positions: Duration::from_hours(90 * 24),
            interval: Duration::from_mins(10),
            batch: 1_000,
        }
    }
}

/// The longest a stream keeps a message that can expire: how old a
/// message can be when a consumer meets it from the stream itself.
fn longest_stream_expiry() -> Duration {
    StreamKind::ALL
        .iter()
        .filter_map(|kind| match kind.limits() {
            Limits::Expire(age) => Some(age),
            Limits::RefuseBeyond(_) => None,
        })
        .max()
        .unwrap_or_default()
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Inbox rows.
    pub inbox: u64,
    /// Position rows.
    pub positions: u64,
}

/// Deletes `consumer`'s rows older than `retention` allows, batch after
/// batch until none is left.
pub async fn sweep(db: &PgPool, consumer: &str, retention: &Retention) -> sqlx::Result<Swept> {
    let inbox =
        until_done(|| store::sweep_inbox(db, consumer, retention.inbox, retention.batch)).await?;
    let positions =
        until_done(|| store::sweep_positions(db, consumer, retention.positions, retention.batch))
            .await?;
    Ok(Swept { inbox, positions })
}

/// Sweeps `consumer`'s rows every `retention.interval` until `shutdown`.
pub async fn run(db: PgPool, consumer: String, retention: Retention, shutdown: CancellationToken) {
    let what = format!("consumer {consumer}'s inbox and positions");
    every(retention.interval, &what, shutdown, || async {
        sweep(&db, &consumer, &retention)
            .await
            .map(|swept| swept.inbox + swept.positions)
    })
    .await;
}

/// Runs `pass` every `interval` until `shutdown`: a sweeper's loop. A
/// failed pass is logged and tried again next time; the table only waits.
pub async fn every<F, Fut>(interval: Duration, what: &str, shutdown: CancellationToken, pass: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = sqlx::Result<u64>>,
{
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match until_done(&pass).await {
            Ok(deleted) => tracing::debug!(deleted, "{what} swept"),
            Err(e) => tracing::warn!(error = %e, "sweeping {what} failed; retrying later"),
        }
    }
}

/// Repeats a batched delete until a batch deletes nothing; the total.
async fn until_done<F, Fut>(batch: F) -> sqlx::Result<u64>
where
    F: Fn() -> Fut,
    Fut: Future<Output = sqlx::Result<u64>>,
{
    let mut total = 0;
    loop {
        match batch().await? {
            0 => return Ok(total),
            deleted => total += deleted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_outlives_every_stream_expiry_and_the_positions_outlive_the_inbox() {
        let retention = Retention::default();
        let dedup_window = Duration::from_mins(10);

        assert!(retention.inbox > longest_stream_expiry() + dedup_window);
        assert!(longest_stream_expiry() >= Duration::from_hours(7 * 24));
        assert!(retention.positions >= retention.inbox);
    }
}
