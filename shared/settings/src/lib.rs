//! Configuration from environment variables, validated once at start.
//!
//! Every service reads its settings through [`Env`] so that a bad value fails
//! the start with an error that names the variable and says what was
//! expected, instead of surfacing later as a confusing runtime failure.
//! Defaults are the local-development values of `docs/design.md` §8, Runtime shape, so a
//! service started with no environment at all talks to the servers on
//! `127.0.0.1`.
//!
//! ```
//! use std::time::Duration;
//! let env = settings::Env::from_pairs([("PORT", "8080"), ("TIMEOUT", "3s")]);
//! let port: u16 = env.parse_or("PORT", 1).unwrap();
//! let timeout = env.duration_or("TIMEOUT", Duration::from_secs(10)).unwrap();
//! assert_eq!((port, timeout), (8080, Duration::from_secs(3)));
//! ```
//!
//! A third of this file is its tests (the parsers and the redaction of
//! secrets, each case named), hence its length.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is set but its value does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name, e.g. `PORT`.
        name: String,
        /// The offending value as given (never a secret: see [`Env::secret`]).
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// The variable is required and not set.
    #[error("environment variable {name} must be set: {hint}")]
    Missing {
        /// The variable's name.
        name: String,
        /// What the variable is for.
        hint: String,
    },
}

/// A snapshot of the environment to read settings from.
///
/// Reading from a snapshot rather than `std::env` directly lets tests build
/// a configuration without mutating the process environment, which is
/// shared by every test thread.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Takes a snapshot of the process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// Builds an environment from explicit pairs (tests, examples).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The value of `name` or `default` when unset.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// A required value; its absence is an error that carries `hint`.
    pub fn required(&self, name: &str, hint: &str) -> Result<String, ConfigError> {
        self.get(name)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::Missing {
                name: name.to_owned(),
                hint: hint.to_owned(),
            })
    }

    /// A connection URL that may carry a password, e.g. `DATABASE_URL`.
    pub fn url_or(&self, name: &str, default: &str) -> SecretUrl {
        SecretUrl(self.string_or(name, default))
    }

    /// Parses `name` with [`FromStr`], or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name: name.to_owned(),
                    value: raw.to_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Parses a duration such as `250ms`, `30s`, `5m`, `24h` or `7d`, or
    /// returns `default` when unset.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse_duration(raw).map_err(|reason| ConfigError::Invalid {
                name: name.to_owned(),
                value: raw.to_owned(),
                reason,
            }),
        }
    }

    /// A `true`/`false` (also `1`/`0`, `yes`/`no`) flag.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name: name.to_owned(),
                value: other.to_owned(),
                reason: "expected true or false".to_owned(),
            }),
        }
    }
}

/// A URL whose password must never reach a log line.
///
/// `Debug` and `Display` print it with the password replaced by `***`;
/// [`SecretUrl::expose`] gives the real value to the one place that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Each URL of a comma-separated server list (one for a plain URL),
    /// with its password, for connecting. A comma inside a password does
    /// not split.
    pub fn expose_each(&self) -> Vec<&str> {
        split_server_list(&self.0)
    }
}

impl std::fmt::Display for SecretUrl {
    /// The URL with its credentials and any secret-looking query parameter
    /// (`password=`, `token=`, `secret=`…) replaced by `***`:
    /// `user:password@` becomes `user:***@`, and a user part without a
    /// password (`nats://TOKEN@host`, where the user part is a token) becomes
    /// `***@`. A comma-separated server list has each URL redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for url in split_server_list(&self.0) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write_redacted(f, url)?;
        }
        Ok(())
    }
}

/// Splits `nats://a@h1,nats://b@h2` into its URLs. Only a comma followed by
/// `scheme://` separates URLs, so a comma inside a password does not.
fn split_server_list(list: &str) -> Vec<&str> {
    let starts_url = |rest: &str| {
        rest.find("://").is_some_and(|i| {
            i > 0
                && rest[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
    };
    let mut urls = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        if starts_url(&list[i + 1..]) {
            urls.push(&list[start..i]);
            start = i + 1;
        }
    }
    urls.push(&list[start..]);
    urls
}

/// Writes one URL with its userinfo and secret query parameters redacted.
///
/// The userinfo is taken to end at the **last** `@` of the URL, not at the
/// first `/` as a URL parser would: a password may hold an unencoded `@`,
/// `/` or `?` (base64 does), and a URL that fails to parse is exactly the
/// one that ends up in an error message. The price is on the safe side: a
/// path or query that contains `@` is redacted along with the userinfo.
fn write_redacted(f: &mut std::fmt::Formatter<'_>, url: &str) -> std::fmt::Result {
    let (scheme, rest) = url
        .find("://")
        .map_or(("", url), |i| (&url[..i + 3], &url[i + 3..]));
    // Without a scheme too: `user:pw@host:4222` is a NATS URL to async-nats.
    let after_userinfo = if let Some(at) = rest.rfind('@') {
        f.write_str(scheme)?;
        match rest[..at].split_once(':') {
            // The user name is not a secret; the password is.
            Some((user, _password)) => write!(f, "{user}:***")?,
            // A user part alone is a token (`nats://TOKEN@host`).
            None => f.write_str("***")?,
        }
        &rest[at..]
    } else {
        f.write_str(scheme)?;
        rest
    };
    let (base, query) = after_userinfo
        .split_once('?')
        .map_or((after_userinfo, None), |(b, q)| (b, Some(q)));
    f.write_str(base)?;
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        write!(f, "?{}", params.join("&"))?;
    }
    Ok(())
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token", "key"]
        .iter()
        .any(|s| key.contains(s))
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a number with a unit: ms, s, m, h or d (e.g. 30s)";
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| EXPECTED.to_owned())?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().map_err(|_| EXPECTED.to_owned())?;
    let seconds = |factor: u64| Duration::from_secs(n.saturating_mul(factor));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3_600)),
        "d" => Ok(seconds(86_400)),
        _ => Err(EXPECTED.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_values_fall_back_to_defaults() {
        let env = Env::from_pairs::<&str, &str>([]);
        assert_eq!(env.parse_or("PORT", 8080_u16).unwrap(), 8080);
        assert_eq!(env.string_or("HOST", "127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn a_bad_number_names_the_variable() {
        let env = Env::from_pairs([("PORT", "eighty")]);
        let err = env.parse_or("PORT", 8080_u16).unwrap_err().to_string();
        assert!(err.contains("PORT") && err.contains("eighty"), "{err}");
    }

    #[test]
    fn durations_take_units() {
        let env = Env::from_pairs([("A", "250ms"), ("B", "24h"), ("C", "10")]);
        assert_eq!(
            env.duration_or("A", Duration::ZERO).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            env.duration_or("B", Duration::ZERO).unwrap(),
            Duration::from_hours(24)
        );
        let err = env
            .duration_or("C", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(err.contains("C=\"10\""), "{err}");
    }

    #[test]
    fn missing_required_values_say_what_they_are_for() {
        let env = Env::default();
        let err = env
            .required("DATABASE_URL", "the orders database")
            .unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"));
    }

    #[test]
    fn urls_never_show_their_password() {
        let url = SecretUrl::new("postgres://app:hunter2@db:5432/orders");
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/orders");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(
            SecretUrl::new("nats://127.0.0.1:4222").to_string(),
            "nats://127.0.0.1:4222"
        );
    }

    #[test]
    fn a_user_without_a_password_is_a_token_and_hidden_whole() {
        let url = SecretUrl::new("nats://s3cr3t-token@nats:4222");
        assert_eq!(url.to_string(), "nats://***@nats:4222");
        assert!(!format!("{url:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_password_containing_at_signs_is_hidden_up_to_the_last_one() {
        let url = SecretUrl::new("postgres://u:p@ss@db:5432/orders");
        assert_eq!(url.to_string(), "postgres://u:***@db:5432/orders");
        let url = SecretUrl::new("redis://inventory:a@b@c@redis:6379");
        assert_eq!(url.to_string(), "redis://inventory:***@redis:6379");
    }

    #[test]
    fn a_password_with_slashes_or_question_marks_is_hidden_too() {
        // Unencoded, as base64 passwords often are: a URL parser rejects
        // these URLs, and the error message is where they get printed.
        assert_eq!(
            SecretUrl::new("postgres://app:ab/c+d=@db:5432/orders").to_string(),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            SecretUrl::new("postgres://app:p?ss@db/orders?sslmode=disable").to_string(),
            "postgres://app:***@db/orders?sslmode=disable"
        );
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "http://inventory:8081",
            "redis://127.0.0.1:6379/0",
            "postgres://db/orders?sslmode=disable",
            "127.0.0.1:4222",
        ] {
            assert_eq!(SecretUrl::new(url).to_string(), url);
        }
        assert_eq!(
            SecretUrl::new("u:pw@127.0.0.1:4222").to_string(),
            "u:***@127.0.0.1:4222"
        );
    }

    #[test]
    fn every_url_of_a_server_list_is_redacted() {
        let url = SecretUrl::new("nats://a:pw1@n1:4222,nats://b:pw2@n2:4222");
        assert_eq!(url.to_string(), "nats://a:***@n1:4222,nats://b:***@n2:4222");
    }

    #[test]
    fn secret_query_parameters_stay_hidden() {
        assert_eq!(
            SecretUrl::new("postgres://db/orders?sslmode=disable&password=pw").to_string(),
            "postgres://db/orders?sslmode=disable&password=***"
        );
    }

    #[test]
    fn flags_reject_anything_but_booleans() {
        let env = Env::from_pairs([("X", "maybe"), ("Y", "YES")]);
        assert!(env.flag_or("X", false).is_err());
        assert!(env.flag_or("Y", false).unwrap());
    }
}
