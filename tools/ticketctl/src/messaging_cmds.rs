//! `ticketctl dlq …` and `ticketctl consumers lag`: the dead letters and
//! the backlog of every durable consumer.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use consumer::dlq;
use futures::TryStreamExt as _;
use messaging::{StreamKind, Topology};

/// Where NATS is and which names to use.
#[derive(Debug, Args)]
pub(crate) struct Nats {
    /// NATS with JetStream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Prefix of stream and subject names.
    #[arg(long, env = "NATS_PREFIX", default_value = "")]
    nats_prefix: String,
}

impl Nats {
    pub(crate) async fn connect(
        &self,
    ) -> anyhow::Result<(async_nats::jetstream::Context, Topology)> {
        let url = settings::SecretUrl::new(&self.nats_url);
        let (address, options) = messaging::options_for(&url)?;
        let client = options
            .connection_timeout(std::time::Duration::from_secs(3))
            .connect(address)
            .await
            .with_context(|| format!("cannot reach NATS at {url}"))?;
        let topology = Topology::new(&self.nats_prefix).map_err(anyhow::Error::msg)?;
        Ok((async_nats::jetstream::new(client), topology))
    }
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Dlq {
    /// One line per dead letter.
    List(Nats),
    /// A dead letter with its error and payload.
    Show {
        /// Its sequence in the `DEAD_LETTERS` stream (from `list`).
        sequence: u64,
        #[command(flatten)]
        nats: Nats,
    },
    /// Republish a dead letter to its original subject and remove it.
    Redrive {
        /// Its sequence in the `DEAD_LETTERS` stream (from `list`).
        sequence: u64,
        #[command(flatten)]
        nats: Nats,
    },
    /// Delete every dead letter.
    Purge(Nats),
}

/// Runs a dead-letter command.
pub(crate) async fn dlq(command: Dlq) -> anyhow::Result<()> {
    match command {
        Dlq::List(nats) => {
            let (js, topology) = nats.connect().await?;
            let letters = dlq::list(&js, &topology).await?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for l in letters {
                println!(
                    "{:>6}  {:<14} {:<16} {}  deliveries {}  {}",
                    l.sequence, l.consumer, l.event_type, l.event_id, l.delivery_count, l.error
                );
            }
        }
        Dlq::Show { sequence, nats } => {
            let (js, topology) = nats.connect().await?;
            let l = dlq::show(&js, &topology, sequence).await?;
            println!("sequence:   {}", l.sequence);
            println!("consumer:   {}", l.consumer);
            println!("error:      {}", l.error);
            println!("deliveries: {}", l.delivery_count);
            println!("subject:    {}", l.original_subject);
            println!("from:       {}", l.original_position);
            println!("event:      {} {}", l.event_type, l.event_id);
            println!("{}", String::from_utf8_lossy(&l.payload));
        }
        Dlq::Redrive { sequence, nats } => {
            let (js, topology) = nats.connect().await?;
            let new_sequence = dlq::redrive(&js, &topology, sequence).await?;
            println!(
                "dead letter {sequence} republished (stream sequence {new_sequence}) and removed"
            );
        }
        Dlq::Purge(nats) => {
            let (js, topology) = nats.connect().await?;
            println!("{} dead letters deleted", dlq::purge(&js, &topology).await?);
        }
    }
    Ok(())
}

/// `ticketctl consumers lag`: pending, in flight and redelivered per consumer.
pub(crate) async fn lag(nats: Nats) -> anyhow::Result<()> {
    let (js, topology) = nats.connect().await?;
    println!(
        "{:<20} {:<26} {:>9} {:>12} {:>12}",
        "stream", "consumer", "pending", "ack pending", "redelivered"
    );
    for kind in StreamKind::ALL {
        let Ok(stream) = js.get_stream(topology.stream(kind)).await else {
            continue;
        };
        let infos: Vec<_> = stream.consumers().try_collect().await?;
        for info in infos {
            println!(
                "{:<20} {:<26} {:>9} {:>12} {:>12}",
                info.stream_name,
                info.name,
                info.num_pending,
                info.num_ack_pending,
                info.num_redelivered
            );
        }
    }
    Ok(())
}
