//! A strict JSON body extractor.
//!
//! Differences from `axum::Json`, all in the client's favour:
//! - every rejection is a [`Problem`], so clients parse one error format;
//! - a malformed document is a 400 (`/problems/malformed-json`), while a
//!   well-formed document with a bad value is a 422 (`/problems/invalid-field`)
//!   whose `field` is the path to the value, e.g. `seats[0].hold_token`;
//! - unknown fields are rejected when the target type says
//!   `#[serde(deny_unknown_fields)]`, so a typo such as `customer_mail` is an
//!   error rather than a silently missing value.
//!
//! Validation belongs in the target types themselves (newtypes whose
//! `Deserialize` checks the value), so a value that parsed is a valid value.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::Problem;

/// A request body parsed strictly as JSON into `T`.
#[derive(Debug, Clone)]
pub struct StrictJson<T>(pub T);

impl<S, T> FromRequest<S> for StrictJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail("send the body as Content-Type: application/json"));
        }
        // `Bytes` honours `DefaultBodyLimit`; anything it rejects is the size.
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            Problem::new(
                e.status(),
                "body-unreadable",
                "The request body could not be read",
            )
            .detail(e.body_text())
        })?;
        parse(&body).map(StrictJson)
    }
}

/// Parses `body` into `T` with the same errors as the extractor.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." { "body".to_owned() } else { path };
            Problem::invalid_field(&field, strip_position(&inner))
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "The body is not valid JSON",
            )
            .detail(inner.to_string())
        }
    })?;
    deserializer.end().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not valid JSON",
        )
        .detail(e.to_string())
    })?;
    Ok(value)
}

/// serde_json appends "at line 1 column 42"; with a field path that is noise.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::parse;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        seats: Vec<Seat>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Seat {
        id: u32,
    }

    #[test]
    fn a_bad_nested_value_is_named_by_its_path() {
        let problem = parse::<Order>(br#"{"seats":[{"id":1},{"id":"x"}]}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.field.as_deref(), Some("seats[1].id"));
    }

    #[test]
    fn an_unknown_field_is_rejected_by_name() {
        let problem = parse::<Order>(br#"{"seats":[],"seat":[]}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.field.as_deref(), Some("seat"));
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        let problem = parse::<Order>(br#"{"seats":["#).unwrap_err();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.kind, "/problems/malformed-json");
    }

    #[test]
    fn trailing_garbage_is_a_bad_request() {
        let problem = parse::<Order>(br#"{"seats":[]} x"#).unwrap_err();
        assert_eq!(problem.status, 400);
    }
}
