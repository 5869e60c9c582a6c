//! Runs the relay for one source database; see `relay::Config`.

use std::process::ExitCode;

use relay::{Application, Config};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env(&settings::Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("relay: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("relay: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?config, "starting relay");

    let code = match Application::build(config).await {
        Ok(app) => {
            let shutdown = CancellationToken::new();
            httpkit::shutdown::cancel_on_signal(shutdown.clone());
            match app.run_until_stopped(shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %httpkit::problem::ErrorChain(&e), "relay failed");
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
