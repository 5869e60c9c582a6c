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
//!   field is breaking: it ships as a new `schema_version`, and consumers
//!   read the old versions too.
//!
//! How a breaking change ships (schema evolution with upcasting,
//! [`versioned`]; the path a team takes is in `docs/design.md` §5):
//! 1. move the current struct, unchanged, into a `vN` module of its event
//!    family (e.g. [`orders::v2`]): its committed schema keeps its type;
//! 2. change the struct in place and bump its `SCHEMA_VERSION`; add it to
//!    [`registry`] and commit its schema (`UPDATE_SCHEMAS=1 cargo test -p
//!    contracts` writes the new file and leaves the old ones alone);
//! 3. write the upcaster, a `From<vN::X> for X`, and an arm for version N
//!    in `X`'s [`Versioned::from_version`];
//! 4. deploy the consumers (they read both versions), then the producers.
//!    Old events stay in the streams and keep reading through the
//!    upcaster, so the old structs and schemas are never removed.

#![warn(missing_docs)]

pub mod compat;
mod envelope;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod versioned;

pub use envelope::{Envelope, Event, MessageId};
pub use versioned::{DecodeError, Versioned};

/// Every event type whose schema is committed, for the schema test and tools.
pub fn registry() -> Vec<SchemaEntry> {
    vec![
        // The current versions, which producers write.
        SchemaEntry::of::<orders::OrderCreated>(),
        SchemaEntry::of::<orders::OrderPaid>(),
        SchemaEntry::of::<orders::OrderCancelled>(),
        SchemaEntry::of::<orders::OrderConfirmed>(),
        SchemaEntry::of::<orders::OrderRefunded>(),
        SchemaEntry::of::<inventory::SeatsConfirmed>(),
        SchemaEntry::of::<inventory::SeatAllocationRejected>(),
        SchemaEntry::of::<notifications::SendEmail>(),
        // Older versions, still in the streams and read through upcasters.
        SchemaEntry::of::<orders::v2::OrderCreated>(),
        SchemaEntry::of::<orders::v2::OrderPaid>(),
        SchemaEntry::of::<orders::v2::OrderConfirmed>(),
        SchemaEntry::of::<orders::v1::OrderCreated>(),
        SchemaEntry::of::<orders::v1::OrderPaid>(),
        SchemaEntry::of::<orders::v1::OrderCancelled>(),
        SchemaEntry::of::<orders::v1::OrderConfirmed>(),
        SchemaEntry::of::<orders::v1::OrderRefunded>(),
        SchemaEntry::of::<inventory::v1::SeatsConfirmed>(),
        SchemaEntry::of::<inventory::v1::SeatAllocationRejected>(),
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
