//! Building the reporting service: connect (creating the database on first
//! start), migrate, then project `ORDER_EVENTS` in the background and serve
//! reports. Serving, readiness, metrics and stopping are `service`'s.

use consumer::{Consumer, ConsumerSpec};
use messaging::StreamKind;
use service::{App, Builder, StartupError};
use sqlx::PgPool;

use crate::Config;
use crate::http::{HttpState, api};
use crate::projection::{CONSUMER, LiveProjection};

/// The reporting service.
pub struct Reporting;

/// What a running reporting service lends to tests and `ticketctl`: what a
/// rebuild needs.
#[derive(Clone)]
pub struct Handles {
    /// The reporting database.
    pub db: PgPool,
    /// JetStream, to replay the stream from.
    pub js: async_nats::jetstream::Context,
    /// Stream and consumer names.
    pub topology: messaging::Topology,
}

impl service::Service for Reporting {
    const NAME: &'static str = "reporting";
    type Config = Config;
    type Handles = Handles;

    fn config(env: &settings::Env) -> Result<Config, settings::ConfigError> {
        Config::from_env(env)
    }

    fn telemetry(config: &Config) -> &telemetry::TelemetryConfig {
        &config.telemetry
    }

    async fn build(config: Config) -> Result<App<Handles>, StartupError> {
        let mut app = Builder::new(Self::NAME, config.http);
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let db = app
            .postgres(&config.database_url, config.pool, &crate::MIGRATOR)
            .await?;
        let js = async_nats::jetstream::new(app.nats(&config.nats_url).await?);
        let mut consumers = consumer::Group::new(js.clone(), config.topology.clone());
        consumers.add(Consumer::new(
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents),
            db.clone(),
            js.clone(),
            config.topology.clone(),
            LiveProjection,
        ));
        consumers.install(&mut app);
        let handles = Handles {
            db: db.clone(),
            js,
            topology: config.topology,
        };
        app.serve(api(HttpState { db }, verifier), handles).await
    }
}
