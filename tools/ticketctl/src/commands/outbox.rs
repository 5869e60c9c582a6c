//! `ticketctl outbox status | unpark <event-id>`: look into a service's
//! outbox and put a parked row back in line once its cause is fixed.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use super::support::{connect_postgres, defaults};

/// Outbox commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Outbox {
    /// Backlog, age of the oldest waiting row, and the parked rows.
    Status(Target),
    /// Make a parked row publishable again.
    Unpark {
        /// The parked row's event id.
        event_id: Uuid,
        #[command(flatten)]
        target: Target,
    },
}

/// Which outbox.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The service whose outbox to read, through `<SERVICE>_DATABASE_URL`
    /// (each service's database has its own role: compose gives ticketctl
    /// all four URLs). Without it, `--database-url`.
    #[arg(long, value_enum)]
    service: Option<Service>,
    /// The service database that holds the outbox.
    #[arg(long, env = "DATABASE_URL", default_value = defaults::ORDERS_DATABASE)]
    database_url: String,
}

/// A service with an outbox.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Service {
    Orders,
    Inventory,
    Notification,
}

impl Target {
    fn url(&self) -> anyhow::Result<String> {
        let Some(service) = self.service else {
            return Ok(self.database_url.clone());
        };
        let name = match service {
            Service::Orders => "ORDERS_DATABASE_URL",
            Service::Inventory => "INVENTORY_DATABASE_URL",
            Service::Notification => "NOTIFICATION_DATABASE_URL",
        };
        std::env::var(name)
            .with_context(|| format!("--service {service:?} reads {name}, which is not set"))
    }

    async fn connect(&self) -> anyhow::Result<PgPool> {
        // One connection: each command is a query or two.
        connect_postgres(&self.url()?, 1).await
    }
}

/// Runs an outbox command.
pub(crate) async fn run(command: Outbox) -> anyhow::Result<()> {
    match command {
        Outbox::Status(target) => {
            let db = target.connect().await?;
            let backlog = relay::store::backlog(&db).await?;
            println!("waiting to be published: {}", backlog.pending);
            println!(
                "oldest waiting row:      {:.1} s",
                backlog.oldest_pending_secs
            );
            println!("parked:                  {}", backlog.parked);
            for row in relay::store::parked(&db, 50).await? {
                println!(
                    "  {} {} order {} v{} after {} attempts: {}",
                    row.event_id,
                    row.event_type,
                    row.aggregate_id,
                    row.aggregate_version,
                    row.attempts,
                    row.last_error.as_deref().unwrap_or("-"),
                );
            }
        }
        Outbox::Unpark { event_id, target } => {
            let db = target.connect().await?;
            if relay::store::unpark(&db, event_id).await? {
                println!("{event_id} is back in line; a relay publishes it on its next pass");
            } else {
                anyhow::bail!("no parked outbox row has event id {event_id}");
            }
        }
    }
    Ok(())
}
