//! `ticketctl consumers lag`: the backlog of every durable consumer on
//! every stream, as JetStream counts it.

use clap::Subcommand;
use futures::TryStreamExt as _;
use messaging::StreamKind;

use super::support::Nats;

/// Consumer commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Consumers {
    /// Pending, in-flight and redelivered messages per consumer.
    Lag(Nats),
}

/// Runs a consumer command.
pub(crate) async fn run(command: Consumers) -> anyhow::Result<()> {
    let Consumers::Lag(nats) = command;
    lag(nats).await
}

/// Pending, in flight and redelivered per consumer.
async fn lag(nats: Nats) -> anyhow::Result<()> {
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
