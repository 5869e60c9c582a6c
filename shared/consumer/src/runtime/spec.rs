//! What a consuming service declares: how its consumer reads the stream
//! ([`ConsumerSpec`]) and the [`Handler`] it plugs in, with the
//! [`Delivery`] a handler sees and the [`HandlerError`] it answers with.
//!
//! These are the types a service writes against; they live apart from the
//! loop and the decision so that a reader of a handler finds the whole
//! contract in one place. The retry backoff read from the spec is part of
//! the decision and lives in `decision.rs`.

use std::future::Future;
use std::time::Duration;

use contracts::Envelope;
use messaging::StreamKind;
use sqlx::{PgConnection, PgPool};

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
    /// aggregate before it is dead-lettered, counted from when this
    /// consumer first met the gap (not from when the event was published:
    /// after an outage the whole backlog is old). Waiting does not count
    /// against `max_deliver`: the earlier version may be on its own retries.
    pub gap_timeout: Duration,
    /// Messages pulled at a time; keep `batch × slowest handler / lanes`
    /// well under `ack_wait`, or buffered messages expire before they are
    /// looked at.
    pub batch: usize,
    /// How many messages are processed at once: each aggregate always goes
    /// to the same lane, so its events stay in order, while other
    /// aggregates' events go on in the other lanes. Each busy lane holds a
    /// pooled connection for its transaction, so the runtime runs at most
    /// half the pool's size, leaving the rest to the service's requests.
    /// 1 processes one message at a time.
    pub lanes: usize,
    /// The one event this consumer reads, by its subject without the
    /// deployment prefix (`OrderPaid::SUBJECT`), or `None` for every event
    /// of the stream in each aggregate's order.
    ///
    /// JetStream then delivers only that subject, and the runtime keeps no
    /// position: the event must occur at most once per aggregate (an order
    /// is paid once), so there is no order among its deliveries to keep,
    /// and the inbox alone makes it idempotent. That saves the consumer
    /// every other event of the aggregate (three of every four order events
    /// for inventory) and two statements per event. A durable created
    /// without the filter keeps reading everything (the handler must ignore
    /// the rest, and still may); delete it to pick up the filter.
    pub only: Option<&'static str>,
}

impl ConsumerSpec {
    /// A spec with defaults: 30 s ack wait, 5 deliveries, retries after 1,
    /// 5 and 30 s, gaps retried every 500 ms for up to 10 minutes, 16
    /// messages pulled at a time, 4 lanes.
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
            lanes: 4,
            only: None,
        }
    }

    /// The same spec reading only the event of `subject` (see
    /// [`ConsumerSpec::only`]), which must occur at most once per aggregate.
    #[must_use]
    pub fn only(self, subject: &'static str) -> Self {
        Self {
            only: Some(subject),
            ..self
        }
    }
}

/// One event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The envelope, with `data` still as JSON: the handler reads it with
    /// [`Delivery::decode`], which accepts every committed version of the
    /// type it asks for.
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
    /// Not this delivery's turn: the work is in other hands for a bounded
    /// time (another worker's claim that lapses). Delivered again after
    /// `retry_in`, and never counted towards a dead letter, like a gap: a
    /// claim whose holder died must not use up the retries of the
    /// delivery that will do the work once it lapses.
    #[error("busy: {reason}")]
    Busy {
        /// Whose hands, for the log.
        reason: String,
        /// When to ask again.
        retry_in: std::time::Duration,
    },
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

    /// Runs before the transaction begins, on every delivery, for work
    /// that must not hold a transaction (and its row locks and pooled
    /// connection) while it waits: a call to an e-mail or payment
    /// provider. `handle` then records the outcome in the transaction.
    ///
    /// It runs before the inbox and ordering checks, so it cannot rely on
    /// them: it must be idempotent by a record of its own (the notification
    /// worker claims its `notifications` row, and skips one already sent).
    /// An error settles the delivery as `handle`'s would.
    fn before_transaction(
        &self,
        db: &PgPool,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (db, delivery);
        std::future::ready(Ok(()))
    }

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
