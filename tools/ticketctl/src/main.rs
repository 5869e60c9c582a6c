//! `ticketctl`: the command line for operating and measuring the system.
//!
//! ```text
//! ticketctl load --rate 100 --duration 60s [--fault 20s:kill:inventory] [--chaos 10s] [--json]
//! ticketctl bench relay [--events N] [--pays N] [--writers N] [--batch N]
//! ticketctl bench seatmap [--seats N] [--stampede N] [--requests N] [--concurrency N]
//! ticketctl outbox status [--service orders|inventory|notification]   # <SERVICE>_DATABASE_URL, else DATABASE_URL
//! ticketctl outbox unpark <event-id>
//! ticketctl consumers lag                 # NATS_URL, NATS_PREFIX
//! ticketctl dlq list | show <seq> | redrive <seq> | purge
//! ticketctl orders stuck [--older-than 5m]  # ORDERS_DATABASE_URL; exit 3 when some are stuck
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
//!
//! This file is the command tree and the dispatch only; each command is a
//! module of the same name under [`commands`].

// A command-line tool reports on stdout.
#![allow(clippy::print_stdout)]

mod commands;

use clap::{Parser, Subcommand};

use commands::{
    NeedsAttention, bench, consumers, demo, dlq, keygen, load, orders, outbox, reporting, seed,
    token, trace,
};

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
    /// A sale under load and faults: invariant report and end-to-end latency.
    Load(Box<load::LoadArgs>),
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
        command: consumers::Consumers,
    },
    /// Dead letters: list, show, redrive, purge.
    Dlq {
        #[command(subcommand)]
        command: dlq::Dlq,
    },
    /// Orders whose saga is stuck.
    Orders {
        #[command(subcommand)]
        command: orders::Orders,
    },
    /// The reporting read model.
    Reporting {
        #[command(subcommand)]
        command: reporting::Reporting,
    },
    /// Write the development key pair (signing.pem, jwks.json); keeps an existing one.
    Keygen(keygen::KeygenArgs),
    /// Print a bearer token signed with the development key.
    Token(token::TokenArgs),
    /// Create the demo concerts through inventory's API (idempotent).
    Seed(seed::SeedArgs),
    /// Hold two seats, order, pay, wait for CONFIRMED; print the trace id.
    Demo(demo::Endpoints),
    /// Print a trace from Jaeger as a tree.
    Trace(trace::TraceArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => load::run(*args).await,
        Command::Bench { what } => bench::run(what).await,
        Command::Outbox { command } => outbox::run(command).await,
        Command::Consumers { command } => consumers::run(command).await,
        Command::Dlq { command } => dlq::run(command).await,
        Command::Orders { command } => orders::run(command).await,
        Command::Reporting { command } => reporting::run(command).await,
        Command::Keygen(args) => keygen::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Seed(args) => seed::run(args).await,
        Command::Demo(endpoints) => demo::run(endpoints).await,
        Command::Trace(args) => trace::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<NeedsAttention>() => {
            eprintln!("ticketctl: {e}");
            std::process::ExitCode::from(NeedsAttention::EXIT_CODE)
        }
        Err(e) => {
            eprintln!("ticketctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
