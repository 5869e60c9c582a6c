//! Schema evolution with upcasting: a consumer reads every committed
//! version of an event as the current one.
//!
//! A breaking change ships as a new `schema_version` (see the crate docs),
//! and consumers go on reading the old versions: a stream is replayed from
//! its start, and producers and consumers deploy at their own pace. So no
//! handler matches on versions. The current payload type implements
//! [`Versioned`]: the current version deserializes directly; each older
//! one deserializes into its own committed struct (kept in a `vN` module,
//! e.g. [`crate::orders::v1`]) and is carried forward by upcasters, one
//! plain `From` per step (v1 → v2 → v3), each small enough to test alone.
//!
//! A consumer asks an [`Envelope`] for the current type
//! ([`Envelope::decode`]) and gets it whichever version was written. A
//! version this build does not know (a producer deployed ahead of its
//! consumers) or data that does not fit its version's schema is a
//! [`DecodeError`] naming the event type, the version and the reason; the
//! consumer runtime dead-letters it as poison, to be redriven once a
//! consumer that knows the version runs.

use serde_json::Value;

use crate::{Envelope, Event};

/// The current version of an event type, able to read every committed
/// version of it. Implemented by the current payload types only; their
/// older versions are plain [`Event`]s.
pub trait Versioned: Event {
    /// Reads `data`, written as `schema_version` `version` of this event
    /// type, as the current version: a match with one arm per committed
    /// version, each [`parse`] of that version's struct followed by the
    /// upcasters up to this one, and [`DecodeError::unknown_version`] for
    /// anything else.
    fn from_version(version: u32, data: Value) -> Result<Self, DecodeError>;
}

impl Envelope<Value> {
    /// `data` as the current version of `T`, whichever version was written.
    /// Refuses an envelope of another event type, so a handler that matched
    /// on `event_type` cannot decode the wrong arm by mistake.
    pub fn decode<T: Versioned>(&self) -> Result<T, DecodeError> {
        if self.event_type != T::EVENT_TYPE {
            return Err(DecodeError::WrongType {
                expected: T::EVENT_TYPE,
                found: self.event_type.clone(),
            });
        }
        T::from_version(self.schema_version, self.data.clone())
    }
}

/// Deserializes `data` as exactly the version `V` describes: the first
/// step of each arm of a [`Versioned::from_version`].
pub fn parse<V: Event>(data: Value) -> Result<V, DecodeError> {
    serde_json::from_value(data).map_err(|reason| DecodeError::Invalid {
        event_type: V::EVENT_TYPE,
        version: V::SCHEMA_VERSION,
        reason,
    })
}

/// Why an event could not be read as the current version of its type.
/// None of these heals by retrying: the consumer treats each as poison.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope holds another event type than the one asked for.
    #[error("expected event type {expected}, got {found}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The envelope's `event_type`.
        found: String,
    },
    /// A `schema_version` this build has no struct for: newer than the
    /// current one (its producer was deployed first), or never committed.
    #[error("unknown schema_version {version} of {event_type}: this build reads v1 to v{current}")]
    UnknownVersion {
        /// The event type.
        event_type: &'static str,
        /// The version the envelope says it holds.
        version: u32,
        /// The newest version this build knows.
        current: u32,
    },
    /// The data does not fit the schema of the version it claims.
    // The reason is in the message, not a `#[source]`: the consumer keeps
    // only the message, in the dead letter it writes.
    #[error("invalid {event_type} v{version} data: {reason}")]
    Invalid {
        /// The event type.
        event_type: &'static str,
        /// The version the data was read as.
        version: u32,
        /// What serde found wrong, e.g. a missing field.
        reason: serde_json::Error,
    },
}

impl DecodeError {
    /// `version` is none of the committed versions of `T`, the current type.
    pub fn unknown_version<T: Event>(version: u32) -> Self {
        Self::UnknownVersion {
            event_type: T::EVENT_TYPE,
            version,
            current: T::SCHEMA_VERSION,
        }
    }
}
