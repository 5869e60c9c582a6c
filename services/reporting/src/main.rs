//! Runs the reporting service; configuration from the environment (see `reporting::config`).

use std::process::ExitCode;

use reporting::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_env(&settings::Env::from_process());
    httpkit::service::main(
        "reporting",
        config,
        |c| &c.telemetry,
        |config, shutdown| async move {
            Application::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await?;
            Ok(())
        },
    )
    .await
}
