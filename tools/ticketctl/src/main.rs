//! `ticketctl`: the command line for operating and measuring the system.
//!
//! ```text
//! ticketctl bench relay [--events N] [--pays N] [--writers N] [--batch N]
//! ticketctl bench seatmap [--seats N] [--stampede N] [--requests N] [--concurrency N]
//! ticketctl outbox status [--service orders|inventory|notification]   # <SERVICE>_DATABASE_URL, else DATABASE_URL
//! ticketctl outbox unpark <event-id>
//! ticketctl consumers lag                 # NATS_URL, NATS_PREFIX
//! ticketctl dlq list | show <seq> | redrive <seq> | purge
//! ticketctl reporting rebuild             # REPORTING_DATABASE_URL
//! ticketctl keygen [--dir .keys]          # the development key pair
//! ticketctl token --customer <uuid> | --operator   # AUTH_SIGNING_KEY: a bearer token
//! ticketctl seed                          # INVENTORY_URL: the demo concerts (as an operator)
//! ticketctl demo                          # hold, order, pay; prints the trace id
//! ticketctl trace <trace-id>              # JAEGER_URL: the trace as a tree
//! ```
//!
//! Benchmarks print figures measured in the same run against the raw limit
//! of the server underneath (raw JetStream publish for the relay), and the
//! ratio between them; they never assert timings.

// A command-line tool reports on stdout.
#![allow(clippy::print_stdout)]

mod bench;
mod demo;
mod identity;
mod messaging_cmds;
mod outbox;
mod reporting_cmds;
mod seatmap_bench;

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
    /// Write the development key pair (signing.pem, jwks.json); keeps an existing one.
    Keygen(identity::KeygenArgs),
    /// Print a bearer token signed with the development key.
    Token(identity::TokenArgs),
    /// Create the demo concerts through inventory's API (idempotent).
    Seed(demo::SeedArgs),
    /// Hold two seats, order, pay, wait for CONFIRMED; print the trace id.
    Demo(demo::Endpoints),
    /// Print a trace from Jaeger as a tree.
    Trace(demo::TraceArgs),
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
        Command::Keygen(args) => identity::keygen(&args),
        Command::Token(args) => identity::token(&args),
        Command::Seed(args) => demo::seed(args).await,
        Command::Demo(endpoints) => demo::demo(endpoints).await,
        Command::Trace(args) => demo::trace(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ticketctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
