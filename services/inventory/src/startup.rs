//! Building the inventory service: connect Postgres (creating the database
//! on first start, migrating) and NATS, link Redis (in the background if it
//! is not there yet), then consume `ORDER_EVENTS`, listen for catalog
//! changes, warm the seat-map cache and serve the API. Serving, readiness,
//! metrics and stopping are `service`'s.

use consumer::{Consumer, ConsumerSpec};
use httpkit::admission::AdmissionMetrics;
use messaging::StreamKind;
use service::{App, Builder, StartupError};
use sqlx::PgPool;

use crate::Config;
use crate::allocation::{CONSUMER, SeatAllocation};
use crate::api::{AppState, api};
use crate::catalog::Catalog;
use crate::holds::Holds;
use crate::redis_link::RedisLink;
use crate::seat_map::SeatMaps;

/// The inventory service.
pub struct Inventory;

/// What a running inventory service lends to tests and `ticketctl`.
#[derive(Clone)]
pub struct Handles {
    /// The inventory database, to seed or inspect seats.
    pub db: PgPool,
    /// The seat maps of the running service, to count their database
    /// loads (`seat_maps.metrics()`) or to drive the cache directly.
    pub seat_maps: SeatMaps,
}

impl service::Service for Inventory {
    const NAME: &'static str = "inventory";
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
        let nats = app.nats(&config.nats_url).await?;
        // Only a URL that does not parse fails the start: an unreachable
        // Redis is linked in the background, and until then the service
        // serves without it (slower, holds refused) and says `degraded`.
        let redis = RedisLink::new(
            config.redis_url.expose(),
            &config.redis_prefix,
            config.redis_timeout,
        )
        .map_err(|e| StartupError::dependency("REDIS_URL is invalid", e))?;
        redis.connect().await;
        let ping = redis.clone();
        app.degraded("redis", move || {
            let redis = ping.clone();
            async move { redis.ping().await }
        });

        let seat_maps = SeatMaps::new(db.clone(), redis.clone(), config.seat_maps);
        seat_maps.metrics().register(app.registry());
        let warm = seat_maps.clone();
        app.task(move |stop| async move {
            // Serving does not wait for the warmup, and shutdown cuts it
            // short: a cold map is only slower, never wrong.
            tokio::select! {
                () = stop.cancelled() => {}
                warmed = warm.warmup(config.warmup_window) => if let Err(e) = warmed {
                    tracing::warn!(error = %e, "seat-map warmup failed; maps load on first use");
                },
            }
        });

        let catalog = Catalog::new(
            db.clone(),
            nats.clone(),
            config.topology.prefix(),
            config.catalog_ttl,
        );
        // Subscribed before the service serves, so that no change made
        // after it answers is missed.
        let changes = catalog
            .subscribe()
            .await
            .map_err(|e| StartupError::dependency("cannot subscribe to catalog changes", e))?;
        let listener = catalog.clone();
        app.task(move |stop| async move { listener.listen(changes, stop).await });

        let js = async_nats::jetstream::new(nats);
        let mut consumers = consumer::Group::new(js.clone(), config.topology.clone());
        consumers.add(Consumer::new(
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents),
            db.clone(),
            js,
            config.topology,
            SeatAllocation {
                outbox: outbox::Writer::with_notify(config.outbox_notify),
                seat_maps: Some(seat_maps.clone()),
            },
        ));
        consumers.install(&mut app);

        let admission = AdmissionMetrics::default();
        admission.register(app.registry());
        let state = AppState {
            catalog,
            seat_maps: seat_maps.clone(),
            holds: Holds::new(db.clone(), redis, config.hold_ttl, config.hold_limit),
            warmup_window: config.warmup_window,
        };
        let handles = Handles { db, seat_maps };
        app.serve(api(state, verifier, config.admission, &admission), handles)
            .await
    }
}
