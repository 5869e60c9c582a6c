//! The consumer loop and the decision taken for each message.
//!
//! Processing is split in two so that each half can be tested on its own:
//! [`Consumer::decide`] does the database work (inbox, position, handler,
//! commit) and returns a [`Decision`]; [`Consumer::settle`] tells JetStream
//! (ack, nak with a delay, or dead-letter and terminate). A process that
//! dies between the two has committed without acking, the case the inbox
//! exists for.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Message;
use contracts::Envelope;
use futures::StreamExt as _;
use messaging::{StreamKind, Topology};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{dlq, store};

/// How a consumer reads its stream.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, also the inbox's `consumer` column, e.g. `inventory`.
    pub name: String,
    /// The stream it reads.
    pub stream: StreamKind,
    /// Time to process and ack one message before JetStream redelivers it;
    /// must exceed the handler's slowest run.
    pub ack_wait: Duration,
    /// Deliveries before a message that keeps failing is dead-lettered.
    /// Counted and enforced here, not by JetStream: the server-side limit
    /// is unlimited, because a server that stops redelivering on its own
    /// drops the message without a dead letter (say, when dead-lettering
    /// itself failed on the last attempt).
    pub max_deliver: i64,
    /// Nak delay after the first, second, … failed delivery (the last one
    /// repeats). JetStream's own `backoff` only applies to ack timeouts, not
    /// to naks, so the delay is chosen here.
    pub retry_delays: Vec<Duration>,
    /// Nak delay for an event that arrived before the previous version of
    /// its aggregate.
    pub gap_delay: Duration,
    /// How long an event may wait for the previous version of its
    /// aggregate before it is dead-lettered. Waiting does not count against
    /// `max_deliver`: the earlier version may be on its own retries.
    pub gap_timeout: Duration,
    /// Messages pulled at a time; keep `batch × slowest handler` well under
    /// `ack_wait`, or buffered messages expire before they are looked at.
    pub batch: usize,
}

impl ConsumerSpec {
    /// A spec with defaults: 30 s ack wait, 5 deliveries, retries after 1,
    /// 5 and 30 s, gaps retried every 500 ms for up to 10 minutes, 16
    /// messages pulled at a time.
    pub fn new(name: &str, stream: StreamKind) -> Self {
        Self {
            name: name.to_owned(),
            stream,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            gap_delay: Duration::from_millis(500),
            gap_timeout: Duration::from_mins(10),
            batch: 16,
        }
    }

    fn retry_delay(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.max(1) - 1).unwrap_or(0);
        self.retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// One event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The envelope, with `data` still as JSON: the handler decodes it for
    /// the `event_type` and `schema_version` it knows.
    pub envelope: Envelope<serde_json::Value>,
    /// The subject without the deployment prefix.
    pub subject: String,
    /// Position in the stream.
    pub stream_sequence: u64,
    /// 1 on the first delivery.
    pub delivered: i64,
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: the database is unreachable, a deadlock, a timeout.
    #[error("transient failure: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Will never succeed as it is: unknown schema version, invalid data.
    /// Dead-lettered at once.
    #[error("poison message: {0}")]
    Poison(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(e.into())
    }
}

/// Applies events; implemented by each consuming service.
pub trait Handler: Send + Sync + 'static {
    /// Applies `delivery` using `tx`, the transaction that also records the
    /// inbox row and the new position and commits after this returns `Ok`.
    /// Events a handler does not care about return `Ok(())` untouched:
    /// their version must still advance the position.
    fn handle(
        &self,
        tx: &mut PgConnection,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Runs after the transaction of an applied `delivery` committed, for
    /// side effects that must never describe an uncommitted change, such as
    /// invalidating a cache. Best effort: it runs at most once per applied
    /// delivery and a crash can skip it, so whatever it does must also be
    /// bounded by something else (inventory's cache keys expire).
    fn after_commit(&self, delivery: &Delivery) -> impl Future<Output = ()> + Send {
        let _ = delivery;
        std::future::ready(())
    }
}

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
    fn count(&self, outcome: Outcome) {
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

/// Whether `error` means "Postgres cannot answer right now" rather than
/// "this message failed": pool timeouts, I/O errors, lost or refused
/// connections (SQLSTATE class 08), server shutdown (57P01-57P03).
fn database_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .is_some_and(pgkit::is_unavailable)
}

/// Where a new event stands relative to its aggregate's position.
enum Step {
    Done(Outcome),
    Gap { expected: i64 },
}

/// A durable consumer of one stream.
pub struct Consumer<H> {
    spec: ConsumerSpec,
    db: PgPool,
    js: async_nats::jetstream::Context,
    topology: Topology,
    handler: H,
    metrics: Arc<ConsumerMetrics>,
}

impl<H: Handler> Consumer<H> {
    /// A consumer applying `handler` to `spec.stream` under `topology`.
    pub fn new(
        spec: ConsumerSpec,
        db: PgPool,
        js: async_nats::jetstream::Context,
        topology: Topology,
        handler: H,
    ) -> Self {
        Self {
            spec,
            db,
            js,
            topology,
            handler,
            metrics: Arc::default(),
        }
    }

    /// Its counters.
    pub fn metrics(&self) -> Arc<ConsumerMetrics> {
        self.metrics.clone()
    }

    /// The durable consumer, created if missing.
    pub async fn ensure(&self) -> Result<PullConsumer, async_nats::Error> {
        let durable = self.topology.durable(&self.spec.name);
        let stream = self
            .js
            .get_stream(self.topology.stream(self.spec.stream))
            .await?;
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: self.spec.ack_wait,
                    // Unlimited: the runtime decides when to give up (see
                    // `ConsumerSpec::max_deliver`).
                    max_deliver: -1,
                    // Bounds the work in hand, and so the redeliveries after a crash.
                    max_ack_pending: 256,
                    ..pull::Config::default()
                },
            )
            .await?;
        Ok(consumer)
    }

    /// Consumes until `shutdown`. The message in hand is always finished
    /// (committed and acked) before returning.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut pause = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let messages = match self.ensure().await {
                Ok(consumer) => consumer
                    .stream()
                    .max_messages_per_batch(self.spec.batch)
                    .messages()
                    .await
                    .map_err(async_nats::Error::from),
                Err(e) => Err(e),
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(consumer = %self.spec.name, error = %e, "cannot consume yet");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            pause = Duration::from_millis(100);
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        if self.process(&message).await == Outcome::Deferred {
                            // Pulling more now would only spend their ack_wait
                            // on a database that cannot answer.
                            tokio::select! {
                                () = tokio::time::sleep(self.spec.retry_delay(1)) => {}
                                () = shutdown.cancelled() => return,
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(consumer = %self.spec.name, error = %e, "message stream failed; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Decides and settles one message.
    pub async fn process(&self, message: &Message) -> Outcome {
        let span = self.span(message);
        async {
            let decision = self.decide(message).await;
            let outcome = self.settle(message, decision).await;
            tracing::Span::current().record("outcome", tracing::field::debug(outcome));
            outcome
        }
        .instrument(span)
        .await
    }

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
        match self.apply(&delivery).await {
            Ok(Step::Done(outcome)) => Decision::Ack(outcome),
            Ok(Step::Gap { expected }) => {
                let reason = format!(
                    "version {} arrived before version {expected} of {} {}",
                    delivery.envelope.aggregate_version,
                    delivery.envelope.aggregate_type,
                    delivery.envelope.aggregate_id
                );
                let age = message.info().ok().map_or(Duration::ZERO, |i| {
                    let published = i.published.unix_timestamp();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                    Duration::from_secs(u64::try_from(now - published).unwrap_or(0))
                });
                if age > self.spec.gap_timeout {
                    Decision::DeadLetter {
                        error: format!("waited {age:?} for the gap to fill: {reason}"),
                    }
                } else {
                    Decision::Nak {
                        delay: self.spec.gap_delay,
                        reason,
                    }
                }
            }
            Err(HandlerError::Poison(reason)) => Decision::DeadLetter { error: reason },
            Err(HandlerError::Transient(e)) if database_unavailable(&*e) => Decision::Defer {
                delay: self.spec.retry_delay(delivered),
                reason: e.to_string(),
            },
            Err(HandlerError::Transient(e)) => {
                self.retry_or_give_up(delivered, self.spec.retry_delay(delivered), e.to_string())
            }
        }
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
        let mut tx = self.db.begin().await?;
        if !store::record_in_inbox(&mut tx, name, envelope.event_id.0).await? {
            return Ok(Step::Done(Outcome::Duplicate));
        }
        let applied = store::position(
            &mut tx,
            name,
            &envelope.aggregate_type,
            envelope.aggregate_id,
        )
        .await?;
        let version = envelope.aggregate_version;
        if version <= applied {
            return Ok(Step::Done(Outcome::Stale));
        }
        if version > applied + 1 {
            return Ok(Step::Gap {
                expected: applied + 1,
            });
        }
        self.handler.handle(&mut tx, delivery).await?;
        store::advance(
            &mut tx,
            name,
            &envelope.aggregate_type,
            envelope.aggregate_id,
            version,
        )
        .await?;
        tx.commit().await?;
        self.handler.after_commit(delivery).await;
        Ok(Step::Done(Outcome::Applied))
    }

    /// The broker half: ack, nak or dead-letter.
    pub async fn settle(&self, message: &Message, decision: Decision) -> Outcome {
        let outcome = match decision {
            Decision::Ack(outcome) => {
                // A lost ack means a redelivery, which the inbox absorbs.
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(error = %e, "ack not confirmed; the message may be redelivered");
                }
                outcome
            }
            Decision::Nak { delay, reason } => {
                tracing::info!(reason, ?delay, "delivery postponed");
                self.nak(message, delay).await;
                Outcome::Retried
            }
            Decision::Defer { delay, reason } => {
                tracing::warn!(reason, ?delay, "database unavailable; delivery postponed");
                self.nak(message, delay).await;
                Outcome::Deferred
            }
            Decision::DeadLetter { error } => {
                let delivered = message.info().map_or(1, |i| i.delivered);
                match dlq::dead_letter(
                    &self.js,
                    &self.topology,
                    &self.spec,
                    message,
                    &error,
                    delivered,
                )
                .await
                {
                    Ok(()) => {
                        tracing::error!(error, "message dead-lettered");
                        if let Err(e) = message.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %e, "terminate not sent; the message may come back");
                        }
                        Outcome::DeadLettered
                    }
                    Err(e) => {
                        // Never drop a message we could not park: try again later.
                        tracing::warn!(error = %e, "cannot dead-letter; retrying later");
                        self.nak(message, self.spec.retry_delay(delivered)).await;
                        Outcome::Retried
                    }
                }
            }
        };
        self.metrics.count(outcome);
        outcome
    }

    async fn nak(&self, message: &Message, delay: Duration) {
        if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(error = %e, "nak not sent; redelivery after ack_wait instead");
        }
    }

    /// A consumer span, continuing the trace carried in the headers.
    fn span(&self, message: &Message) -> tracing::Span {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("{} process", message.subject),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %message.subject,
            messaging.consumer.group.name = %self.spec.name,
            event_id = %header(messaging::headers::MSG_ID),
            event_type = %header(messaging::headers::EVENT_TYPE),
            outcome = tracing::field::Empty,
        );
        let parent = messaging::headers::trace_of(message.headers.as_ref());
        telemetry::propagation::set_parent(&span, &parent);
        span
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

/// Prometheus text for consumers: each one's counts, and its lag when
/// known, one metric family at a time (as the format requires).
pub fn render_metrics(consumers: &[(&str, Counts, Option<Lag>)]) -> String {
    use std::fmt::Write as _;
    type Pick = fn(&Counts, Option<&Lag>) -> Option<u64>;
    let families: [(&str, &str, &str, Pick); 8] = [
        (
            "consumer_applied_total",
            "counter",
            "Events whose effect committed.",
            |c, _| Some(c.applied),
        ),
        (
            "consumer_duplicates_total",
            "counter",
            "Events skipped because the inbox had them.",
            |c, _| Some(c.duplicates),
        ),
        (
            "consumer_stale_total",
            "counter",
            "Events skipped because their aggregate was past them.",
            |c, _| Some(c.stale),
        ),
        (
            "consumer_retried_total",
            "counter",
            "Deliveries postponed (failures, gaps, database down).",
            |c, _| Some(c.retried),
        ),
        (
            "consumer_dead_lettered_total",
            "counter",
            "Messages sent to the dead letters.",
            |c, _| Some(c.dead_lettered),
        ),
        (
            "consumer_pending",
            "gauge",
            "Messages not yet delivered.",
            |_, l| l.map(|l| l.pending),
        ),
        (
            "consumer_ack_pending",
            "gauge",
            "Messages delivered and not yet acked.",
            |_, l| l.map(|l| l.ack_pending),
        ),
        (
            "consumer_redelivered",
            "gauge",
            "Messages delivered more than once.",
            |_, l| l.map(|l| l.redelivered),
        ),
    ];
    let mut out = String::new();
    for (metric, kind, help, pick) in families {
        let samples: Vec<(&str, u64)> = consumers
            .iter()
            .filter_map(|(name, counts, lag)| pick(counts, lag.as_ref()).map(|v| (*name, v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for (name, value) in samples {
            let _ = writeln!(out, "{metric}{{consumer=\"{name}\"}} {value}");
        }
    }
    out
}
