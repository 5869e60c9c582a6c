//! HTTP plumbing every service shares, so each service's `http` module is
//! only about its own resources.
//!
//! - [`problem`]: RFC 9457 `application/problem+json` errors with a stable
//!   `type` per error;
//! - [`json`]: a strict JSON body extractor that names the offending field;
//! - [`layers`]: tracing that continues the caller's trace, request
//!   timeouts and panics answered as problems, never as hung connections;
//! - [`admission`]: per-client rate limit and load shedding in front of
//!   the API routes, answered 429/503 at once, never queued;
//! - [`auth`]: verified identity from bearer tokens (JWT, JWKS), customer
//!   and operator extractors, and the development issuer;
//! - [`health`]: `/healthz` and `/readyz` (with optional dependencies that
//!   only degrade);
//! - [`docs`]: the service's `OpenAPI` document at `/openapi.json` and a
//!   self-contained page that renders it at `/docs`;
//! - [`serve`]: the HTTP server, with a header-read timeout, an idle
//!   limit and a connection cap;
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token.
//!
//! The shape of a whole service (its `main`, operational routes, metrics
//! and stopping) is the `service` crate's, built on these.

#![warn(missing_docs)]

pub mod admission;
pub mod auth;
pub mod docs;
pub mod health;
pub mod json;
pub mod layers;
pub mod problem;
pub mod serve;
pub mod shutdown;

pub use json::StrictJson;
pub use problem::Problem;
