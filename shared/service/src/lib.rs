//! The shape every service shares, written once.
//!
//! A service says what is its own and nothing else:
//!
//! - its configuration ([`Service::Config`], read by [`Service::config`]),
//!   which embeds the common [`HttpConfig`] (listen address, request
//!   timeout, body limit, header-read timeout, connection cap);
//! - what it builds ([`Service::build`]): its connections, its background
//!   tasks, its metrics and its API routes, handed to a [`Builder`].
//!
//! This crate does the rest, the same way for all five services:
//!
//! - [`main!`] / [`run`]: configuration → telemetry → build → serve until
//!   SIGTERM/SIGINT → drain → flush telemetry, with exit codes a supervisor
//!   understands (2: bad configuration, 1: failed, 0: stopped);
//! - [`StartupError`]: why a service could not start, naming the dependency;
//! - [`Builder`]: Postgres (connect, create, migrate, close at stop), NATS,
//!   readiness checks, background tasks, metrics; then binds;
//! - the operational routes ([`ops`]): `/healthz`, `/readyz` built from
//!   the declared checks, `/metrics`, `/openapi.json` and `/docs`;
//! - [`metrics`]: one Prometheus registry per service, with RED metrics
//!   (requests by route and status, a latency histogram) for every route;
//! - [`App::run_until_stopped`]: serve, cancel the tasks on shutdown, wait
//!   for them, close the pools.
//!
//! The API document comes from the router: a service mounts its routes
//! with `utoipa_axum::routes!`, which documents each route as it mounts
//! it, so a route cannot be served without being described. The workspace's
//! `clippy.toml` forbids the undocumented ways to mount one.
//!
//! Why a trait and a builder rather than a framework: each service's
//! `build` still reads top to bottom as "connect, make the parts, wire
//! them", which is what a reader copies; only the plumbing between is here.

#![warn(missing_docs)]

mod app;
mod builder;
mod config;
mod error;
pub mod metrics;
pub mod ops;

use std::fmt;
use std::future::Future;
use std::process::ExitCode;

use settings::{ConfigError, Env};
use telemetry::TelemetryConfig;
use tokio_util::sync::CancellationToken;

pub use app::App;
pub use builder::Builder;
pub use config::HttpConfig;
pub use error::StartupError;

/// One deployable service.
pub trait Service: 'static {
    /// Its name in logs, traces, metrics and client names (`inventory`).
    const NAME: &'static str;
    /// Everything it reads from the environment.
    type Config: fmt::Debug + Send + 'static;
    /// What a built service lends to tests and tools (a pool, a cache);
    /// `()` for none.
    type Handles: Clone + Send + Sync + 'static;

    /// Reads the configuration; a bad value is an error naming its variable.
    fn config(env: &Env) -> Result<Self::Config, ConfigError>;

    /// Where in the configuration logging and tracing are set.
    fn telemetry(config: &Self::Config) -> &TelemetryConfig;

    /// Connects, builds the parts and binds; [`App::run_until_stopped`]
    /// runs the result.
    fn build(
        config: Self::Config,
    ) -> impl Future<Output = Result<App<Self::Handles>, StartupError>> + Send;
}

/// A service's whole `main`: `service::main!(inventory::Inventory);`.
#[macro_export]
macro_rules! main {
    ($service:ty) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run::<$service>()
        }
    };
}

/// Runs service `S` on a multi-threaded runtime until a shutdown signal;
/// the exit code says how it ended (see the crate docs).
pub fn run<S: Service>() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{}: cannot start the runtime: {e}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_async::<S>(S::config(&Env::from_process())))
}

async fn run_async<S: Service>(config: Result<S::Config, ConfigError>) -> ExitCode {
    let name = S::NAME;
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let installed = match telemetry::init(S::telemetry(&config)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    // Secrets are redacted by their types (`SecretUrl`).
    tracing::info!(?config, "starting {name}");
    let shutdown = CancellationToken::new();
    httpkit::shutdown::cancel_on_signal(shutdown.clone());
    let outcome = match S::build(config).await {
        Ok(app) => app
            .run_until_stopped(shutdown)
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        Err(e) => Err(Box::new(e).into()),
    };
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %httpkit::problem::ErrorChain(&*e), "{name} failed");
            ExitCode::FAILURE
        }
    };
    installed.shutdown();
    code
}
