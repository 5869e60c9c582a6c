//! Runs the relay for one source database; configuration from the environment (see `relay::config`).

use std::process::ExitCode;

use relay::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_env(&settings::Env::from_process());
    httpkit::service::main(
        "relay",
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
