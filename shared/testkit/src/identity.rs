//! A development identity provider for one test: a fresh Ed25519 key,
//! its public set in a temporary `jwks.json` for the service under test
//! (`AUTH_JWKS_PATH`), and tokens minted on demand.
//!
//! Every test makes its own key, so no key is shared, committed or
//! reused, and a token from one test's issuer means nothing to another's.

use std::path::PathBuf;

use httpkit::auth::dev::{Issuer, TempKeys, TokenRequest};
use uuid::Uuid;

/// A key pair, its JWKS on disk, and a token mint.
pub struct TestIdentity {
    keys: TempKeys,
}

impl TestIdentity {
    /// A new key, written to a temporary directory of its own.
    pub fn new() -> Self {
        Self {
            keys: TempKeys::new().expect("write a test key pair"),
        }
    }

    /// The value of `AUTH_JWKS_PATH` for a service that trusts this issuer.
    pub fn jwks_path(&self) -> PathBuf {
        self.keys.jwks_path()
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
        self.issuer().mint(request).expect("sign a test token")
    }

    /// The issuer itself.
    pub fn issuer(&self) -> &Issuer {
        self.keys.issuer()
    }
}

impl Default for TestIdentity {
    fn default() -> Self {
        Self::new()
    }
}
