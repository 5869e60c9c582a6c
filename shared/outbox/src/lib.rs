//! The write side of the transactional outbox.
//!
//! A service that changes state calls [`enqueue`] with the event that
//! describes the change, on the same transaction as the change itself. The
//! row commits or rolls back with the business write, which is the whole
//! point: there is no moment in which the order is paid but `OrderPaid` is
//! lost, or `OrderPaid` is published for a payment that rolled back.
//!
//! The row also records the W3C trace context of the current span, so the
//! relay that later publishes it can continue the request's trace across
//! the asynchronous gap.
//!
//! With [`Writer::with_notify`], the transaction also sends
//! `NOTIFY outbox`, which Postgres delivers at commit: a relay that
//! `LISTEN`s wakes at once instead of at its next poll. The price is a
//! global lock Postgres takes while committing a transaction that notified,
//! which serialises such commits; the relay benchmark measures it
//! (`docs/benchmarks.md`, "Relay benchmark"). Without notify the relay polls.

#![warn(missing_docs)]

use contracts::{Envelope, Event};
use sqlx::PgConnection;
use telemetry::propagation::TraceContext;

/// The event could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The envelope could not be serialized (a bug in a payload type).
    #[error("cannot serialize {event_type} envelope")]
    Serialize {
        /// The event type.
        event_type: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The insert failed; the caller's transaction must roll back.
    #[error("cannot insert {event_type} into the outbox")]
    Insert {
        /// The event type.
        event_type: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
}

impl OutboxError {
    /// Postgres refused a statement writing a `T`.
    fn insert<T: Event>(source: sqlx::Error) -> Self {
        Self::Insert {
            event_type: T::EVENT_TYPE,
            source,
        }
    }
}

/// The `LISTEN`/`NOTIFY` channel the relay listens on.
pub const NOTIFY_CHANNEL: &str = "outbox";

/// Writes events into the outbox; cheap to clone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Writer {
    notify: bool,
}

impl Writer {
    /// A writer that leaves waking the relay to its polling.
    pub fn new() -> Self {
        Self { notify: false }
    }

    /// A writer that also notifies listening relays when the transaction
    /// commits (see the module docs for the cost).
    pub fn with_notify(notify: bool) -> Self {
        Self { notify }
    }

    /// Writes `envelope` to the outbox inside the caller's transaction.
    ///
    /// Pass the transaction (`&mut *tx`), never a pool connection: an
    /// outbox row written outside the business transaction is no outbox at
    /// all.
    pub async fn enqueue<T: Event>(
        self,
        tx: &mut PgConnection,
        envelope: &Envelope<T>,
    ) -> Result<(), OutboxError> {
        enqueue(&mut *tx, envelope).await?;
        if self.notify {
            // Delivered at commit, and only once per transaction however
            // many events it wrote (Postgres folds identical notifications).
            sqlx::query!("select pg_notify('outbox', '')")
                .execute(tx)
                .await
                .map_err(OutboxError::insert::<T>)?;
        }
        Ok(())
    }
}

#[tracing::instrument(
    name = "outbox.enqueue",
    skip_all,
    fields(
        event_id = %envelope.event_id,
        event_type = T::EVENT_TYPE,
        aggregate_id = %envelope.aggregate_id,
        aggregate_version = envelope.aggregate_version,
    )
)]
async fn enqueue<T: Event>(
    tx: &mut PgConnection,
    envelope: &Envelope<T>,
) -> Result<(), OutboxError> {
    let payload = serde_json::to_value(envelope).map_err(|source| OutboxError::Serialize {
        event_type: T::EVENT_TYPE,
        source,
    })?;
    let trace = TraceContext::current();
    sqlx::query!(
        r#"
        insert into outbox (
            event_id, event_type, schema_version, aggregate_type, aggregate_id,
            aggregate_version, subject, payload, traceparent, tracestate
        )
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        "#,
        envelope.event_id.0,
        T::EVENT_TYPE,
        i32::try_from(T::SCHEMA_VERSION).expect("schema versions are small numbers"),
        T::AGGREGATE_TYPE,
        envelope.aggregate_id,
        envelope.aggregate_version,
        T::SUBJECT,
        payload,
        trace.traceparent,
        trace.tracestate,
    )
    .execute(tx)
    .await
    .map_err(OutboxError::insert::<T>)?;
    Ok(())
}
