//! Runs the inventory service; configuration from the environment (see `inventory::config`).

use std::process::ExitCode;

use inventory::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_env(&settings::Env::from_process());
    httpkit::service::main(
        "inventory",
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
