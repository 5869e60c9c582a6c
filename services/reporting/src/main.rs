//! Runs the reporting service with configuration from the
//! environment (see `Config::from_env`).

use std::process::ExitCode;

use reporting::{Application, Config};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env(&settings::Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("reporting: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reporting: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?config, "starting reporting");

    let code = match Application::build(config).await {
        Ok(app) => {
            let shutdown = CancellationToken::new();
            httpkit::shutdown::cancel_on_signal(shutdown.clone());
            match app.run_until_stopped(shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %httpkit::problem::ErrorChain(&e), "server failed");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %httpkit::problem::ErrorChain(&e), "cannot start");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
