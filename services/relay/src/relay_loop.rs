//! The relay loop: provision streams, run passes, wait for work, back off.
//!
//! - After a full batch the next pass starts at once: there is more work.
//! - After a partial batch the loop waits for a `NOTIFY outbox` (when
//!   listening) or the poll interval, whichever comes first, and then
//!   spends every notification already received: one pass serves a burst.
//!   Notifications are an optimisation only: they are lost while the
//!   listener is disconnected, and polling catches up.
//! - When NATS or Postgres fails, the loop sleeps a capped exponential
//!   backoff with full jitter (so many relays do not retry in lockstep),
//!   marks itself not ready, and tries again. Rows are never lost or
//!   reordered by this: they simply stay unpublished.
//! - Shutdown is checked between passes only, so a pass in flight always
//!   finishes (publishes awaited, rows marked) before the loop returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt as _;
use messaging::Topology;
use rand::Rng as _;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::config::Wakeup;
use crate::publisher::Publisher;

/// What `/readyz` reports besides the live checks.
#[derive(Debug)]
pub struct LoopHealth {
    provisioned: AtomicBool,
    nats_ok: AtomicBool,
    postgres_ok: AtomicBool,
}

impl Default for LoopHealth {
    /// Not provisioned yet; no evidence against NATS or Postgres yet.
    fn default() -> Self {
        Self {
            provisioned: AtomicBool::new(false),
            nats_ok: AtomicBool::new(true),
            postgres_ok: AtomicBool::new(true),
        }
    }
}

impl LoopHealth {
    /// Streams exist and the last pass reached NATS and Postgres.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.provisioned.load(Ordering::Relaxed) {
            problems.push(("streams", "not provisioned yet".to_owned()));
        }
        if !self.nats_ok.load(Ordering::Relaxed) {
            problems.push(("publishing", "the last publish to NATS failed".to_owned()));
        }
        if !self.postgres_ok.load(Ordering::Relaxed) {
            problems.push(("claiming", "the last pass failed in Postgres".to_owned()));
        }
        problems
    }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            current: base,
        }
    }

    /// The next pause: uniform in `[0, current]`, then `current` doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

/// The relay loop of one instance.
pub struct RelayLoop {
    /// Publishes passes.
    pub publisher: Publisher,
    /// JetStream, for provisioning.
    pub js: async_nats::jetstream::Context,
    /// Names of the streams to provision.
    pub topology: Topology,
    /// Duplicate window of the streams.
    pub dedup_window: Duration,
    /// How the loop wakes up.
    pub wakeup: Wakeup,
    /// Idle pause.
    pub poll_interval: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Shared with `/readyz`.
    pub health: Arc<LoopHealth>,
}

impl RelayLoop {
    /// Runs until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.backoff_max);
        let mut listener = None;
        let mut provisioned = false;
        while !shutdown.is_cancelled() {
            if !provisioned {
                match messaging::provision(&self.js, &self.topology, self.dedup_window).await {
                    Ok(()) => {
                        self.health.nats_ok.store(true, Ordering::Relaxed);
                        provisioned = true;
                        self.health.provisioned.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot provision streams yet");
                        self.health.nats_ok.store(false, Ordering::Relaxed);
                        pause(backoff.next_delay(), &shutdown).await;
                        continue;
                    }
                }
            }
            if self.wakeup == Wakeup::Listen && listener.is_none() {
                listener = self.listen().await;
            }

            match self.publisher.run_pass().await {
                Ok(pass) => {
                    self.health.postgres_ok.store(true, Ordering::Relaxed);
                    if let Some(error) = &pass.transient_error {
                        tracing::warn!(error, "publishing failed; backing off");
                        self.health.nats_ok.store(false, Ordering::Relaxed);
                        if pass.stream_missing {
                            provisioned = false;
                        }
                        pause(backoff.next_delay(), &shutdown).await;
                        continue;
                    }
                    // A pass that published proves NATS works; an empty one
                    // proves only that the client is connected (a failing
                    // backlog would not leave the pass empty).
                    if pass.published > 0 || pass.claimed == 0 {
                        self.health.nats_ok.store(true, Ordering::Relaxed);
                    }
                    if pass.claimed > 0 {
                        tracing::debug!(?pass, "pass");
                    }
                    backoff.reset();
                    if i64::try_from(pass.claimed).unwrap_or(i64::MAX) < self.publisher.batch_size()
                    {
                        self.wait_for_work(&mut listener, &shutdown).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "postgres failed during a pass; backing off");
                    self.health.postgres_ok.store(false, Ordering::Relaxed);
                    pause(backoff.next_delay(), &shutdown).await;
                }
            }
        }
        tracing::info!("relay loop stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect_with(self.publisher.db()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; polling only for now");
                return None;
            }
        };
        match listener.listen(outbox::NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; polling only for now");
                None
            }
        }
    }

    async fn wait_for_work(&self, listener: &mut Option<PgListener>, shutdown: &CancellationToken) {
        let Some(l) = listener else {
            pause(self.poll_interval, shutdown).await;
            return;
        };
        tokio::select! {
            received = l.recv() => {
                // A burst of commits sends a burst of notifications, which
                // queue in the socket while a pass runs. One pass claims
                // every row they announce, so the ones already here are
                // spent now: a pass for each would find nothing
                // (`relay_empty_passes_total`).
                let mut received = received.map(drop);
                while received.is_ok() {
                    match l.recv().now_or_never() {
                        Some(next) => received = next.map(drop),
                        None => break,
                    }
                }
                if let Err(e) = received {
                    // The listener reconnects on its next use; notifications
                    // sent meanwhile are lost, and polling covers for them.
                    tracing::warn!(error = %e, "LISTEN connection lost");
                    *listener = None;
                }
            }
            () = tokio::time::sleep(self.poll_interval) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

async fn pause(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Deletes published rows older than `retention`, every minute, in
/// batches of 1,000, until `shutdown`.
pub async fn run_retention(db: sqlx::PgPool, retention: Duration, shutdown: CancellationToken) {
    const BATCH: i64 = 1_000;
    loop {
        pause(Duration::from_mins(1), &shutdown).await;
        if shutdown.is_cancelled() {
            return;
        }
        loop {
            match crate::store::delete_published(&db, retention, BATCH).await {
                Ok(n) if n == BATCH.unsigned_abs() => {}
                Ok(n) => {
                    tracing::debug!(deleted = n, "published outbox rows removed");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox retention failed; retrying later");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(1)),
            "{delays:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
