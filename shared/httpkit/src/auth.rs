//! Verified identity: who is calling, taken from a signed token and from
//! nothing the client may choose.
//!
//! Every customer or operator call carries `Authorization: Bearer <JWT>`.
//! [`Verifier`] checks it against the identity provider's public keys (a
//! JWKS, from a file or a URL):
//!
//! - the signature, with the one algorithm this system accepts (`EdDSA`,
//!   Ed25519), pinned here and never read from the token's header, so
//!   `alg: none` or an HMAC token signed with the public key is refused;
//! - `iss` and `aud` against the configured issuer and audience;
//! - `exp`, with a small leeway (`AUTH_LEEWAY`, 30 s) for clock skew;
//! - the key: the header's `kid` must name a key in the JWKS.
//!
//! The caller is the token's `sub`. A customer's `sub` is their customer
//! id (a UUID); an operator's token carries `role: operator`.
//!
//! # Wiring
//!
//! [`authenticate`] runs in front of the API routes (and in front of
//! admission control, so that the rate limit can key on the verified
//! caller): a request with a valid token gets its [`Identity`] in the
//! request's extensions; a request with a bad token is answered 401 at
//! once; a request without a token goes on anonymous, for the routes that
//! allow it (the seat map, the catalog). Handlers say who they need by
//! their arguments: [`Customer`] (401 without a token, 403 for a token
//! that is not a customer's) or [`Operator`] (401, or 403 without the
//! role). The route's `OpenAPI` entry declares the `bearer` scheme
//! ([`BearerScheme`]).
//!
//! Services calling services: orders passes the customer's own token on to
//! inventory ([`Identity::bearer`]), so inventory verifies the same
//! customer and charges the same rate limit, and there is no header that a
//! client could forge.
//!
//! # Keys
//!
//! `AUTH_JWKS_PATH` (a JWKS file) or `AUTH_JWKS_URL` (an identity
//! provider's JWKS endpoint, over plain HTTP in this build). A URL is
//! fetched at start and again when a token names a `kid` the set does not
//! have (key rotation), at most once per [`REFRESH_INTERVAL`]. The
//! development issuer in [`dev`] makes a key pair and mints tokens; its
//! private key never leaves the machine that generated it.

pub mod dev;
mod verify;

use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use uuid::Uuid;

pub use verify::{AuthConfig, CACHE_TTL, KeySource, KeysError, REFRESH_INTERVAL, Verifier};

use crate::Problem;

/// The issuer the development tokens carry, and the default `AUTH_ISSUER`.
pub const DEV_ISSUER: &str = "ticketing-dev";
/// The audience every token for this system's APIs carries, and the
/// default `AUTH_AUDIENCE`.
pub const AUDIENCE: &str = "ticketing";
/// The role that may manage concerts and run operational routes.
pub const OPERATOR_ROLE: &str = "operator";

/// A verified caller.
#[derive(Clone)]
pub struct Identity {
    /// The token's `sub`.
    pub subject: String,
    /// The token's `role`, if any.
    pub role: Option<String>,
    token: Arc<str>,
}

impl fmt::Debug for Identity {
    // The token is a credential: it never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity that [`Verifier::verify`] has checked (or, in the
    /// admission tests, stands in for one).
    pub(crate) fn verified(subject: &str, role: Option<&str>, token: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            role: role.map(str::to_owned),
            token: Arc::from(token),
        }
    }

    /// Whether the caller has `role: operator`.
    pub fn is_operator(&self) -> bool {
        self.role.as_deref() == Some(OPERATOR_ROLE)
    }

    /// The token itself, to call another service on the caller's behalf
    /// (`Authorization: Bearer …`).
    pub fn bearer(&self) -> &str {
        &self.token
    }
}

/// Why a request is refused: 401 (no or bad credential) or 403 (a good
/// credential without the right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that does not verify; the reason is safe to show.
    Invalid(String),
    /// A verified caller without the right to this route.
    Forbidden(&'static str),
}

impl Rejection {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (problem, challenge) = match self {
            Self::Missing => (
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Sign in first")
                    .detail("send Authorization: Bearer <token>"),
                r#"Bearer realm="ticketing""#.to_owned(),
            ),
            Self::Invalid(reason) => {
                let challenge = format!(
                    r#"Bearer realm="ticketing", error="invalid_token", error_description="{}""#,
                    reason.replace(['"', '\\'], "'")
                );
                (
                    Problem::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "The credential is not valid",
                    )
                    .detail(reason),
                    challenge,
                )
            }
            Self::Forbidden(reason) => {
                return Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
                    .detail(reason)
                    .into_response();
            }
        };
        let mut response = problem.into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// Middleware: verifies a bearer token when there is one, and puts the
/// caller's [`Identity`] in the request's extensions; answers 401 for a
/// token that does not verify. Requests without a token pass, anonymous.
///
/// Use with `axum::middleware::from_fn_with_state(verifier, authenticate)`.
pub async fn authenticate(
    State(verifier): State<Verifier>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return next.run(request).await;
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return Rejection::invalid("expected Authorization: Bearer <token>").into_response();
    };
    match verifier.verify(token).await {
        Ok(identity) => {
            tracing::Span::current().record("enduser.id", identity.subject.as_str());
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(rejection) => {
            tracing::debug!(?rejection, "bearer token refused");
            rejection.into_response()
        }
    }
}

/// A verified customer: the token's `sub`, which must be a customer id
/// (a UUID). 401 without a token; 403 for a token whose `sub` is not a
/// customer (an operator's, say).
#[derive(Debug, Clone)]
pub struct Customer {
    /// The customer's id.
    pub id: Uuid,
    /// The whole identity, to call another service on their behalf.
    pub identity: Identity,
}

/// Any verified caller: 401 without a token ([`authenticate`] has already
/// answered a bad one).
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or(Rejection::Missing)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Customer {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let identity = Identity::from_request_parts(parts, state).await?;
        let id = Uuid::parse_str(&identity.subject)
            .map_err(|_| Rejection::Forbidden("this route is for customers"))?;
        Ok(Self { id, identity })
    }
}

/// A verified operator (`role: operator`). 401 without a token; 403
/// without the role.
#[derive(Debug, Clone)]
pub struct Operator(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let identity = Identity::from_request_parts(parts, state).await?;
        if identity.is_operator() {
            Ok(Self(identity))
        } else {
            Err(Rejection::Forbidden("this route needs the operator role"))
        }
    }
}

/// The 401 of every route that needs a token, for its `OpenAPI` entry.
pub const UNAUTHENTICATED: &str = "`/problems/unauthenticated`: no bearer token, or one \
    that does not verify (expired, another audience or issuer, an unknown key, a bad \
    signature); `WWW-Authenticate` says which.";

/// The 403 of the operators' routes.
pub const NOT_OPERATOR: &str = "`/problems/forbidden`: the token has no `role: operator`.";

/// The 403 of the customers' routes.
pub const NOT_CUSTOMER: &str =
    "`/problems/forbidden`: the token is not a customer's (its `sub` is not a customer id).";

/// Adds the `bearer` security scheme to an `OpenAPI` document; routes
/// that need a token say `security(("bearer" = []))`.
#[derive(Debug, Clone, Copy)]
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT signed with EdDSA by the identity provider: `sub` is the \
                         customer id, `role: operator` marks an operator.",
                    ))
                    .build(),
            ),
        );
    }
}
