//! Runs the notification service; configuration from the environment (see `notification::config`).

use std::process::ExitCode;

use notification::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_env(&settings::Env::from_process());
    httpkit::service::main(
        "notification",
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
