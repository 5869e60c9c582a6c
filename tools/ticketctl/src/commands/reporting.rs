//! `ticketctl reporting rebuild [--accept-partial-history]`: replay
//! `ORDER_EVENTS` into a fresh read model and swap it in, with a progress
//! bar; refused when the stream no longer holds its whole history, unless
//! the flag accepts that.

use clap::{Args, Subcommand};

use super::support::{Nats, connect_postgres, defaults};

/// Reporting commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Reporting {
    /// Rebuild the sales read model from the start of the stream (refused if
    /// the stream has lost messages, unless `--accept-partial-history`).
    Rebuild(RebuildArgs),
}

/// Where the reporting database and NATS are.
#[derive(Debug, Args)]
pub(crate) struct RebuildArgs {
    /// The reporting database.
    #[arg(long, env = "REPORTING_DATABASE_URL", default_value = defaults::REPORTING_DATABASE)]
    database_url: String,
    #[command(flatten)]
    nats: Nats,
    /// Rebuild even if `ORDER_EVENTS` has lost messages (expired after 7
    /// days, purged or deleted): the totals then leave their events out.
    /// Without it, such a rebuild is refused and nothing changes.
    #[arg(long)]
    accept_partial_history: bool,
}

/// Runs a reporting command.
pub(crate) async fn run(command: Reporting) -> anyhow::Result<()> {
    let Reporting::Rebuild(args) = command;
    let db = connect_postgres(&args.database_url, 2).await?;
    let (js, topology) = args.nats.connect().await?;
    // indicatif draws only on a terminal; in a pipe or a CI log the bar
    // stays silent and the summary line below says what happened.
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "replaying {bar:30} {pos}/{len} messages, {per_sec}, eta {eta}",
        )
        .map_err(anyhow::Error::msg)?,
    );
    let options = reporting::rebuild::RebuildOptions {
        accept_partial_history: args.accept_partial_history,
    };
    let report = reporting::rebuild::rebuild_with(&db, &js, &topology, options, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "generation {} is active: {} messages replayed, {} more caught up after the swap",
        report.generation, report.replayed, report.caught_up
    );
    Ok(())
}
