//! The consumer itself and its loop: pull messages, process each one in a
//! span that continues the producer's trace, and settle it with JetStream.
//!
//! [`Consumer::process`] is `decide` (the database half, `decision.rs`)
//! followed by [`Consumer::settle`] (the broker half, here): ack, nak with
//! a delay, or dead-letter and terminate. [`Consumer::run`] reconnects with
//! a capped backoff when the durable cannot be read, and hands each
//! subscription to the lanes (`lanes.rs`), which process several messages
//! at once in per-aggregate order.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Message;
use messaging::Topology;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{ConsumerMetrics, ConsumerSpec, Decision, Handler, Outcome};
use crate::dlq;

/// A durable consumer of one stream.
pub struct Consumer<H> {
    // Visible to the sibling modules: `decision.rs` reads the spec, the
    // pool, the topology and the handler; `metrics.rs` the spec and NATS.
    pub(super) spec: ConsumerSpec,
    pub(super) db: PgPool,
    pub(super) js: async_nats::jetstream::Context,
    pub(super) topology: Topology,
    pub(super) handler: H,
    pub(super) metrics: Arc<ConsumerMetrics>,
    /// Since when this instance has been waiting for each gap it met
    /// (`decision.rs`).
    pub(super) gaps: super::decision::Gaps,
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
            gaps: super::decision::Gaps::default(),
        }
    }

    /// What it consumes, under which durable name.
    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
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
                    // Only the one event it reads, if it names one
                    // (`ConsumerSpec::only`); the server skips the rest.
                    filter_subject: self
                        .spec
                        .only
                        .map(|subject| self.topology.subject(subject))
                        .unwrap_or_default(),
                    ..pull::Config::default()
                },
            )
            .await?;
        Ok(consumer)
    }

    /// Consumes until `shutdown`, in `spec.lanes` lanes (`lanes.rs`). The
    /// messages in hand are always finished (committed and acked) before
    /// returning.
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
            let messages = match messages {
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
            self.consume(messages, &shutdown).await;
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

    pub(super) async fn nak(&self, message: &Message, delay: Duration) {
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
