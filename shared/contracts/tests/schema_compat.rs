//! The committed JSON Schemas are the contract with every consumer.
//!
//! This test regenerates each event's schema from the Rust types and
//! compares it with `schemas/<EventType>.v<N>.json`:
//! - a breaking difference (see `contracts::compat`) fails, always: bump the
//!   event's `SCHEMA_VERSION` instead, which starts a new committed file;
//! - a compatible difference fails until the file is refreshed with
//!   `UPDATE_SCHEMAS=1 cargo test -p contracts` and committed, so the
//!   committed schema never drifts from the code.

use std::path::PathBuf;

use contracts::{DecodeError, Event as _, Versioned};

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn updating() -> bool {
    std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1")
}

#[test]
fn no_change_to_an_event_breaks_a_consumer_of_its_committed_schema() {
    let mut problems = Vec::new();
    for entry in contracts::registry() {
        let path = schemas_dir().join(entry.file_name());
        let generated = serde_json::to_string_pretty(&entry.schema).unwrap() + "\n";
        let Ok(committed_text) = std::fs::read_to_string(&path) else {
            if updating() {
                std::fs::write(&path, &generated).unwrap();
            } else {
                problems.push(format!(
                    "{}: no committed schema; run UPDATE_SCHEMAS=1",
                    entry.file_name()
                ));
            }
            continue;
        };
        let committed: serde_json::Value = serde_json::from_str(&committed_text).unwrap();

        let breaks = contracts::compat::breaking_changes(&committed, &entry.schema);
        if !breaks.is_empty() {
            problems.push(format!(
                "{}: breaking change ({}); keep v{} as it is and add v{}",
                entry.file_name(),
                breaks.join("; "),
                entry.schema_version,
                entry.schema_version + 1,
            ));
        } else if committed_text != generated {
            if updating() {
                std::fs::write(&path, &generated).unwrap();
            } else {
                problems.push(format!(
                    "{}: changed compatibly; refresh with UPDATE_SCHEMAS=1 cargo test -p contracts and commit",
                    entry.file_name()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_committed_schema_still_has_its_event_type() {
    let known: Vec<String> = contracts::registry()
        .iter()
        .map(contracts::SchemaEntry::file_name)
        .collect();
    for file in std::fs::read_dir(schemas_dir()).unwrap() {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|ext| ext == "json") {
            assert!(
                known.contains(&name),
                "{name} is committed but no type produces it: removing an event type breaks its consumers"
            );
        }
    }
}

#[test]
fn an_envelope_round_trips_through_json() {
    use contracts::orders::{OrderPaid, OrderSeat};
    let paid = OrderPaid {
        order_id: uuid::Uuid::new_v4(),
        concert_id: uuid::Uuid::new_v4(),
        customer_email: "ada@example.com".into(),
        seats: vec![OrderSeat {
            seat_id: "A-1".into(),
            fencing_token: Some(7),
        }],
        paid_at: chrono::Utc::now(),
    };
    let envelope = contracts::Envelope::new("orders", paid.order_id, 2, chrono::Utc::now(), paid);
    let json = serde_json::to_value(&envelope).unwrap();
    assert_eq!(json["event_type"], "OrderPaid");
    assert_eq!(json["schema_version"], 3);
    let back: contracts::Envelope<OrderPaid> = serde_json::from_value(json).unwrap();
    assert_eq!(back, envelope);
}

/// Reads `data`, written at `version` of `event_type`, as that type's
/// current version. Every event type with a committed schema has a line.
fn read_as_current(
    event_type: &str,
    version: u32,
    data: serde_json::Value,
) -> Result<(), DecodeError> {
    use contracts::{inventory as i, notifications as n, orders as o};
    fn read<T: Versioned>(version: u32, data: serde_json::Value) -> Result<(), DecodeError> {
        T::from_version(version, data).map(drop)
    }
    match event_type {
        o::OrderCreated::EVENT_TYPE => read::<o::OrderCreated>(version, data),
        o::OrderPaid::EVENT_TYPE => read::<o::OrderPaid>(version, data),
        o::OrderCancelled::EVENT_TYPE => read::<o::OrderCancelled>(version, data),
        o::OrderConfirmed::EVENT_TYPE => read::<o::OrderConfirmed>(version, data),
        o::OrderRefunded::EVENT_TYPE => read::<o::OrderRefunded>(version, data),
        i::SeatsConfirmed::EVENT_TYPE => read::<i::SeatsConfirmed>(version, data),
        i::SeatAllocationRejected::EVENT_TYPE => read::<i::SeatAllocationRejected>(version, data),
        n::SendEmail::EVENT_TYPE => read::<n::SendEmail>(version, data),
        other => panic!("{other} has no current type that reads it"),
    }
}

#[test]
fn every_committed_version_of_an_event_is_read_by_its_current_type() {
    let registry = contracts::registry();
    for entry in &registry {
        // `null` fits no version, so each read fails as `Invalid`, saying
        // which version's struct it tried: the arm for this version must
        // exist and parse this version's struct, not a neighbour's.
        let tried = read_as_current(
            entry.event_type,
            entry.schema_version,
            serde_json::Value::Null,
        );
        assert!(
            matches!(tried, Err(DecodeError::Invalid { version, .. }) if version == entry.schema_version),
            "{}: {tried:?}",
            entry.file_name()
        );
        // And the version after the newest committed one is refused.
        let newest = registry
            .iter()
            .filter(|e| e.event_type == entry.event_type)
            .map(|e| e.schema_version)
            .max()
            .unwrap();
        let future = read_as_current(entry.event_type, newest + 1, serde_json::Value::Null);
        assert!(
            matches!(future, Err(DecodeError::UnknownVersion { current, .. }) if current == newest),
            "{} v{}: {future:?}",
            entry.event_type,
            newest + 1
        );
    }
}

#[test]
fn renaming_the_concert_field_is_breaking_so_it_ships_as_a_new_version() {
    let committed_v2: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(schemas_dir().join("OrderPaid.v2.json")).unwrap(),
    )
    .unwrap();
    let current = contracts::SchemaEntry::of::<contracts::orders::OrderPaid>();

    let breaks = contracts::compat::breaking_changes(&committed_v2, &current.schema);

    assert_eq!(
        breaks,
        [
            "$.data.event_id: removed",
            "$.data.concert_id: added as required"
        ]
    );
    assert_eq!(current.schema_version, 3);
}
