//! The development issuer: an Ed25519 key pair and the tokens it signs.
//!
//! Production plugs in a real identity provider (its JWKS URL in
//! `AUTH_JWKS_URL`); this stands in for it on a laptop, in compose and in
//! tests. `ticketctl keygen` writes a key pair (`signing.pem`, the private
//! key, mode 0600, and `jwks.json`, the public set the services load);
//! `ticketctl token` and the tests mint tokens with [`Issuer::mint`]. No
//! private key is committed anywhere: compose generates one on first start,
//! tests generate their own in memory.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore as _;
use serde::Serialize;
use uuid::Uuid;

use super::{AUDIENCE, DEV_ISSUER, OPERATOR_ROLE};

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): a DER
/// `PrivateKeyInfo` whose only variable part is the 32-byte seed after it.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The file names `ticketctl keygen` writes in its directory.
pub const SIGNING_KEY_FILE: &str = "signing.pem";
/// The public key set, for `AUTH_JWKS_PATH`.
pub const JWKS_FILE: &str = "jwks.json";

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key or the token could not be encoded.
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Signs tokens with one Ed25519 key.
#[derive(Clone)]
pub struct Issuer {
    pem: String,
    key: EncodingKey,
    kid: String,
    public: Jwk,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        let mut seed = [0_u8; 32];
        rand::rng().fill_bytes(&mut seed);
        der.extend_from_slice(&seed);
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        // A key made from a valid PKCS#8 prefix and 32 bytes always parses.
        Self::from_pem(&pem).unwrap_or_else(|e| unreachable!("a generated key is valid: {e}"))
    }

    /// The issuer of a PEM private key (`signing.pem`).
    pub fn from_pem(pem: &str) -> Result<Self, IssuerError> {
        let key = EncodingKey::from_ed_pem(pem.as_bytes())?;
        let mut public = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        // The key id is the key's own thumbprint (RFC 7638): stable for a
        // key, different for the next one, nothing to keep in sync.
        let kid = public.thumbprint(ThumbprintHash::SHA256)?;
        public.common.key_id = Some(kid.clone());
        Ok(Self {
            pem: pem.to_owned(),
            key,
            kid,
            public,
        })
    }

    /// Reads `signing.pem` (or any PEM file).
    pub fn from_file(path: &Path) -> Result<Self, IssuerError> {
        let pem = std::fs::read_to_string(path).map_err(|source| IssuerError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem)
    }

    /// Writes `signing.pem` (owner-only) and `jwks.json` into `dir`,
    /// unless `signing.pem` is there already: then that key is kept and
    /// returned, so a restart of the key step never invalidates tokens.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), IssuerError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IssuerError::Io { path, source }
        };
        let key_path = dir.join(SIGNING_KEY_FILE);
        let (issuer, created) = if key_path.exists() {
            (Self::from_file(&key_path)?, false)
        } else {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let issuer = Self::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(&key_path)
                .and_then(|mut file| file.write_all(issuer.pem.as_bytes()))
                .map_err(io(&key_path))?;
            (issuer, true)
        };
        // The public set is derived, so it is always rewritten.
        let jwks_path = dir.join(JWKS_FILE);
        let jwks = serde_json::to_string_pretty(&issuer.jwks()).unwrap_or_default();
        std::fs::write(&jwks_path, jwks + "\n").map_err(io(&jwks_path))?;
        Ok((issuer, created))
    }

    /// The key id tokens carry in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set, as the services load it.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public.clone()],
        }
    }

    /// A signed token for `request`.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, IssuerError> {
        self.mint_with_kid(request, &self.kid)
    }

    /// A token signed by this key but naming key `kid`: only for tests
    /// that prove a forged key id is caught by the signature check.
    pub fn mint_with_kid(&self, request: &TokenRequest, kid: &str) -> Result<String, IssuerError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: &request.subject,
            iss: &request.issuer,
            aud: &request.audience,
            iat: now,
            exp: now.saturating_add(request.ttl_secs),
            role: request.role.as_deref(),
        };
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// A fresh key pair in a directory of its own under the system's temporary
/// directory, removed when this is dropped: what tests and the benchmarks'
/// in-process services trust (`AUTH_JWKS_PATH`).
#[derive(Debug)]
pub struct TempKeys {
    issuer: Issuer,
    dir: PathBuf,
}

impl TempKeys {
    /// A new key, written out.
    pub fn new() -> Result<Self, IssuerError> {
        let dir = std::env::temp_dir().join(format!("ticketing-keys-{}", Uuid::new_v4()));
        let (issuer, _) = Issuer::load_or_create(&dir)?;
        Ok(Self { issuer, dir })
    }

    /// The value of `AUTH_JWKS_PATH` for a service that trusts this key.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(JWKS_FILE)
    }

    /// The issuer, to mint tokens.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }
}

impl Drop for TempKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `sub`: a customer id, or an operator's name.
    pub subject: String,
    /// `role`, e.g. [`OPERATOR_ROLE`].
    pub role: Option<String>,
    /// `iss`, default [`DEV_ISSUER`].
    pub issuer: String,
    /// `aud`, default [`AUDIENCE`].
    pub audience: String,
    /// Seconds from now to `exp` (negative: already expired), default one
    /// hour.
    pub ttl_secs: i64,
}

impl TokenRequest {
    /// A customer's token, valid for an hour.
    pub fn customer(id: Uuid) -> Self {
        Self {
            subject: id.to_string(),
            role: None,
            issuer: DEV_ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            ttl_secs: 3600,
        }
    }

    /// An operator's token, valid for an hour.
    pub fn operator(name: &str) -> Self {
        Self {
            subject: name.to_owned(),
            role: Some(OPERATOR_ROLE.to_owned()),
            ..Self::customer(Uuid::nil())
        }
    }
}
