//! What a consumer tells an operator: its counters ([`ConsumerMetrics`],
//! copied out as [`Counts`]), its backlog as JetStream reports it ([`Lag`],
//! [`lag`]).
//!
//! Kept apart from the loop because others read them on their own:
//! `crate::group` reads the counters and asks [`lag`] at each scrape of
//! `/metrics`, summing the instances of one durable; `ticketctl consumers
//! lag` asks [`lag`] directly.

use std::sync::atomic::{AtomicU64, Ordering};

use messaging::{StreamKind, Topology};

use super::{Consumer, Handler, Outcome};

/// Counters of one consumer.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    applied: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

/// A copy of [`ConsumerMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Effects committed.
    pub applied: u64,
    /// Skipped because the inbox had them.
    pub duplicates: u64,
    /// Skipped because their aggregate was already past them.
    pub stale: u64,
    /// Nak'ed for a later delivery (including while the database was down).
    pub retried: u64,
    /// Sent to the dead letters.
    pub dead_lettered: u64,
}

impl ConsumerMetrics {
    /// Counts one settled message; only the loop's `settle` calls this,
    /// once per message, so the counters add up to the messages handled.
    pub(super) fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Applied => &self.applied,
            Outcome::Duplicate => &self.duplicates,
            Outcome::Stale => &self.stale,
            Outcome::Retried | Outcome::Deferred => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> Counts {
        Counts {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// A durable consumer's backlog, as JetStream reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Messages not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acked.
    pub ack_pending: u64,
    /// Delivered more than once.
    pub redelivered: u64,
}

impl<H: Handler> Consumer<H> {
    /// The consumer's lag, from the server.
    pub async fn lag(&self) -> Result<Lag, async_nats::Error> {
        lag(&self.js, &self.topology, self.spec.stream, &self.spec.name).await
    }
}

/// The lag of durable `name` on `stream`.
pub async fn lag(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    stream: StreamKind,
    name: &str,
) -> Result<Lag, async_nats::Error> {
    let stream = js.get_stream(topology.stream(stream)).await?;
    let info = stream.consumer_info(topology.durable(name)).await?;
    Ok(Lag {
        pending: info.num_pending,
        ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
        redelivered: u64::try_from(info.num_redelivered).unwrap_or(u64::MAX),
    })
}
