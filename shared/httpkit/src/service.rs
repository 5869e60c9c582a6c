//! The `main` every service shares: configuration → telemetry → build →
//! run until SIGTERM/SIGINT → flush telemetry, with exit codes that tell a
//! supervisor what happened (2: bad configuration, 1: failed, 0: stopped).

use std::future::Future;
use std::process::ExitCode;

use settings::ConfigError;
use telemetry::TelemetryConfig;
use tokio_util::sync::CancellationToken;

/// Any error a service's build or run returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs service `name`: `config` as read from the environment, `telemetry`
/// picks its telemetry settings, `run` builds the service and runs it until
/// the token is cancelled by a shutdown signal.
pub async fn main<C, Run, Fut>(
    name: &str,
    config: Result<C, ConfigError>,
    telemetry: fn(&C) -> &TelemetryConfig,
    run: Run,
) -> ExitCode
where
    C: std::fmt::Debug,
    Run: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let installed = match telemetry::init(telemetry(&config)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    // Secrets are redacted by their types (`SecretUrl`).
    tracing::info!(?config, "starting {name}");
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signal(shutdown.clone());
    let code = match run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %crate::problem::ErrorChain(&*e), "{name} failed");
            ExitCode::FAILURE
        }
    };
    installed.shutdown();
    code
}
