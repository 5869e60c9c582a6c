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
        event_id: uuid::Uuid::new_v4(),
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
    assert_eq!(json["schema_version"], 2);
    let back: contracts::Envelope<OrderPaid> = serde_json::from_value(json).unwrap();
    assert_eq!(back, envelope);
}
