//! Runs the orders service; configuration from the environment (see `orders::config`).

use std::process::ExitCode;

use orders::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_env(&settings::Env::from_process());
    httpkit::service::main(
        "orders",
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
