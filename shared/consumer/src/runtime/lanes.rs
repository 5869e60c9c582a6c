//! Parallel lanes with per-aggregate order: how one consumer processes
//! several messages at once and still never applies two events of one
//! aggregate out of order.
//!
//! The feed pulls messages from the durable and routes each to a lane by
//! its aggregate (a hash of its type and id). An aggregate always lands in
//! the same lane, and a lane processes its messages one at a time in the
//! order they came, so two events of one aggregate are never in flight
//! together in this instance, and a redelivery comes back through the same
//! lane. Events of other aggregates go on meanwhile in the other lanes,
//! each in its own transaction on its own pooled connection. Between
//! instances of the service, the position row lock gives the same
//! guarantee (`crate::store::position`).
//!
//! - **Connections:** at most half the pool's connections are lanes. The
//!   services give their consumers a pool of their own
//!   (`service::Builder::postgres_for_consumers`), which the group's other
//!   consumers and its sweeper share; on a pool shared with requests, the
//!   requests keep the other half.
//! - **Backpressure:** a lane queues at most [`LANE_DEPTH`] messages; a
//!   full lane holds the feed back, so a slow aggregate slows the pull
//!   rather than buffering messages past their `ack_wait`.
//! - **Deferral:** when the database cannot answer, every lane waits for
//!   the retry delay, as the one loop did before there were lanes.
//! - **Shutdown:** the feed stops pulling; each lane finishes the message
//!   it is processing (committed and acked) and naks, at once, those it
//!   had not begun, so they go to the next instance without waiting out
//!   their `ack_wait`.
//!
//! The lanes are futures polled by the consumer's one task, not tasks of
//! their own: what they wait on is Postgres and NATS, and the work between
//! those waits is small, so one task interleaves them well and needs no
//! `'static` handle on the consumer.

use std::borrow::Cow;
use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::Message;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Consumer, Handler, Outcome};

/// Messages a lane holds beyond the one it is processing: enough to keep
/// it busy while the feed pulls more, few enough that a lane stuck on a
/// slow message holds little back.
const LANE_DEPTH: usize = 4;

impl<H: Handler> Consumer<H> {
    /// Feeds one subscription's messages to the lanes until it fails, ends
    /// or `shutdown`; returns once every lane has finished what it held.
    pub(super) async fn consume(&self, mut messages: pull::Stream, shutdown: &CancellationToken) {
        let count = lanes_for(self.spec.lanes, self.db.options().get_max_connections());
        let (lanes, queues): (Vec<_>, Vec<_>) =
            (0..count).map(|_| mpsc::channel(LANE_DEPTH)).unzip();
        let resume_at = Mutex::new(Instant::now());
        let name = &self.spec.name;
        let feed = async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        let lane: &mpsc::Sender<Message> = &lanes[lane_of(&message.payload, count)];
                        // Waits for room: a full lane holds the feed back.
                        // The lanes outlive the feed, so this cannot fail.
                        if lane.send(message).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(consumer = %name, error = %e, "message stream failed; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
            // Dropping the senders lets each lane finish its queue and end.
        };
        let work = futures::future::join_all(
            queues
                .into_iter()
                .map(|queue| self.lane(queue, &resume_at, shutdown)),
        );
        futures::future::join(feed, work).await;
    }

    /// One lane: its messages one at a time, in the order they came.
    async fn lane(
        &self,
        mut queue: mpsc::Receiver<Message>,
        resume_at: &Mutex<Instant>,
        shutdown: &CancellationToken,
    ) {
        while let Some(message) = queue.recv().await {
            let resume = *resume_at.lock().unwrap_or_else(PoisonError::into_inner);
            let go = tokio::select! {
                () = tokio::time::sleep_until(resume) => !shutdown.is_cancelled(),
                () = shutdown.cancelled() => false,
            };
            if !go {
                // Not begun: back to the stream now, for the next instance.
                self.nak(&message, Duration::ZERO).await;
                continue;
            }
            if self.process(&message).await == Outcome::Deferred {
                // The database cannot answer: pulling on in the other lanes
                // would only spend their messages' ack_wait on it.
                let until = Instant::now() + self.spec.retry_delay(1);
                *resume_at.lock().unwrap_or_else(PoisonError::into_inner) = until;
            }
        }
    }
}

/// The lanes to run: as many as the spec asks, but at most half the
/// pool's connections (and at least one), so that the consumer never
/// takes every connection that the others on its pool need.
fn lanes_for(asked: usize, pool: u32) -> usize {
    let half = usize::try_from(pool / 2).unwrap_or(usize::MAX);
    asked.min(half).max(1)
}

/// The lane of a message among `lanes`: by its aggregate, so that one
/// aggregate's events share a lane. A payload that is not an envelope goes
/// to lane 0, where `decide` dead-letters it.
fn lane_of(payload: &[u8], lanes: usize) -> usize {
    /// The two fields that name the aggregate; serde skips the rest.
    #[derive(serde::Deserialize)]
    struct Aggregate<'a> {
        #[serde(borrow)]
        aggregate_type: Cow<'a, str>,
        aggregate_id: Uuid,
    }
    let Ok(key) = serde_json::from_slice::<Aggregate<'_>>(payload) else {
        return 0;
    };
    // A fixed hasher (no random seed): the lane must be the same for every
    // event of the aggregate, and a test can tell which lane is which.
    let hash = BuildHasherDefault::<DefaultHasher>::default()
        .hash_one((key.aggregate_type.as_ref(), key.aggregate_id));
    let lanes = u64::try_from(lanes).unwrap_or(1);
    usize::try_from(hash % lanes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, id: Uuid, version: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "event_id": Uuid::new_v4(),
            "aggregate_type": kind,
            "aggregate_id": id,
            "aggregate_version": version,
            "data": {"note": "a \"quoted\" string"},
        }))
        .unwrap()
    }

    #[test]
    fn every_event_of_an_aggregate_goes_to_one_lane() {
        let id = Uuid::new_v4();
        let lanes: Vec<usize> = (1..=20)
            .map(|v| lane_of(&envelope("order", id, v), 8))
            .collect();
        assert!(lanes.iter().all(|&lane| lane == lanes[0]), "{lanes:?}");
    }

    #[test]
    fn aggregates_spread_over_all_lanes() {
        let mut used = [0_u32; 4];
        for _ in 0..400 {
            used[lane_of(&envelope("order", Uuid::new_v4(), 1), 4)] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }

    #[test]
    fn lanes_take_at_most_half_the_pool() {
        assert_eq!(lanes_for(4, 10), 4);
        assert_eq!(lanes_for(4, 4), 2);
        assert_eq!(lanes_for(4, 1), 1);
        assert_eq!(lanes_for(0, 10), 1);
    }

    #[test]
    fn a_payload_that_is_not_an_envelope_goes_to_lane_zero() {
        assert_eq!(lane_of(b"not json", 4), 0);
        assert_eq!(lane_of(br#"{"aggregate_id": "nope"}"#, 4), 0);
        assert_eq!(lane_of(&envelope("order", Uuid::new_v4(), 1), 1), 0);
    }
}
