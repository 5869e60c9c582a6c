//! Detects schema changes that would break a consumer.
//!
//! Compatibility has to hold in both directions here, because streams are
//! replayed: a consumer built against the old schema reads new messages,
//! and a consumer built against the new schema replays old messages from
//! the log. So for every object in the schema:
//! - a property may not disappear, change its type, format or allowed
//!   values, or change between required and optional;
//! - a new property must be optional.
//!
//! Descriptions, titles and new optional properties are free to change.

use serde_json::{Map, Value};

/// Lists the breaking differences between the `old` (committed) and `new`
/// (generated) schema, each as `path: what changed`. Empty means compatible.
pub fn breaking_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut found = Vec::new();
    compare(
        &Side {
            root: old,
            node: old,
        },
        &Side {
            root: new,
            node: new,
        },
        "$",
        &mut found,
    );
    found
}

#[derive(Clone, Copy)]
struct Side<'a> {
    root: &'a Value,
    node: &'a Value,
}

impl<'a> Side<'a> {
    /// Follows a local `$ref` (`#/$defs/Name`) so both sides compare shapes,
    /// not the names schemars happened to give their definitions.
    fn resolved(self) -> Self {
        let mut node = self.node;
        while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let Some(target) = reference
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
            else {
                break;
            };
            node = target;
        }
        Self { node, ..self }
    }

    fn at(self, node: &'a Value) -> Self {
        Self { node, ..self }
    }

    fn get(self, key: &str) -> Option<&'a Value> {
        self.node.get(key)
    }
}

fn compare(old: &Side<'_>, new: &Side<'_>, path: &str, found: &mut Vec<String>) {
    let (old, new) = (old.resolved(), new.resolved());

    for key in ["type", "format", "enum", "const"] {
        let (a, b) = (old.get(key).map(normalize), new.get(key).map(normalize));
        if a != b {
            found.push(format!(
                "{path}: `{key}` changed from {} to {}",
                show(a.as_ref()),
                show(b.as_ref())
            ));
        }
    }

    if let (Some(a), Some(b)) = (old.get("items"), new.get("items")) {
        compare(&old.at(a), &new.at(b), &format!("{path}[]"), found);
    }

    for key in ["anyOf", "oneOf"] {
        match (
            old.get(key).and_then(Value::as_array),
            new.get(key).and_then(Value::as_array),
        ) {
            (Some(a), Some(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    compare(&old.at(x), &new.at(y), &format!("{path}<{key}{i}>"), found);
                }
            }
            (None, None) => {}
            _ => found.push(format!("{path}: `{key}` alternatives changed")),
        }
    }

    let empty = Map::new();
    let old_props = old
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new_props = new
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let old_required = required(old);
    let new_required = required(new);

    for (name, old_schema) in old_props {
        let field = format!("{path}.{name}");
        let Some(new_schema) = new_props.get(name) else {
            found.push(format!("{field}: removed"));
            continue;
        };
        match (
            old_required.contains(&name.as_str()),
            new_required.contains(&name.as_str()),
        ) {
            (true, false) => found.push(format!("{field}: was required, now optional")),
            (false, true) => found.push(format!("{field}: was optional, now required")),
            _ => {}
        }
        compare(&old.at(old_schema), &new.at(new_schema), &field, found);
    }
    for name in new_props.keys().filter(|n| !old_props.contains_key(*n)) {
        if new_required.contains(&name.as_str()) {
            found.push(format!("{path}.{name}: added as required"));
        }
    }
}

fn required(side: Side<'_>) -> Vec<&str> {
    side.get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `"string"` and `["string"]` mean the same; so do enums in any order.
fn normalize(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::Array(vec![value.clone()]),
        Value::Array(items) => {
            let mut items = items.clone();
            items.sort_by_key(ToString::to_string);
            Value::Array(items)
        }
        other => other.clone(),
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::breaking_changes;

    fn order(properties: &serde_json::Value, required: &[&str]) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": { "data": { "$ref": "#/$defs/Data" } },
            "required": ["data"],
            "$defs": { "Data": { "type": "object", "properties": properties, "required": required } }
        })
    }

    fn base() -> serde_json::Value {
        order(
            &json!({ "id": { "type": "string", "format": "uuid" }, "note": { "type": ["string", "null"] } }),
            &["id"],
        )
    }

    #[test]
    fn an_identical_schema_is_compatible() {
        assert!(breaking_changes(&base(), &base()).is_empty());
    }

    #[test]
    fn a_new_optional_field_is_compatible() {
        let new = order(
            &json!({ "id": { "type": "string", "format": "uuid" }, "note": { "type": ["null", "string"] },
                     "extra": { "type": "integer" } }),
            &["id"],
        );
        assert!(breaking_changes(&base(), &new).is_empty());
    }

    #[test]
    fn removing_a_field_breaks() {
        let new = order(&json!({ "note": { "type": ["string", "null"] } }), &[]);
        assert_eq!(breaking_changes(&base(), &new), ["$.data.id: removed"]);
    }

    #[test]
    fn a_new_required_field_breaks_replay_of_old_messages() {
        let new = order(
            &json!({ "id": { "type": "string", "format": "uuid" }, "note": { "type": ["string", "null"] },
                     "amount": { "type": "integer" } }),
            &["id", "amount"],
        );
        assert_eq!(
            breaking_changes(&base(), &new),
            ["$.data.amount: added as required"]
        );
    }

    #[test]
    fn changing_a_type_or_format_breaks() {
        let new = order(
            &json!({ "id": { "type": "integer" }, "note": { "type": ["string", "null"] } }),
            &["id"],
        );
        let found = breaking_changes(&base(), &new);
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn making_a_required_field_optional_breaks() {
        let new = order(
            &json!({ "id": { "type": "string", "format": "uuid" }, "note": { "type": ["string", "null"] } }),
            &[],
        );
        assert_eq!(
            breaking_changes(&base(), &new),
            ["$.data.id: was required, now optional"]
        );
    }
}
