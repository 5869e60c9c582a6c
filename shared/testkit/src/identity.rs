//! A development identity provider for one test: a fresh Ed25519 key,
//! its public set in a temporary `jwks.json` for the service under test
//! (`AUTH_JWKS_PATH`), and tokens minted on demand.
//!
//! Every test makes its own key, so no key is shared, committed or
//! reused, and a token from one test's issuer means nothing to another's.

use std::path::{Path, PathBuf};

use httpkit::auth::dev::{Issuer, JWKS_FILE, TokenRequest};
use uuid::Uuid;

/// A key pair, its JWKS on disk, and a token mint.
pub struct TestIdentity {
    issuer: Issuer,
    dir: PathBuf,
}

impl TestIdentity {
    /// A new key, written to a directory of its own under the system's
    /// temporary directory.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ticketing-keys-{}", Uuid::new_v4()));
        let (issuer, _) = Issuer::load_or_create(&dir).expect("write a test key pair");
        Self { issuer, dir }
    }

    /// The value of `AUTH_JWKS_PATH` for a service that trusts this issuer.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(JWKS_FILE)
    }

    /// The directory that holds `signing.pem` and `jwks.json`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A customer's bearer token, valid for an hour.
    pub fn customer(&self, id: Uuid) -> String {
        self.mint(&TokenRequest::customer(id))
    }

    /// An operator's bearer token, valid for an hour.
    pub fn operator(&self) -> String {
        self.mint(&TokenRequest::operator("test-operator"))
    }

    /// A token for any claims (expired, another audience…).
    pub fn mint(&self, request: &TokenRequest) -> String {
        self.issuer.mint(request).expect("sign a test token")
    }

    /// The issuer itself.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }
}

impl Default for TestIdentity {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestIdentity {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
