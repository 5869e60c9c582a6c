//! Building the notification service: connect (creating the database on
//! first start), migrate, then run the translator and `WORKERS` senders in
//! the background. It has no business API; serving the operational routes,
//! readiness (Postgres, NATS), metrics (both consumers' counts and lag, the
//! senders summed as one durable) and stopping are `service`'s.

use std::sync::Arc;

use consumer::{Consumer, ConsumerSpec};
use messaging::StreamKind;
use service::{App, Builder, StartupError};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::commands::{self, EmailRequests};
use crate::mail::Mailer;
use crate::worker::{self, Sender};

/// The notification service.
pub struct Notification;

/// The notification service's `OpenAPI` document: its title only, as it
/// has no business API; `service` adds the operational routes.
#[derive(OpenApi)]
#[openapi(info(
    title = "Notification service",
    description = "Health and metrics of the notification service, which turns order \
        events into `SendEmail` commands on a work queue and sends them. It has no business \
        API.",
))]
pub struct ApiDoc;

impl service::Service for Notification {
    const NAME: &'static str = "notification";
    type Config = Config;

    async fn build(config: Config, mut app: Builder) -> Result<App, StartupError> {
        let db = app.postgres(&config.database, &crate::MIGRATOR).await?;
        let consumer_db = app.postgres_for_consumers(&config.database).await?;
        let js = async_nats::jetstream::new(app.nats(&config.nats).await?);
        let topology = &config.nats.topology;
        let mut consumers = consumer::Group::new(js.clone(), topology.clone());
        consumers.add(Consumer::new(
            ConsumerSpec::new(commands::CONSUMER, StreamKind::OrderEvents),
            consumer_db.clone(),
            js.clone(),
            topology.clone(),
            EmailRequests {
                outbox: outbox::Writer::with_notify(true),
            },
        ));
        // One mailer for all senders: the provider's rate is theirs together.
        let mailer = Arc::new(Mailer::new(
            &config.provider,
            &config.from,
            config.rate_per_second,
            config.fail_share,
        ));
        mailer.register(app.registry());
        let sender_spec = ConsumerSpec {
            max_deliver: config.worker_max_deliver,
            retry_delays: (0..4)
                .map(|n| config.worker_retry_delay * 2_u32.pow(n))
                .collect(),
            // The workers below are this durable's parallelism: lanes in
            // each would only multiply the connections they hold.
            lanes: 1,
            ..ConsumerSpec::new(worker::CONSUMER, StreamKind::NotifyCommands)
        };
        // Instances of one durable: the group sums them in `/metrics`.
        for _ in 0..config.workers.max(1) {
            consumers.add(Consumer::new(
                sender_spec.clone(),
                consumer_db.clone(),
                js.clone(),
                topology.clone(),
                Sender {
                    mailer: mailer.clone(),
                },
            ));
        }
        consumers.install(&mut app);
        // The `notifications` rows and the outbox, for tests.
        app.lend(db);
        app.serve(OpenApiRouter::with_openapi(ApiDoc::openapi()))
            .await
    }
}
