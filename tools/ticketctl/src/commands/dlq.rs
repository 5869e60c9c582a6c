//! `ticketctl dlq list | show <seq> | redrive <seq> | purge`: the dead
//! letters every consumer parks in the `DEAD_LETTERS` stream, and putting
//! one back on its original subject once its cause is fixed.

use clap::Subcommand;
use consumer::dlq;

use super::support::Nats;

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
pub(crate) async fn run(command: Dlq) -> anyhow::Result<()> {
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
