//! `ticketctl`: the command line for operating and measuring the system.
//!
//! ```text
//! ticketctl bench relay [--events N] [--pays N] [--writers N] [--batch N]
//! ticketctl outbox status                 # DATABASE_URL: the service database
//! ticketctl outbox unpark <event-id>
//! ticketctl consumers lag                 # NATS_URL, NATS_PREFIX
//! ticketctl dlq list | show <seq> | redrive <seq> | purge
//! ticketctl reporting rebuild             # DATABASE_URL: the reporting database
//! ```
//!
//! Benchmarks print figures measured in the same run against the raw limit
//! of the server underneath (raw JetStream publish for the relay), and the
//! ratio between them; they never assert timings.

// A command-line tool reports on stdout.
#![allow(clippy::print_stdout)]

mod bench;
mod messaging_cmds;
mod outbox;
mod reporting_cmds;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ticketctl",
    version,
    about = "Operate and measure the ticketing system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure throughput against the raw limits of the servers.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// Inspect a service's outbox and unpark rows.
    Outbox {
        #[command(subcommand)]
        command: outbox::Outbox,
    },
    /// Durable consumers.
    Consumers {
        #[command(subcommand)]
        command: Consumers,
    },
    /// Dead letters: list, show, redrive, purge.
    Dlq {
        #[command(subcommand)]
        command: messaging_cmds::Dlq,
    },
    /// The reporting read model.
    Reporting {
        #[command(subcommand)]
        command: reporting_cmds::Reporting,
    },
}

#[derive(Debug, Subcommand)]
enum Consumers {
    /// Pending, in-flight and redelivered messages per consumer.
    Lag(messaging_cmds::Nats),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench { what } => bench::run(what).await,
        Command::Outbox { command } => outbox::run(command).await,
        Command::Consumers {
            command: Consumers::Lag(nats),
        } => messaging_cmds::lag(nats).await,
        Command::Dlq { command } => messaging_cmds::dlq(command).await,
        Command::Reporting { command } => reporting_cmds::run(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ticketctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
