//! Contracts between services: the versioned event envelope and every event
//! payload, with JSON Schemas generated from these types.
//!
//! An event leaves a service only through its outbox (see the `outbox`
//! crate) wrapped in an [`Envelope`], and every consumer reads that same
//! envelope. The schemas in `schemas/` are generated from the types here
//! and committed; `tests/schema_compat.rs` fails when a change would break a
//! consumer that was built against the committed schema (see [`compat`]).
//!
//! Evolution rules, enforced by that test:
//! - adding an optional field is compatible (consumers ignore unknown
//!   fields; none of these types use `deny_unknown_fields`);
//! - removing or renaming a field, changing its type, or adding a required
//!   field is breaking: introduce a new `schema_version` instead and keep
//!   publishing the old one until every consumer has moved.

#![warn(missing_docs)]

pub mod compat;
mod envelope;
pub mod inventory;
pub mod notifications;
pub mod orders;

pub use envelope::{Envelope, Event, MessageId};

/// Every event type whose schema is committed, for the schema test and tools.
pub fn registry() -> Vec<SchemaEntry> {
    vec![
        SchemaEntry::of::<orders::v1::OrderCreated>(),
        SchemaEntry::of::<orders::v1::OrderPaid>(),
        SchemaEntry::of::<orders::v1::OrderConfirmed>(),
        SchemaEntry::of::<orders::OrderCreated>(),
        SchemaEntry::of::<orders::OrderPaid>(),
        SchemaEntry::of::<orders::OrderCancelled>(),
        SchemaEntry::of::<orders::OrderConfirmed>(),
        SchemaEntry::of::<orders::OrderRefunded>(),
        SchemaEntry::of::<inventory::SeatsConfirmed>(),
        SchemaEntry::of::<inventory::SeatAllocationRejected>(),
        SchemaEntry::of::<notifications::SendEmail>(),
    ]
}

/// One event type and the JSON Schema of its envelope.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    /// The `event_type`, e.g. `OrderPaid`.
    pub event_type: &'static str,
    /// The `schema_version` this schema describes.
    pub schema_version: u32,
    /// The generated schema of `Envelope<T>`.
    pub schema: serde_json::Value,
}

impl SchemaEntry {
    /// Generates the entry for event type `T`.
    pub fn of<T: Event>() -> Self {
        let schema = schemars::schema_for!(Envelope<T>);
        Self {
            event_type: T::EVENT_TYPE,
            schema_version: T::SCHEMA_VERSION,
            schema: schema.to_value(),
        }
    }

    /// The committed file name, e.g. `OrderPaid.v1.json`.
    pub fn file_name(&self) -> String {
        format!("{}.v{}.json", self.event_type, self.schema_version)
    }
}
