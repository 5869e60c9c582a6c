//! The envelope every event travels in (`docs/design.md` §5, Contracts).
//!
//! The envelope carries what infrastructure needs without looking inside
//! `data`: a unique id for deduplication (`event_id`, also the JetStream
//! `Nats-Msg-Id` and the consumer inbox key) and the aggregate id and
//! version for per-aggregate ordering.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one message (the envelope's `event_id`).
///
/// Named `MessageId` in Rust because "event" also means a concert in this
/// domain: an `OrderCreated` message has a `MessageId` and refers to the
/// concert it is for by `data.concert_id` (by `data.event_id` before the
/// versions that renamed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MessageId(pub Uuid);

impl MessageId {
    /// A fresh id. UUIDv7 so ids sort roughly by creation time in logs.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A payload type that can travel in an [`Envelope`].
pub trait Event: Serialize + DeserializeOwned + JsonSchema {
    /// The `event_type`, stable forever for this payload shape, e.g. `OrderPaid`.
    const EVENT_TYPE: &'static str;
    /// Bumped on every breaking change of the payload.
    const SCHEMA_VERSION: u32;
    /// The kind of aggregate this event belongs to, e.g. `order`.
    const AGGREGATE_TYPE: &'static str;
    /// The subject, without the deployment prefix, e.g. `orders.events.order_paid`.
    const SUBJECT: &'static str;
}

/// A versioned event envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<T> {
    /// Unique id of this message: dedup key for JetStream and consumers.
    pub event_id: MessageId,
    /// See [`Event::EVENT_TYPE`].
    pub event_type: String,
    /// See [`Event::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// See [`Event::AGGREGATE_TYPE`].
    pub aggregate_type: String,
    /// The aggregate (e.g. order) this event is about.
    pub aggregate_id: Uuid,
    /// 1 for the aggregate's first event, +1 for each one after it; a
    /// consumer applies them in this order.
    pub aggregate_version: i64,
    /// When the fact happened (the producer's transaction time).
    pub occurred_at: DateTime<Utc>,
    /// The service that produced the event, e.g. `orders`.
    pub producer: String,
    /// The event payload.
    pub data: T,
}

impl<T: Event> Envelope<T> {
    /// Wraps `data` for aggregate `aggregate_id` at `aggregate_version`.
    pub fn new(
        producer: &str,
        aggregate_id: Uuid,
        aggregate_version: i64,
        occurred_at: DateTime<Utc>,
        data: T,
    ) -> Self {
        Self {
            event_id: MessageId::new(),
            event_type: T::EVENT_TYPE.to_owned(),
            schema_version: T::SCHEMA_VERSION,
            aggregate_type: T::AGGREGATE_TYPE.to_owned(),
            aggregate_id,
            aggregate_version,
            occurred_at,
            producer: producer.to_owned(),
            data,
        }
    }
}
