//! One relay pass: claim rows, publish them, await the PubAcks, finish
//! them (delete, or mark for the retention sweeper).
//!
//! The pass is one database transaction. The claimed rows stay locked
//! while they are published, so no other relay instance can publish them
//! (or a later version of the same aggregate) at the same time. All
//! publishes of a pass are sent before any PubAck is awaited: the rows of a
//! pass belong to different aggregates, so their relative order does not
//! matter, and overlapping the round trips is what makes the relay fast.
//!
//! Failures are sorted into two kinds:
//! - *transient*: NATS unreachable or slow, stream missing. Not the row's
//!   fault: the row is left as it was and the relay loop backs off;
//! - *the row's own*: e.g. larger than the server's max payload. Counted on
//!   the row; at `max_attempts` it is parked.

use std::future::IntoFuture as _;
use std::sync::Arc;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use messaging::{Topology, headers};
use sqlx::PgPool;
use telemetry::propagation::TraceContext;
use tracing::{Instrument as _, Span};

use crate::metrics::Metrics;
use crate::store::{self, AfterPublish, OutboxRow};

/// Publishes outbox rows of one source database.
#[derive(Clone)]
pub struct Publisher {
    db: PgPool,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    settings: PublisherSettings,
    metrics: Arc<Metrics>,
}

/// How a [`Publisher`] behaves (from [`crate::Config`]).
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// Stream and subject names.
    pub topology: Topology,
    /// Rows claimed per pass.
    pub batch_size: i64,
    /// Failures of a row's own before it is parked.
    pub max_attempts: i32,
    /// Delete or mark a row once acked.
    pub after_publish: AfterPublish,
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows published and finished (deleted or marked).
    pub published: usize,
    /// Of those, how many JetStream had already (duplicates).
    pub duplicates: usize,
    /// Rows whose own failure was recorded.
    pub failed: usize,
    /// Rows parked in this pass.
    pub parked: usize,
    /// Failed sends and acks, whatever the cause.
    pub errors: usize,
    /// Set when NATS itself failed; the relay loop backs off.
    pub transient_error: Option<String>,
    /// Set when a stream was missing; the relay loop provisions again.
    pub stream_missing: bool,
}

impl Publisher {
    /// A publisher for the outbox in `db`.
    pub fn new(
        db: PgPool,
        nats: async_nats::Client,
        js: async_nats::jetstream::Context,
        settings: PublisherSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            nats,
            js,
            settings,
            metrics,
        }
    }

    /// Rows claimed per pass.
    pub fn batch_size(&self) -> i64 {
        self.settings.batch_size
    }

    /// The source database.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Runs one pass; see the module docs. A database error aborts the pass
    /// (nothing is finished, the rows will be published again, and
    /// JetStream drops the duplicates).
    ///
    /// A pass takes at most about `2 × RELAY_PUBLISH_TIMEOUT` beyond its
    /// database work, whatever NATS does: it does not start while the
    /// client is disconnected, it stops sending at the first failed send,
    /// and all acks are awaited together, each bounded by the timeout.
    pub async fn run_pass(&self) -> sqlx::Result<Pass> {
        if !messaging::is_connected(&self.nats) {
            // Claiming now would only hold row locks while sends queue up.
            return Ok(Pass {
                transient_error: Some("NATS is not connected".to_owned()),
                ..Pass::default()
            });
        }
        let mut tx = self.db.begin().await?;
        // Losing this transaction's commit in a crash only means its rows
        // are published again, which JetStream deduplicates; so it need not
        // wait for the WAL flush, which is most of a pass's database time.
        sqlx::query!("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let rows = store::claim(&mut tx, self.settings.batch_size).await?;
        if rows.is_empty() {
            tx.commit().await?;
            self.metrics.empty_pass();
            return Ok(Pass::default());
        }
        self.metrics.batch();
        let mut pass = Pass {
            claimed: rows.len(),
            ..Pass::default()
        };

        let mut sent = Vec::with_capacity(rows.len());
        let mut acks = Vec::with_capacity(rows.len());
        let mut failures = Vec::new();
        for row in &rows {
            let span = publish_span(&self.settings.topology, row);
            match self.publish(row, &span).instrument(span.clone()).await {
                Ok(ack) => {
                    acks.push(ack.into_future().instrument(span.clone()));
                    sent.push((row, span));
                }
                Err(e) => {
                    let transient = self.classify(&mut pass, &span, &e);
                    if transient {
                        // NATS is gone: the rest of the batch waits for the next pass.
                        break;
                    }
                    failures.push((row, e.to_string()));
                }
            }
        }
        // All acks at once: each is bounded by the publish timeout, so the
        // whole batch is too.
        let acked = futures::future::join_all(acks).await;

        let mut published = Vec::with_capacity(rows.len());
        for ((row, span), result) in sent.into_iter().zip(acked) {
            match result {
                Ok(ack) => {
                    span.record("messaging.nats.stream.sequence", ack.sequence);
                    span.record("duplicate", ack.duplicate);
                    pass.duplicates += usize::from(ack.duplicate);
                    published.push(row.id);
                }
                Err(e) => {
                    if !self.classify(&mut pass, &span, &e) {
                        failures.push((row, e.to_string()));
                    }
                }
            }
        }

        store::finish_published(&mut tx, &published, self.settings.after_publish).await?;
        for (row, error) in &failures {
            let parked =
                store::record_failure(&mut tx, row.id, error, self.settings.max_attempts).await?;
            if parked {
                tracing::error!(
                    event_id = %row.event_id,
                    aggregate_id = %row.aggregate_id,
                    error = %error,
                    "outbox row parked after {} attempts; later events of its aggregate wait until `ticketctl outbox unpark`",
                    self.settings.max_attempts
                );
                pass.parked += 1;
            }
        }
        tx.commit().await?;

        pass.published = published.len();
        pass.failed = failures.len();
        self.metrics.published(published.len() as u64);
        self.metrics.duplicates(pass.duplicates as u64);
        self.metrics.publish_errors(pass.errors as u64);
        self.metrics.parked(pass.parked as u64);
        Ok(pass)
    }

    /// Sends one row to JetStream and returns the future of its PubAck.
    ///
    /// Public so that tests can reproduce "published, then the relay died
    /// before marking": publish, await the ack, never mark.
    pub async fn publish(
        &self,
        row: &OutboxRow,
        span: &Span,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(headers::MSG_ID, row.event_id.to_string().as_str());
        headers.insert(headers::EVENT_TYPE, row.event_type.as_str());
        headers.insert(
            headers::SCHEMA_VERSION,
            row.schema_version.to_string().as_str(),
        );
        headers.insert(headers::CONTENT_TYPE, "application/json");
        // Consumers continue the trace from the publish span, not from the
        // original request, so the tree reads request → publish → consume.
        headers::insert_trace(&mut headers, &TraceContext::of(span));
        self.js
            .send_publish(
                self.settings.topology.subject(&row.subject),
                PublishMessage::build()
                    .payload(row.payload.clone().into())
                    .headers(headers),
            )
            .await
    }

    /// Records a publish error on `span` and `pass`; true if it is NATS's
    /// fault (transient), false if it is the row's own.
    ///
    /// Only an oversized message is the row's fault: it will fail the same
    /// way however often it is retried. Everything else (timeouts, a broken
    /// connection, a missing stream, and JetStream errors such as a full
    /// store, which async-nats reports as `Other`) would fail every row
    /// alike, so it must not count against, let alone park, any of them.
    fn classify(&self, pass: &mut Pass, span: &Span, e: &PublishError) -> bool {
        span.record("otel.status_code", "ERROR");
        span.record("error", tracing::field::display(e));
        pass.errors += 1;
        let row_fault =
            e.kind() == PublishErrorKind::MaxPayloadExceeded && messaging::is_connected(&self.nats);
        if !row_fault {
            pass.stream_missing |= e.kind() == PublishErrorKind::StreamNotFound;
            pass.transient_error = Some(e.to_string());
        }
        !row_fault
    }
}

/// The span of one publish: a child of the span that wrote the row, so the
/// trace of the request continues across the outbox (a child rather than a
/// span link: each row is published once, and one tree from the HTTP
/// request to every consumer is what a reader wants to see in Jaeger).
pub fn publish_span(topology: &Topology, row: &OutboxRow) -> Span {
    let subject = topology.subject(&row.subject);
    let span = tracing::info_span!(
        "outbox.publish",
        otel.name = %format!("{subject} publish"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "publish",
        messaging.destination.name = %subject,
        messaging.message.id = %row.event_id,
        messaging.nats.stream.sequence = tracing::field::Empty,
        event_id = %row.event_id,
        event_type = %row.event_type,
        aggregate_id = %row.aggregate_id,
        aggregate_version = row.aggregate_version,
        duplicate = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let parent = TraceContext {
        traceparent: row.traceparent.clone(),
        tracestate: row.tracestate.clone(),
    };
    telemetry::propagation::set_parent(&span, &parent);
    span
}
