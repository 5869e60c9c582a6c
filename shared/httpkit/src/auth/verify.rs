//! Checking a bearer token: the keys (a JWKS file or URL, refreshed for an
//! unknown `kid`) and the validation (`EdDSA` pinned, `iss`, `aud`, `exp`
//! with leeway). [`Verifier::verify`] turns a token into the caller's
//! [`Identity`] or says why not.
//!
//! Long because of its tests (about half the file): each way a token can be
//! refused, keys from a URL that rotate, and the cache below. They test the
//! verifier's private state, so they stay beside it rather than in a file of
//! their own.
//!
//! A token already verified is remembered, by its exact text, for up to
//! [`CACHE_TTL`]: a client sends the same token with every request, and
//! the signature check is a large share of a cheap read's CPU
//! (docs/benchmarks.md, `GET /orders/{id}`). Nothing is trusted that was
//! not checked: a token that differs in one byte is another key, a
//! remembered one is still refused from the moment it expires, and a key
//! dropped from a JWKS stops being honoured within [`CACHE_TTL`] of its
//! refresh.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use settings::{ConfigError, Env};
use tokio::sync::RwLock;
use tokio::time::Instant;

use super::{AUDIENCE, DEV_ISSUER, Identity, Rejection};

/// The least time between two fetches of a JWKS URL for an unknown `kid`:
/// a stream of tokens with made-up key ids must not become a stream of
/// requests to the identity provider.
pub const REFRESH_INTERVAL: Duration = Duration::from_mins(1);
/// The one signing algorithm accepted.
const ALGORITHM: Algorithm = Algorithm::EdDSA;
/// How long a verified token is remembered, at most (and never past its
/// `exp`).
pub const CACHE_TTL: Duration = Duration::from_mins(1);
/// How many verified tokens are remembered: one per active client, about.
const CACHE_CAPACITY: u64 = 50_000;

/// Where the public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS file (`AUTH_JWKS_PATH`), read once at start.
    File(PathBuf),
    /// A JWKS endpoint (`AUTH_JWKS_URL`), fetched at start and on an
    /// unknown `kid`.
    Url(String),
}

/// How tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The public keys.
    pub keys: KeySource,
    /// The `iss` a token must carry (`AUTH_ISSUER`, default [`DEV_ISSUER`]).
    pub issuer: String,
    /// The `aud` a token must carry (`AUTH_AUDIENCE`, default [`AUDIENCE`]).
    pub audience: String,
    /// Clock skew allowed on `exp` (`AUTH_LEEWAY`, default 30 s).
    pub leeway: Duration,
}

impl AuthConfig {
    /// Reads `AUTH_JWKS_PATH` or `AUTH_JWKS_URL` (exactly one is required),
    /// `AUTH_ISSUER`, `AUTH_AUDIENCE` and `AUTH_LEEWAY`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let keys = match (env.get("AUTH_JWKS_PATH"), env.get("AUTH_JWKS_URL")) {
            (Some(path), None) => KeySource::File(PathBuf::from(path)),
            (None, Some(url)) => KeySource::Url(url.to_owned()),
            (Some(_), Some(url)) => {
                return Err(ConfigError::Invalid {
                    name: "AUTH_JWKS_URL".into(),
                    value: url.to_owned(),
                    reason: "set AUTH_JWKS_PATH or AUTH_JWKS_URL, not both".into(),
                });
            }
            (None, None) => {
                return Err(ConfigError::Invalid {
                    name: "AUTH_JWKS_PATH".into(),
                    value: String::new(),
                    reason: "the public keys tokens are checked against are required: a JWKS \
                             file (AUTH_JWKS_PATH) or URL (AUTH_JWKS_URL); for development, \
                             `ticketctl keygen --dir .keys` writes .keys/jwks.json"
                        .into(),
                });
            }
        };
        Ok(Self {
            keys,
            issuer: env.string_or("AUTH_ISSUER", DEV_ISSUER),
            audience: env.string_or("AUTH_AUDIENCE", AUDIENCE),
            leeway: env.duration_or("AUTH_LEEWAY", Duration::from_secs(30))?,
        })
    }
}

/// Why the keys could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The JWKS file could not be read.
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS endpoint did not answer with a JWKS.
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch {
        /// The endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// The text is not a JWKS, or has no usable key.
    #[error("{origin} is not a usable JWKS: {reason}")]
    Invalid {
        /// The file or URL.
        origin: String,
        /// Why.
        reason: String,
    },
}

/// Checks bearer tokens. Cloning shares the keys.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    source: KeySource,
    /// [`REFRESH_INTERVAL`], except in the rotation test.
    refresh_interval: Duration,
    validation: Validation,
    keys: RwLock<Keys>,
    http: reqwest::Client,
    /// Tokens verified in the last [`CACHE_TTL`], by their text.
    verified: moka::future::Cache<Arc<str>, Verified>,
}

/// A token that passed every check, and until when it may be used.
#[derive(Clone)]
struct Verified {
    identity: Identity,
    /// `exp` plus the leeway, in seconds since the epoch.
    usable_until: f64,
}

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Instant,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Loads the keys `config` names.
    pub async fn load(config: &AuthConfig) -> Result<Self, KeysError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| KeysError::Fetch {
                url: String::new(),
                reason: e.to_string(),
            })?;
        let keys = fetch(&config.keys, &http).await?;
        Ok(Self::with_keys(config, keys, http))
    }

    /// A verifier for the keys in `jwks` (tests, and the development
    /// issuer's own checks).
    pub fn from_jwks(config: &AuthConfig, jwks: &JwkSet) -> Result<Self, KeysError> {
        let keys = decoding_keys(jwks, "the given JWKS")?;
        Ok(Self::with_keys(config, keys, reqwest::Client::new()))
    }

    fn with_keys(
        config: &AuthConfig,
        by_kid: HashMap<String, DecodingKey>,
        http: reqwest::Client,
    ) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.leeway.as_secs();
        Self {
            inner: Arc::new(Inner {
                source: config.keys.clone(),
                refresh_interval: REFRESH_INTERVAL,
                validation,
                keys: RwLock::new(Keys {
                    by_kid,
                    fetched_at: Instant::now(),
                }),
                http,
                verified: moka::future::Cache::builder()
                    .max_capacity(CACHE_CAPACITY)
                    .time_to_live(CACHE_TTL)
                    .build(),
            }),
        }
    }

    /// The caller a bearer token names, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        if let Some(known) = self.inner.verified.get(token).await {
            if now_unix() <= known.usable_until {
                return Ok(known.identity);
            }
            // Expired since: the full check below says so.
            self.inner.verified.invalidate(token).await;
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Rejection::invalid(format!("not a JWT: {e}")))?;
        if header.alg != ALGORITHM {
            return Err(Rejection::invalid(format!(
                "the algorithm must be EdDSA, not {:?}",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| Rejection::invalid("the token names no key (kid)"))?;
        let Some(key) = self.key(&kid).await else {
            return Err(Rejection::invalid("signed by an unknown key"));
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation)
            .map_err(|e| Rejection::invalid(describe(&e)))?;
        let identity = Identity::verified(&data.claims.sub, data.claims.role.as_deref(), token);
        #[allow(clippy::cast_precision_loss)] // a leeway of seconds
        let usable_until = data.claims.exp + self.inner.validation.leeway as f64;
        self.inner
            .verified
            .insert(
                Arc::from(token),
                Verified {
                    identity: identity.clone(),
                    usable_until,
                },
            )
            .await;
        Ok(identity)
    }

    /// The key named `kid`, refreshing a URL's set once per
    /// [`REFRESH_INTERVAL`] when it is missing.
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        {
            let keys = self.inner.keys.read().await;
            if let Some(key) = keys.by_kid.get(kid) {
                return Some(key.clone());
            }
            if matches!(self.inner.source, KeySource::File(_))
                || keys.fetched_at.elapsed() < self.inner.refresh_interval
            {
                return None;
            }
        }
        let mut keys = self.inner.keys.write().await;
        // Another request may have refreshed while this one waited.
        if keys.fetched_at.elapsed() >= self.inner.refresh_interval {
            keys.fetched_at = Instant::now();
            match fetch(&self.inner.source, &self.inner.http).await {
                Ok(fresh) => keys.by_kid = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh the JWKS; keeping the old keys");
                }
            }
        }
        keys.by_kid.get(kid).cloned()
    }
}

/// The claims this system reads. `exp`, `iss` and `aud` are checked by
/// [`Validation`].
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Read again here for the cache: a number of seconds (RFC 7519 allows
    /// a fraction).
    exp: f64,
    #[serde(default)]
    role: Option<String>,
}

/// Seconds since the epoch, as `exp` counts them.
fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn fetch(
    source: &KeySource,
    http: &reqwest::Client,
) -> Result<HashMap<String, DecodingKey>, KeysError> {
    match source {
        KeySource::File(path) => {
            // Read once at start: a blocking read is fine there.
            let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
                path: path.clone(),
                source,
            })?;
            let jwks: JwkSet = serde_json::from_str(&text).map_err(|e| KeysError::Invalid {
                origin: path.display().to_string(),
                reason: e.to_string(),
            })?;
            decoding_keys(&jwks, &path.display().to_string())
        }
        KeySource::Url(url) => {
            let fetch_error = |e: reqwest::Error| KeysError::Fetch {
                url: url.clone(),
                reason: e.to_string(),
            };
            let jwks: JwkSet = http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(fetch_error)?
                .json()
                .await
                .map_err(fetch_error)?;
            decoding_keys(&jwks, url)
        }
    }
}

/// The set's Ed25519 keys by `kid`. Keys of other types, or without a
/// `kid`, are skipped (a provider's set may hold RSA keys for other
/// clients); a set with no usable key at all is an error at start.
fn decoding_keys(jwks: &JwkSet, origin: &str) -> Result<HashMap<String, DecodingKey>, KeysError> {
    let keys: HashMap<String, DecodingKey> = jwks
        .keys
        .iter()
        .filter(|jwk| {
            matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_)
            )
        })
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect();
    if keys.is_empty() {
        return Err(KeysError::Invalid {
            origin: origin.to_owned(),
            reason: "no Ed25519 key with a kid".into(),
        });
    }
    Ok(keys)
}

/// What a client may be told about a refused token: enough to fix its
/// side (expired, wrong audience), nothing about the keys.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidSignature => "the signature does not match".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidAlgorithm => "the algorithm must be EdDSA".into(),
        _ => "the token cannot be read".into(),
    }
}

#[cfg(test)]
// Tests of the plumbing mount throwaway routes that no document describes.
#[allow(clippy::disallowed_methods)]
mod tests {
    use uuid::Uuid;

    use super::super::dev::{Issuer, TokenRequest};
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            keys: KeySource::File(PathBuf::from("unused")),
            issuer: DEV_ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: Duration::from_secs(5),
        }
    }

    fn verifier(issuer: &Issuer) -> Verifier {
        Verifier::from_jwks(&config(), &issuer.jwks()).unwrap()
    }

    #[tokio::test]
    async fn a_customer_token_names_the_customer() {
        let issuer = Issuer::generate();
        let customer = Uuid::new_v4();
        let token = issuer.mint(&TokenRequest::customer(customer)).unwrap();
        let identity = verifier(&issuer).verify(&token).await.unwrap();
        assert_eq!(identity.subject, customer.to_string());
        assert!(!identity.is_operator());
        let operator = issuer.mint(&TokenRequest::operator("ops")).unwrap();
        assert!(
            verifier(&issuer)
                .verify(&operator)
                .await
                .unwrap()
                .is_operator()
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let issuer = Issuer::generate();
        let mut request = TokenRequest::customer(Uuid::new_v4());
        request.ttl_secs = -60; // expired a minute ago, beyond the 5 s leeway
        let token = issuer.mint(&request).unwrap();
        let refused = verifier(&issuer).verify(&token).await.unwrap_err();
        assert_eq!(refused, Rejection::invalid("the token has expired"));
    }

    #[tokio::test]
    async fn a_token_for_another_audience_or_issuer_is_refused() {
        let issuer = Issuer::generate();
        let mut request = TokenRequest::customer(Uuid::new_v4());
        request.audience = "another-system".into();
        let token = issuer.mint(&request).unwrap();
        assert_eq!(
            verifier(&issuer).verify(&token).await.unwrap_err(),
            Rejection::invalid("the token is for another audience")
        );
        let mut request = TokenRequest::customer(Uuid::new_v4());
        request.issuer = "someone-else".into();
        let token = issuer.mint(&request).unwrap();
        assert_eq!(
            verifier(&issuer).verify(&token).await.unwrap_err(),
            Rejection::invalid("the token is from another issuer")
        );
    }

    #[tokio::test]
    async fn a_token_signed_by_another_key_is_refused() {
        let trusted = Issuer::generate();
        let stranger = Issuer::generate();
        let token = stranger
            .mint(&TokenRequest::customer(Uuid::new_v4()))
            .unwrap();
        // Unknown kid: refused before any signature check.
        assert_eq!(
            verifier(&trusted).verify(&token).await.unwrap_err(),
            Rejection::invalid("signed by an unknown key")
        );
        // The trusted kid on a stranger's signature: refused by the check.
        let forged = stranger
            .mint_with_kid(&TokenRequest::customer(Uuid::new_v4()), trusted.kid())
            .unwrap();
        assert_eq!(
            verifier(&trusted).verify(&forged).await.unwrap_err(),
            Rejection::invalid("the signature does not match")
        );
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        let issuer = Issuer::generate();
        let verifier = Verifier::from_jwks(
            &AuthConfig {
                leeway: Duration::ZERO,
                ..config()
            },
            &issuer.jwks(),
        )
        .unwrap();
        let mut request = TokenRequest::customer(Uuid::new_v4());
        request.ttl_secs = 2;
        let token = issuer.mint(&request).unwrap();
        assert!(verifier.verify(&token).await.is_ok());
        assert!(verifier.verify(&token).await.is_ok(), "from the cache");
        assert_eq!(
            verifier
                .inner
                .verified
                .get(token.as_str())
                .await
                .map(|v| v.identity.subject),
            Some(request.subject.clone())
        );
        // `exp` is whole seconds: past it whatever the fraction at mint.
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            Rejection::invalid("the token has expired")
        );
    }

    #[tokio::test]
    async fn a_remembered_token_changed_in_its_signature_is_refused() {
        let issuer = Issuer::generate();
        let verifier = verifier(&issuer);
        let token = issuer
            .mint(&TokenRequest::customer(Uuid::new_v4()))
            .unwrap();
        assert!(verifier.verify(&token).await.is_ok());
        // The same header and claims with another signature: not the text
        // that was verified, so it is checked, and refused.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = signature.as_bytes().to_vec();
        bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
        let forged = format!("{signed}.{}", String::from_utf8(bytes).unwrap());
        assert!(matches!(
            verifier.verify(&forged).await,
            Err(Rejection::Invalid(_))
        ));
        assert!(verifier.verify(&token).await.is_ok());
    }

    /// An identity provider's JWKS endpoint on a free local port, serving
    /// whatever set the test puts in `keys`.
    async fn jwks_endpoint(keys: Arc<std::sync::Mutex<JwkSet>>) -> String {
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let keys = keys
                    .lock()
                    .map_or_else(|_| JwkSet { keys: vec![] }, |k| k.clone());
                async move { axum::Json(keys) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn keys_come_from_a_jwks_url_and_a_rotated_key_is_fetched_on_first_use() {
        let (old, new) = (Issuer::generate(), Issuer::generate());
        let served = Arc::new(std::sync::Mutex::new(old.jwks()));
        let url = jwks_endpoint(served.clone()).await;
        let config = AuthConfig {
            keys: KeySource::Url(url),
            ..config()
        };
        let mut verifier = Verifier::load(&config).await.unwrap();
        let customer = TokenRequest::customer(Uuid::new_v4());
        assert!(verifier.verify(&old.mint(&customer).unwrap()).await.is_ok());

        // The provider rotates to a new key.
        *served.lock().unwrap() = new.jwks();
        let rotated = new.mint(&customer).unwrap();
        // Within the refresh interval an unknown kid is not fetched again.
        assert_eq!(
            verifier.verify(&rotated).await.unwrap_err(),
            Rejection::invalid("signed by an unknown key")
        );
        // Past it (zero here), the first token with the new kid fetches the
        // set once more, and is accepted.
        Arc::get_mut(&mut verifier.inner).unwrap().refresh_interval = Duration::ZERO;
        assert!(verifier.verify(&rotated).await.is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_jwks_url_is_an_error_at_start_naming_it() {
        let config = AuthConfig {
            keys: KeySource::Url("http://127.0.0.1:9/jwks.json".into()),
            ..config()
        };
        let error = Verifier::load(&config).await.unwrap_err().to_string();
        assert!(error.contains("http://127.0.0.1:9/jwks.json"), "{error}");
    }

    #[tokio::test]
    async fn an_unsigned_token_is_refused() {
        use base64::Engine as _;
        let issuer = Issuer::generate();
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": issuer.kid()});
        let claims = serde_json::json!({
            "sub": Uuid::new_v4().to_string(), "iss": DEV_ISSUER, "aud": AUDIENCE,
            "exp": 4_102_444_800_u64,
        });
        for token in [
            format!("{}.{}.", b64(&header), b64(&claims)),
            format!("{}.{}", b64(&header), b64(&claims)),
        ] {
            assert!(matches!(
                verifier(&issuer).verify(&token).await,
                Err(Rejection::Invalid(_))
            ));
        }
    }
}
