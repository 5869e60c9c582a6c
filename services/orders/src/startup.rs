//! Building the orders service: connect to Postgres (creating and
//! migrating the database on first start), make the inventory client, then
//! serve the order routes behind authentication and admission control, with
//! the idempotency-key sweeper and (unless switched off) the reaction to
//! inventory's answers in the background, and the stuck-saga gauges
//! measured at each scrape. Serving, readiness, metrics and stopping are
//! `service`'s.

use std::time::Duration;

use consumer::{Consumer, ConsumerSpec};
use httpkit::admission::AdmissionMetrics;
use messaging::StreamKind;
use service::{App, Builder, Service, StartupError};

use crate::Config;
use crate::http::{AppState, api};
use crate::inventory_client::InventoryClient;
use crate::reactions::{CONSUMER, InventoryReactions};

/// How often expired idempotency keys are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_mins(1);

/// The orders service.
pub struct Orders;

impl Service for Orders {
    const NAME: &'static str = "orders";
    type Config = Config;

    async fn build(config: Config, mut app: Builder) -> Result<App, StartupError> {
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let db = app.postgres(&config.database, &crate::MIGRATOR).await?;
        let inventory = InventoryClient::new(config.inventory_url.url(), config.inventory_timeout)
            .map_err(|e| StartupError::dependency("the inventory client cannot be built", e))?;
        if config.consume_inventory_events {
            react_to_inventory(&mut app, &config).await?;
        }
        let sweeper = db.clone();
        app.task(move |stop| crate::idempotency::run_sweeper(sweeper, SWEEP_INTERVAL, stop));
        let admission = AdmissionMetrics::default();
        admission.register(app.registry());
        crate::stuck::install(&mut app, db.clone(), config.paid_deadline);
        let state = AppState {
            db: db.clone(),
            idempotency_key_ttl: config.idempotency_key_ttl,
            outbox: outbox::Writer::with_notify(config.outbox_notify),
            inventory,
        };
        // The orders database, for tests that inspect or seed it.
        app.lend(db);
        app.serve(api(state, verifier, config.admission, &admission))
            .await
    }
}

/// Installs the consumer of inventory's answers to payments.
///
/// NATS only carries those answers, which wait in the stream while it is
/// away, so losing it degrades the instance rather than making it unready:
/// orders are still created, read, paid and cancelled.
async fn react_to_inventory(app: &mut Builder, config: &Config) -> Result<(), StartupError> {
    let db = app.postgres_for_consumers(&config.database).await?;
    let nats = messaging::connect(&config.nats.url, Orders::NAME).await?;
    let watched = nats.clone();
    app.degraded("nats", move || {
        let connected = messaging::check_connected(&watched);
        async move { connected }
    });
    let js = async_nats::jetstream::new(nats);
    let topology = &config.nats.topology;
    let mut consumers = consumer::Group::new(js.clone(), topology.clone());
    consumers.add(Consumer::new(
        ConsumerSpec::new(CONSUMER, StreamKind::InventoryEvents),
        db,
        js,
        topology.clone(),
        InventoryReactions {
            outbox: outbox::Writer::with_notify(config.outbox_notify),
        },
    ));
    consumers.install(app);
    Ok(())
}
