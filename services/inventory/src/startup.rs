//! Building the inventory service: connect Postgres (creating the database
//! on first start, migrating) and NATS, link Redis (in the background if it
//! is not there yet), then consume `ORDER_EVENTS`, listen for catalog
//! changes, warm the seat-map cache and serve the API. Serving, readiness,
//! metrics and stopping are `service`'s.

use consumer::{Consumer, ConsumerSpec};
use contracts::Event as _;
use contracts::orders::OrderPaid;
use httpkit::admission::AdmissionMetrics;
use messaging::StreamKind;
use service::{App, Builder, StartupError};

use crate::Config;
use crate::allocation::{CONSUMER, SeatAllocation};
use crate::api::{AppState, api};
use crate::catalog::Catalog;
use crate::holds::Holds;
use crate::redis_link::RedisLink;
use crate::seat_map::SeatMaps;

/// The inventory service.
pub struct Inventory;

impl service::Service for Inventory {
    const NAME: &'static str = "inventory";
    type Config = Config;

    async fn build(config: Config, mut app: Builder) -> Result<App, StartupError> {
        let verifier = httpkit::auth::Verifier::load(&config.auth).await?;
        let db = app.postgres(&config.database, &crate::MIGRATOR).await?;
        let consumer_db = app.postgres_for_consumers(&config.database).await?;
        let nats = app.nats(&config.nats).await?;
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

        let hot = seat_maps.clone();
        app.task(move |stop| crate::seat_map::opening::keep_openings_hot(hot, stop));

        let catalog = Catalog::new(
            db.clone(),
            nats.clone(),
            config.nats.topology.prefix(),
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
        let mut consumers = consumer::Group::new(js.clone(), config.nats.topology.clone());
        consumers.add(Consumer::new(
            // Only `OrderPaid`: an order is paid once, so no order among
            // the deliveries needs keeping (`ConsumerSpec::only`), and the
            // server skips the order's other events.
            ConsumerSpec::new(CONSUMER, StreamKind::OrderEvents).only(OrderPaid::SUBJECT),
            consumer_db,
            js,
            config.nats.topology,
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
        // For tests and the benchmark: to seed or inspect seats, and to
        // count the seat maps' database loads.
        app.lend(db);
        app.lend(seat_maps);
        app.serve(api(state, verifier, config.admission, &admission))
            .await
    }
}
