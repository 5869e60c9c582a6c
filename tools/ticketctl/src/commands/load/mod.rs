//! `ticketctl load`: a concert sale under an open-loop arrival rate, with
//! faults injected while it runs, then an invariant report and the
//! end-to-end latency of every paid order, stage by stage.
//!
//! ```text
//! ticketctl load --rate 100 --duration 60s [--fault 20s:kill:inventory] [--chaos 10s] [--json]
//! ```
//!
//! 1. [`driver`] creates concerts and offers buyers at `--rate` a second,
//!    on a fixed schedule whatever the system answers (open loop: a slow
//!    system cannot slow the arrivals and so hide its latency). Each buyer
//!    plays one [`scenario`]: most hold and buy, many contend for a few hot
//!    seats, some abandon, some pay twice at once with two keys, some retry
//!    a pay with the same key as after a lost response. Everything goes
//!    through the public HTTP APIs with the buyer's own token.
//! 2. [`faults`] kills, restarts, flushes or pauses parts of the system at
//!    the times given (`--fault AT:ACTION`) or at random (`--chaos EVERY`),
//!    through `docker compose` or on processes started natively.
//! 3. [`invariants`] waits for the system to settle (within `--settle`) and
//!    checks what must hold whatever happened, through the APIs and
//!    read-only queries of each service's database.
//! 4. [`latency`] measures, for every paid order, from the payment's commit
//!    to each later stage, from timestamps the system recorded (not by
//!    polling), and [`report`] prints it all as text or JSON. The exit
//!    status is 3 ([`NeedsAttention`](super::NeedsAttention)) on any
//!    violation.

mod driver;
mod faults;
mod invariants;
mod latency;
mod report;
mod scenario;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use super::support::{Nats, SigningKey, defaults, duration};

/// The options of `ticketctl load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Buyers offered per second (open loop: on schedule, whatever the
    /// system answers).
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rate: f64,
    /// How long to offer load (e.g. `60s`); or `--orders`.
    #[arg(long, value_parser = duration, conflicts_with = "orders")]
    pub(crate) duration: Option<Duration>,
    /// How many buyers to offer in all; or `--duration`. Default: 30 s worth.
    #[arg(long)]
    pub(crate) orders: Option<u64>,
    /// Seats of each concert on sale.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) seats: u32,
    /// Buyers per concert: after this many the next buyers go to a new
    /// concert, so a long run keeps finding seats. Default: half of
    /// `--seats`.
    #[arg(long)]
    pub(crate) buyers_per_concert: Option<u64>,
    /// How many of them are "hot": the ones contending buyers all want.
    #[arg(long, default_value_t = 20)]
    pub(crate) hot_seats: u32,
    /// A fault at a time after the start, `AT:ACTION`, e.g.
    /// `20s:kill:inventory`, `45s:restart:nats`, `60s:flush:redis`,
    /// `80s:pause:orders:8s`; repeatable.
    #[arg(long = "fault")]
    pub(crate) faults: Vec<faults::Fault>,
    /// A fault injected by someone else during the load, `AT:WHAT`, e.g.
    /// `25s:kill -9 of nats-2 and one replica of each service` (what
    /// `scripts/cluster-smoke` does to replicas, which `--fault` cannot
    /// name); repeatable. Listed with the faults, and like them it
    /// excuses requests that got no answer.
    #[arg(long = "fault-outside", value_parser = fault_outside)]
    pub(crate) faults_outside: Vec<Injected>,
    /// Inject a random fault every this long (e.g. `10s`).
    #[arg(long, value_parser = duration)]
    pub(crate) chaos: Option<Duration>,
    /// How faults reach the system: `compose` (docker compose in the
    /// current directory) or `native` (the processes of `--native-dir`).
    #[arg(long, default_value = "compose")]
    pub(crate) backend: faults::Backend,
    #[command(flatten)]
    pub(crate) fault_options: faults::FaultOptions,
    /// How long the system may take to settle after the load before the
    /// checks count what has not settled as a violation.
    #[arg(long, value_parser = duration, default_value = "120s")]
    pub(crate) settle: Duration,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) targets: Targets,
}

/// Where the system is: the public APIs the buyers use, and the databases
/// and streams the checks read (read-only).
#[derive(Debug, Args)]
pub(crate) struct Targets {
    /// The orders API.
    #[arg(long = "orders-url", env = "ORDERS_URL", default_value = defaults::ORDERS_API)]
    pub(crate) orders_url: String,
    /// The inventory API.
    #[arg(long = "inventory-url", env = "INVENTORY_URL", default_value = defaults::INVENTORY_API)]
    pub(crate) inventory_url: String,
    /// The reporting API.
    #[arg(long = "reporting-url", env = "REPORTING_URL", default_value = defaults::REPORTING_API)]
    pub(crate) reporting_url: String,
    /// The orders database.
    #[arg(long, env = "ORDERS_DATABASE_URL", default_value = defaults::ORDERS_DATABASE)]
    pub(crate) orders_database_url: String,
    /// The inventory database.
    #[arg(long, env = "INVENTORY_DATABASE_URL", default_value = defaults::INVENTORY_DATABASE)]
    pub(crate) inventory_database_url: String,
    /// The reporting database.
    #[arg(long, env = "REPORTING_DATABASE_URL", default_value = defaults::REPORTING_DATABASE)]
    pub(crate) reporting_database_url: String,
    /// The notification database.
    #[arg(long, env = "NOTIFICATION_DATABASE_URL", default_value = defaults::NOTIFICATION_DATABASE)]
    pub(crate) notification_database_url: String,
    /// Mailpit's API, to count the e-mails that really went out (compose);
    /// without it (and without `--email-log`) the count comes from the
    /// notification database only, and the report says so.
    #[arg(long = "mailpit-url", env = "MAILPIT_URL")]
    pub(crate) mailpit_url: Option<String>,
    /// The log provider's file (`EMAIL_LOG_PATH` of notification), to
    /// count the e-mails that went out when running natively.
    #[arg(long = "email-log", env = "EMAIL_LOG_PATH")]
    pub(crate) email_log: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) nats: Nats,
    #[command(flatten)]
    pub(crate) key: SigningKey,
}

/// What the driver did and saw: the input of the checks and the report.
#[derive(Debug)]
pub(crate) struct Drive {
    /// The concerts on sale, in the order their buyers came.
    pub(crate) concerts: Vec<Uuid>,
    /// Seats of each, `A-1` …
    pub(crate) seats: u32,
    /// Buyers offered per second, and the rate at which they actually
    /// started (below the offer when the driver itself could not keep up).
    pub(crate) offered_rate: f64,
    pub(crate) achieved_rate: f64,
    /// From the first buyer's start to the last buyer's end.
    pub(crate) elapsed: Duration,
    /// Buyers per scenario.
    pub(crate) scenarios: BTreeMap<&'static str, u64>,
    /// Latency per route template (e.g. `POST /orders/{id}/pay`), in
    /// microseconds, measured from the request's *scheduled* start.
    pub(crate) http: BTreeMap<String, Histogram<u64>>,
    /// Answers per route and status.
    pub(crate) statuses: BTreeMap<(String, u16), u64>,
    /// Answers no fault excuses: a 5xx other than 503 with `Retry-After`,
    /// or a transport error outside a fault's window; one line each.
    pub(crate) violations: Vec<String>,
    /// Why requests got no answer (`route: error: cause`), the first few.
    pub(crate) transport_errors: Vec<String>,
    /// Orders whose pay was answered 200 at least once.
    pub(crate) paid: Vec<Uuid>,
}

/// The outcome of one invariant.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// What must hold, e.g. `no seat is sold twice`.
    pub(crate) name: &'static str,
    /// Whether it held.
    pub(crate) ok: bool,
    /// The evidence: counts, and the first offenders when it did not.
    pub(crate) detail: String,
}

/// The latency of one stage after the payment's commit, over all paid
/// orders that reached it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stage {
    /// e.g. `OrderPaid published`.
    pub(crate) name: &'static str,
    /// Orders measured.
    pub(crate) count: u64,
    /// Milliseconds.
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// One fault that was injected.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Injected {
    /// Seconds after the start of the load.
    pub(crate) at_s: f64,
    /// What was done, e.g. `kill inventory`.
    pub(crate) action: String,
    /// `ok`, or why it failed.
    pub(crate) result: String,
    /// The fault's window: seconds from its start until its target
    /// answered `/readyz` again (a server: until every service did); `None`
    /// when it failed or was skipped.
    pub(crate) ready_after_s: Option<f64>,
}

/// One `--fault-outside AT:WHAT`.
fn fault_outside(raw: &str) -> Result<Injected, String> {
    let (at, what) = raw
        .split_once(':')
        .filter(|(_, what)| !what.trim().is_empty())
        .ok_or_else(|| format!("`{raw}` is not AT:WHAT, e.g. `25s:kill -9 of orders-1`"))?;
    let at = duration(at).map_err(|e| format!("AT `{at}` is not a time after the start: {e}"))?;
    Ok(Injected {
        at_s: at.as_secs_f64(),
        action: what.trim().to_owned(),
        result: "injected outside ticketctl".to_owned(),
        ready_after_s: None,
    })
}

/// How many buyers to offer: `--orders`, or `--duration` (30 s by
/// default) at `--rate`. Refuses a rate that is not a positive number of
/// at most [`MAX_RATE`].
fn buyers(args: &LoadArgs) -> anyhow::Result<u64> {
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        anyhow::bail!(
            "--rate must be above 0 and at most {MAX_RATE}, not {}",
            args.rate
        );
    }
    if let Some(orders) = args.orders {
        return Ok(orders);
    }
    let duration = args.duration.unwrap_or(Duration::from_secs(30));
    let buyers = (duration.as_secs_f64() * args.rate).ceil();
    // Finite and within [0, MAX_RATE × any duration clap parses]: the cast
    // saturates at the bounds rather than wrapping, which is what we want.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(buyers as u64)
}

/// The highest `--rate`: far above what one machine can offer, low enough
/// to catch a typo (`--rate 2000000`).
const MAX_RATE: f64 = 100_000.0;

/// Runs `ticketctl load`; see the module docs.
pub(crate) async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let buyers = buyers(&args)?;
    let stop_faults = tokio_util::sync::CancellationToken::new();
    let faults = faults::start(&args, stop_faults.clone())?;
    let drive = driver::drive(&args, buyers).await?;
    stop_faults.cancel();
    let mut injected = faults.await?;
    injected.extend(args.faults_outside.iter().cloned());
    injected.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let checks = invariants::check(&args.targets, &drive, args.settle, &injected).await?;
    let stages = latency::measure(&args.targets, &drive).await?;
    let report = report::Report::new(&drive, checks, stages, injected);
    report.print(args.json)?;
    report.verdict()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_outside_is_a_time_and_a_description() {
        let fault = fault_outside("25s:kill -9 of nats-2: the second node").unwrap();
        assert!((fault.at_s - 25.0).abs() < f64::EPSILON);
        assert_eq!(fault.action, "kill -9 of nats-2: the second node");
        assert_eq!(fault.result, "injected outside ticketctl");
    }

    #[test]
    fn a_fault_outside_without_a_description_or_a_time_is_refused() {
        assert!(fault_outside("25s:").unwrap_err().contains("AT:WHAT"));
        assert!(fault_outside("25s").unwrap_err().contains("AT:WHAT"));
        assert!(
            fault_outside("soon:kill")
                .unwrap_err()
                .contains("AT `soon`")
        );
    }
}
