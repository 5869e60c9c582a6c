//! The path parameters several features take, checked the same way
//! everywhere: a concert's id and a seat's label.

use uuid::Uuid;

use super::ApiError;

/// The `{id}` of a path: a concert's UUID, else 400 naming `id`.
pub(crate) fn event_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::Invalid {
        field: "id".into(),
        reason: format!("{raw:?} is not a UUID"),
    })
}

/// Seat labels as orders accepts them: 1–16 letters, digits, `-` or `_`.
/// The schemas state the same rule as the pattern `^[A-Za-z0-9_-]{1,16}$`.
pub(crate) fn valid_seat_id(seat: &str) -> bool {
    (1..=16).contains(&seat.len())
        && seat
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The `{seat}` of a path, else 400 naming `seat`.
pub(crate) fn seat_id(raw: String) -> Result<String, ApiError> {
    if valid_seat_id(&raw) {
        Ok(raw)
    } else {
        Err(ApiError::Invalid {
            field: "seat".into(),
            reason: format!("{raw:?} is not a seat id (1-16 letters, digits, '-' or '_')"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_ids_are_short_labels() {
        assert!(valid_seat_id("A-12"));
        assert!(!valid_seat_id(""));
        assert!(!valid_seat_id("A 1"));
        assert!(!valid_seat_id(&"x".repeat(17)));
    }
}
