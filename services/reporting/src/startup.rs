//! Building the reporting service: connect (creating the database on first
//! start), migrate, then project `ORDER_EVENTS` in the background and serve
//! reports. Serving, readiness, metrics and stopping are `service`'s.

use consumer::{Consumer, ConsumerSpec};
use messaging::StreamKind;
use service::{App, Builder, StartupError};

use crate::Config;
use crate::http::{HttpState, api};
use crate::projection::{CONSUMER, LiveProjection};

/// The reporting service.
pub struct Reporting;

impl service::Service for Reporting {
    const NAME: &'static str = "reporting";
    type Config = Config;

    async fn build(config: Config, mut app: Builder) -> Result<App, StartupError> {
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let db = app.postgres(&config.database, &crate::MIGRATOR).await?;
        let consumer_db = app.postgres_for_consumers(&config.database).await?;
        let js = async_nats::jetstream::new(app.nats(&config.nats).await?);
        let topology = config.nats.topology;
        let mut consumers = consumer::Group::new(js.clone(), topology.clone());
        consumers.add(Consumer::new(
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents),
            consumer_db,
            js.clone(),
            topology.clone(),
            LiveProjection,
        ));
        consumers.install(&mut app);
        let sweeper = db.clone();
        app.task(move |stop| crate::rebuild::run_counted_sweeper(sweeper, stop));
        // What a rebuild needs (`ticketctl reporting rebuild`, the tests).
        app.lend(db.clone());
        app.lend(js);
        app.lend(topology);
        app.serve(api(HttpState { db }, verifier)).await
    }
}
