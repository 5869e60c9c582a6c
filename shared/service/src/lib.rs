//! The shape every service shares, written once.
//!
//! A service says what is its own and nothing else:
//!
//! - its configuration ([`Service::Config`], a [`Configuration`] read from
//!   the environment), which embeds the common [`HttpConfig`] (listen
//!   address, request timeout, body limit, header-read timeout, connection
//!   cap);
//! - what it builds ([`Service::build`]): its connections, its background
//!   tasks, its metrics, what it lends to tests and tools, and its API
//!   routes, all handed to a [`Builder`].
//!
//! This crate does the rest, the same way for all five services:
//!
//! - [`main!`] / [`run`]: configuration and telemetry (`LOG_FORMAT`,
//!   `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`, read here for every service)
//!   → build → serve until
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
//! it, so a route mounted that way cannot be served without being
//! described. The workspace's `clippy.toml` forbids the plain ways of
//! mounting one (`route`, `route_service`, `nest_service`), and each
//! service's test runs [`ops::route_report`] on its router.
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

pub use app::{App, Serving};
pub use builder::Builder;
pub use config::HttpConfig;
pub use error::StartupError;

/// One deployable service.
pub trait Service: 'static {
    /// Its name in logs, traces, metrics and client names (`inventory`).
    const NAME: &'static str;
    /// Everything it reads from the environment.
    type Config: Configuration;

    /// Connects, builds the parts on `app` and serves them
    /// ([`Builder::serve`]); [`App::run_until_stopped`] runs the result.
    fn build(
        config: Self::Config,
        app: Builder,
    ) -> impl Future<Output = Result<App, StartupError>> + Send;
}

/// A service's configuration.
pub trait Configuration: fmt::Debug + Send + Sized + 'static {
    /// Reads it; a bad value is an error naming its variable.
    fn from_env(env: &Env) -> Result<Self, ConfigError>;

    /// Where and how it serves HTTP.
    fn http(&self) -> HttpConfig;
}

/// Builds service `S` from `env`, bound and ready to run: what [`run`]
/// does before serving, and what tests and tools call to start a service
/// in their own process.
pub async fn build<S: Service>(env: &Env) -> Result<App, BuildError> {
    let config = S::Config::from_env(env)?;
    let app = Builder::new(S::NAME, config.http());
    Ok(S::build(config, app).await?)
}

/// Why [`build`] failed: the configuration, or the start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A variable is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
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
    runtime.block_on(run_async::<S>(&Env::from_process()))
}

async fn run_async<S: Service>(env: &Env) -> ExitCode {
    let name = S::NAME;
    let read = S::Config::from_env(env)
        .and_then(|config| Ok((config, TelemetryConfig::from_env(name, env)?)));
    let (config, telemetry) = match read {
        Ok(read) => read,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let installed = match telemetry::init(&telemetry) {
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
    let app = Builder::new(name, config.http());
    let outcome = match S::build(config, app).await {
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
