//! The database half of processing a message: what to do with it.
//!
//! [`Consumer::decide`] decodes the envelope, runs the handler's work that
//! must not hold a transaction, then checks the inbox and the aggregate's
//! position (none for a consumer of one event, `ConsumerSpec::only`), runs
//! the handler and commits, all in one transaction, and returns a
//! [`Decision`]: ack (applied, duplicate, stale), nak (a gap, or a transient failure with the backoff below),
//! defer (the database is down) or dead-letter (poison, undecodable, out
//! of deliveries, or a gap that never filled). It talks to Postgres only;
//! telling JetStream is `delivery_loop.rs`'s job, so that a test can take
//! this half alone and stop before the ack, as a crash would.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::Message;
use contracts::Envelope;
use rand::Rng as _;
use uuid::Uuid;

use super::{Consumer, ConsumerSpec, Delivery, Handler, HandlerError};
use crate::store;

/// What to tell JetStream about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Done with it (applied, or nothing to do).
    Ack(Outcome),
    /// Not now: deliver again after `delay`.
    Nak {
        /// How long JetStream waits before redelivering.
        delay: Duration,
        /// Why, for the log.
        reason: String,
    },
    /// The database is unreachable: deliver again after `delay`, and pause.
    Defer {
        /// How long JetStream waits before redelivering.
        delay: Duration,
        /// What failed.
        reason: String,
    },
    /// Never: copy to the dead letters and terminate.
    DeadLetter {
        /// The error stored with the dead letter.
        error: String,
    },
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect committed.
    Applied,
    /// Already in the inbox: applied before.
    Duplicate,
    /// Its aggregate is already at this version or later.
    Stale,
    /// To be delivered again.
    Retried,
    /// To be delivered again because the database is unreachable: not the
    /// message's fault, so it never counts towards a dead letter, and the
    /// consumer pauses before pulling more.
    Deferred,
    /// Copied to the dead letters and terminated.
    DeadLettered,
}

/// The share of a retry delay drawn at random (±): messages that failed
/// together (a database blip fails a whole batch) come back spread out
/// rather than as one burst that fails again together.
const RETRY_JITTER: f64 = 0.2;

impl ConsumerSpec {
    /// The backoff: the nak delay after the `delivered`-th failed delivery,
    /// the last configured delay repeating (1 s if none is configured),
    /// ± [`RETRY_JITTER`] of it at random.
    pub(super) fn retry_delay(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.max(1) - 1).unwrap_or(0);
        let delay = self
            .retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1));
        let factor = rand::rng().random_range((1.0 - RETRY_JITTER)..=(1.0 + RETRY_JITTER));
        delay.mul_f64(factor)
    }
}

/// Whether `error` means "Postgres cannot answer right now" rather than
/// "this message failed": pool timeouts, I/O errors, lost or refused
/// connections (SQLSTATE class 08), server shutdown (57P01-57P03).
fn database_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .is_some_and(pgkit::is_unavailable)
}

/// The gaps a consumer instance is waiting on: per aggregate, the version
/// it waits for and since when.
///
/// A gap's age is counted from the moment this instance first met it, not
/// from when the later event was published: after an outage the backlog is
/// old, and one transient failure while draining it must not make the next
/// version look as if it had waited all that time. The clock restarts when
/// the awaited version changes, and the entry goes when the aggregate moves
/// on or the wait ends in a dead letter. Kept in memory: a restart resets
/// the clocks, which only ever means waiting longer.
#[derive(Debug, Default)]
pub(super) struct Gaps(Mutex<HashMap<(String, Uuid), (i64, Instant)>>);

impl Gaps {
    /// How long this instance has waited for `expected` of the aggregate.
    fn waited(&self, aggregate: (String, Uuid), expected: i64) -> Duration {
        let mut gaps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let since = gaps.entry(aggregate).or_insert((expected, Instant::now()));
        if since.0 != expected {
            *since = (expected, Instant::now());
        }
        since.1.elapsed()
    }

    /// The aggregate is no longer waiting.
    fn clear(&self, aggregate: &(String, Uuid)) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(aggregate);
    }
}

/// Where a new event stands relative to its aggregate's position.
enum Step {
    Done(Outcome),
    Gap { expected: i64 },
}

impl<H: Handler> Consumer<H> {
    /// The database half: inbox, ordering, handler, commit.
    pub async fn decide(&self, message: &Message) -> Decision {
        let delivered = message.info().map_or(1, |i| i.delivered);
        let stream_sequence = message.info().map_or(0, |i| i.stream_sequence);
        let envelope: Envelope<serde_json::Value> = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                return Decision::DeadLetter {
                    error: format!("undecodable payload: {e}"),
                };
            }
        };
        let delivery = Delivery {
            subject: self.topology.base_subject(&message.subject).to_owned(),
            envelope,
            stream_sequence,
            delivered,
        };
        let aggregate = (
            delivery.envelope.aggregate_type.clone(),
            delivery.envelope.aggregate_id,
        );
        match self.apply(&delivery).await {
            Ok(Step::Done(outcome)) => {
                if outcome == Outcome::Applied {
                    self.gaps.clear(&aggregate);
                }
                Decision::Ack(outcome)
            }
            Ok(Step::Gap { expected }) => {
                // With no position at all, the aggregate may be one whose
                // position was swept (`crate::sweeper`): say so.
                let swept = if expected == 1 {
                    " (no position: its earlier versions never came, or its position was swept)"
                } else {
                    ""
                };
                let reason = format!(
                    "version {} arrived before version {expected} of {} {}{swept}",
                    delivery.envelope.aggregate_version,
                    delivery.envelope.aggregate_type,
                    delivery.envelope.aggregate_id
                );
                let waited = self.gaps.waited(aggregate.clone(), expected);
                if waited > self.spec.gap_timeout {
                    self.gaps.clear(&aggregate);
                    Decision::DeadLetter {
                        error: format!("waited {waited:?} for the gap to fill: {reason}"),
                    }
                } else {
                    Decision::Nak {
                        delay: self.spec.gap_delay,
                        reason,
                    }
                }
            }
            Err(HandlerError::Poison(reason)) => Decision::DeadLetter { error: reason },
            Err(HandlerError::Busy { reason, retry_in }) => Decision::Nak {
                delay: retry_in,
                reason,
            },
            Err(HandlerError::Transient(e)) if database_unavailable(&*e) => Decision::Defer {
                delay: self.spec.retry_delay(delivered),
                reason: e.to_string(),
            },
            Err(HandlerError::Transient(e)) => {
                self.retry_or_give_up(delivered, self.spec.retry_delay(delivered), e.to_string())
            }
        }
    }

    /// The database its inbox and positions are in, for the sweeper
    /// `crate::Group` starts.
    pub(crate) fn database(&self) -> &sqlx::PgPool {
        &self.db
    }

    fn retry_or_give_up(&self, delivered: i64, delay: Duration, reason: String) -> Decision {
        if delivered >= self.spec.max_deliver {
            Decision::DeadLetter {
                error: format!("gave up after {delivered} deliveries: {reason}"),
            }
        } else {
            Decision::Nak { delay, reason }
        }
    }

    async fn apply(&self, delivery: &Delivery) -> Result<Step, HandlerError> {
        let envelope = &delivery.envelope;
        let name = &self.spec.name;
        self.handler.before_transaction(&self.db, delivery).await?;
        let mut tx = self.db.begin().await?;
        if !store::record_in_inbox(&mut tx, name, envelope.event_id.0).await? {
            return Ok(Step::Done(Outcome::Duplicate));
        }
        // A consumer of one event per aggregate keeps no position
        // (`ConsumerSpec::only`): the inbox alone makes it idempotent.
        let ordered = self.spec.only.is_none();
        let version = envelope.aggregate_version;
        if ordered {
            let applied = store::position(
                &mut tx,
                name,
                &envelope.aggregate_type,
                envelope.aggregate_id,
            )
            .await?;
            if version <= applied {
                return Ok(Step::Done(Outcome::Stale));
            }
            if version > applied + 1 {
                return Ok(Step::Gap {
                    expected: applied + 1,
                });
            }
        }
        self.handler.handle(&mut tx, delivery).await?;
        if ordered {
            store::advance(
                &mut tx,
                name,
                &envelope.aggregate_type,
                envelope.aggregate_id,
                version,
            )
            .await?;
        }
        tx.commit().await?;
        self.handler.after_commit(delivery).await;
        Ok(Step::Done(Outcome::Applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_the_backoff_spread_by_jitter() {
        let spec = ConsumerSpec {
            retry_delays: vec![Duration::from_secs(1), Duration::from_secs(4)],
            ..ConsumerSpec::new("test", messaging::StreamKind::OrderEvents)
        };
        let draws = |delivered| -> Vec<Duration> {
            (0..200).map(|_| spec.retry_delay(delivered)).collect()
        };
        let (first, later) = (draws(1), draws(7));

        let within = |d: &Duration, base: f64| (base * 0.8..=base * 1.2).contains(&d.as_secs_f64());
        assert!(first.iter().all(|d| within(d, 1.0)), "{first:?}");
        assert!(
            later.iter().all(|d| within(d, 4.0)),
            "the last delay repeats"
        );
        let (min, max) = (first.iter().min().unwrap(), first.iter().max().unwrap());
        assert!(
            max.saturating_sub(*min) > Duration::from_millis(100),
            "spread: {min:?}..{max:?}"
        );
    }
}
