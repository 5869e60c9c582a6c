//! The open-loop driver: creates the concerts, offers buyers on schedule,
//! records every answer.
//!
//! A run sells one concert after another, `--buyers-per-concert` buyers
//! each, so that a run of any size keeps finding seats: inventory takes at
//! most 10,000 seats a concert, and a 100,000-buyer soak needs many.
//!
//! Buyer `i` is due at `start + i / rate`. A scheduler task starts each
//! buyer at its time whether or not the earlier ones have finished: the
//! arrivals are the load's, not the system's, so a slow system faces a
//! growing crowd as a real sale's would. The one bound is a generous cap
//! on buyers in flight ([`MAX_IN_FLIGHT`]) that keeps a dead system from
//! exhausting the driver's memory and sockets; a buyer that has to wait
//! for room starts late, the report's achieved rate falls below the
//! offered one, and the driver says it fell behind.
//!
//! Latency is measured from each request's *scheduled* start (the buyer's
//! slot for its first request), not from when it was sent: a driver that
//! waited for answers before sending more would hide a stall behind
//! requests it never sent (coordinated omission). What each buyer does is
//! in [`scenario`](super::scenario).
//!
//! All buyers share one `reqwest::Client` (one connection pool); each
//! sends its own token per request.
//!
//! Long because its unit tests (the schedule and rate arithmetic) live
//! beside it; the code itself is about 430 lines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::scenario::{self, Answer, Offer, Played, Route, Sale, seat_label};
use super::{Drive, LoadArgs};

/// The most buyers in flight at once: 50 s of buyers at 200 a second, so
/// it binds only when the system has stalled for long, and, at one socket
/// a buyer, well under the 20,000 file descriptors a process gets here.
const MAX_IN_FLIGHT: usize = 10_000;
/// How many transport errors the report keeps, with their causes.
const TRANSPORT_KEPT: usize = 20;
/// How long one request may take before it counts as a transport failure.
/// Above the services' own `REQUEST_TIMEOUT` (10 s), so a slow request is
/// answered by the service (503 `/problems/timeout`) before the driver
/// gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The price of every seat.
const PRICE_CENTS: u32 = 4_500;
/// Latencies are kept from 1 µs to an hour, to three significant digits.
const MAX_MICROS: u64 = 3_600_000_000;
/// How often the progress bar is refreshed.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Offers `buyers` buyers at `args.rate` a second; see the module docs.
pub(super) async fn drive(args: &LoadArgs, buyers: u64) -> anyhow::Result<Drive> {
    check(args)?;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?;
    let per_concert = buyers_per_concert(args);
    let mut concerts = Vec::new();
    for _ in 0..buyers.div_ceil(per_concert).max(1) {
        concerts.push(create_concert(&http, args).await?);
    }
    let on_sale = Offer {
        orders_url: &args.targets.orders_url,
        inventory_url: &args.targets.inventory_url,
        concerts: &concerts,
        seats: args.seats,
        hot: args.hot_seats,
        buyers_per_concert: per_concert,
    };
    let sale = Arc::new(Sale::new(http, &on_sale, args.targets.key.issuer()?));
    let live = Arc::new(Live::default());
    let progress = Progress::start(buyers, Arc::clone(&live), Arc::clone(&sale))?;
    let schedule = Schedule {
        start: Instant::now(),
        rate: args.rate,
    };
    let tally = Tally::new()?;
    let (played, done) = mpsc::unbounded_channel();
    let offering = tokio::spawn(offer(sale, schedule, buyers, Arc::clone(&live), played));
    let tally = collect(done, &live, tally).await;
    let elapsed = schedule.start.elapsed();
    let offered = offering.await??;
    progress.finish();
    let tally = tally?;
    if offered.behind > 0 {
        eprintln!(
            "the driver fell behind: {} buyers waited for room ({MAX_IN_FLIGHT} in flight), \
             started late, and count their latency from their slots",
            offered.behind
        );
    }
    if tally.sold_out > 0 {
        eprintln!(
            "{} buyers found no plain seat free (all sold or held) and ended early; more \
             --seats (inventory takes up to 10,000 a concert) or fewer --buyers-per-concert \
             keep a long run buying",
            tally.sold_out
        );
    }
    let achieved = achieved_rate(offered.started, offered.last_start, args.rate);
    Ok(tally.into_drive(concerts, args.seats, args.rate, achieved, elapsed))
}

/// `--buyers-per-concert`, or half the seats: a buyer takes about 0.8
/// seats on average (one or two for most, none for those who abandon or
/// lose a hot seat), and seats held by buyers still playing are not free
/// either, so half leaves room to the end.
fn buyers_per_concert(args: &LoadArgs) -> u64 {
    args.buyers_per_concert
        .unwrap_or_else(|| u64::from(args.seats / 2))
        .max(1)
}

/// Refuses options the driver cannot run with, before anything is created.
fn check(args: &LoadArgs) -> anyhow::Result<()> {
    ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be a positive number of buyers a second, not {}",
        args.rate
    );
    ensure!(
        args.buyers_per_concert != Some(0),
        "--buyers-per-concert must be at least 1"
    );
    ensure!(
        args.hot_seats >= 1 && args.hot_seats < args.seats,
        "--hot-seats must be at least 1 and fewer than --seats ({}), not {}",
        args.seats,
        args.hot_seats
    );
    Ok(())
}

/// Adds up what every buyer played, as each one finishes, until the last
/// one has. A buyer's error (a request the driver could not build) is the
/// driver's bug, and makes the run fail once all buyers are done.
async fn collect(
    mut done: mpsc::UnboundedReceiver<anyhow::Result<Played>>,
    live: &Live,
    mut tally: Tally,
) -> anyhow::Result<Tally> {
    let mut failed = None;
    while let Some(result) = done.recv().await {
        live.finished.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(played) => tally.add(played),
            Err(error) => failed = failed.or(Some(error)),
        }
    }
    match failed {
        Some(error) => Err(error.context("a buyer could not play its scenario")),
        None => Ok(tally),
    }
}

/// Creates one concert of this run, as an operator: `args.seats` seats
/// `A-1` …, its sale open now and the show a month away, so nothing
/// closes during the load.
async fn create_concert(http: &reqwest::Client, args: &LoadArgs) -> anyhow::Result<Uuid> {
    let now = chrono::Utc::now();
    let seats: Vec<_> = (1..=args.seats)
        .map(|n| json!({ "seat_id": seat_label(n), "price_cents": PRICE_CENTS }))
        .collect();
    let url = format!(
        "{}/events",
        args.targets.inventory_url.trim_end_matches('/')
    );
    let response = http
        .post(&url)
        .bearer_auth(args.targets.key.operator_token()?)
        .json(&json!({
            "name": format!("Load test {}", now.format("%Y-%m-%d %H:%M:%S")),
            "venue": "Hall 1",
            "sale_opens_at": now,
            "starts_at": now + chrono::Duration::days(30),
            "seats": seats,
        }))
        .send()
        .await
        .with_context(|| format!("cannot reach inventory at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status != reqwest::StatusCode::CREATED {
        bail!("inventory refused the load's concert: {status} {body}");
    }
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("inventory's 201 names no concert id: {body}"))
}

/// When buyers are due.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    /// Buyers a second.
    rate: f64,
}

impl Schedule {
    /// Buyer `index`'s slot.
    fn slot(self, index: u64) -> Instant {
        self.start + offset(index, self.rate)
    }
}

/// When buyer `index` is due after the start, at `rate` a second.
#[allow(clippy::cast_precision_loss)] // buyer counts, far below 2^52
fn offset(index: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// The rate at which `started` buyers actually started, the last of them
/// `last_start` after the start. Each buyer is counted as occupying one
/// slot (`1 / offered`), so a driver on schedule achieves exactly the
/// offered rate, and one that started buyers late achieves less.
#[allow(clippy::cast_precision_loss)] // buyer counts, far below 2^52
fn achieved_rate(started: u64, last_start: Duration, offered: f64) -> f64 {
    if started == 0 {
        return 0.0;
    }
    started as f64 / (last_start.as_secs_f64() + 1.0 / offered)
}

/// Counters the progress bar shows while the load runs.
#[derive(Debug, Default)]
struct Live {
    started: AtomicU64,
    finished: AtomicU64,
    /// Buyers that had to wait for room in flight.
    behind: AtomicU64,
}

/// What the scheduler did.
#[derive(Debug)]
struct Offered {
    started: u64,
    /// The last buyer's actual start, after the schedule's start.
    last_start: Duration,
    /// Buyers that had to wait for room in flight.
    behind: u64,
}

/// The scheduler: starts buyer `i` at its slot, each as its own task, and
/// sends what each one played (or its error) to `played`.
async fn offer(
    sale: Arc<Sale>,
    schedule: Schedule,
    buyers: u64,
    live: Arc<Live>,
    played: mpsc::UnboundedSender<anyhow::Result<Played>>,
) -> anyhow::Result<Offered> {
    let room = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut offered = Offered {
        started: 0,
        last_start: Duration::ZERO,
        behind: 0,
    };
    for index in 0..buyers {
        let slot = schedule.slot(index);
        tokio::time::sleep_until(slot.into()).await;
        let permit = if let Ok(permit) = Arc::clone(&room).try_acquire_owned() {
            permit
        } else {
            offered.behind += 1;
            live.behind.fetch_add(1, Ordering::Relaxed);
            Arc::clone(&room).acquire_owned().await?
        };
        let sale = Arc::clone(&sale);
        let played = played.clone();
        tokio::spawn(async move {
            let result = scenario::play(&sale, index, slot).await;
            drop(permit);
            // The receiver lives until every sender is gone.
            let _ = played.send(result);
        });
        offered.started += 1;
        offered.last_start = schedule.start.elapsed();
        live.started.fetch_add(1, Ordering::Relaxed);
    }
    Ok(offered)
}

/// The answers of all buyers, as the report wants them.
struct Tally {
    /// An empty histogram with the bounds every route's gets.
    empty: Histogram<u64>,
    http: BTreeMap<Route, Histogram<u64>>,
    statuses: BTreeMap<(Route, u16), u64>,
    scenarios: BTreeMap<&'static str, u64>,
    violations: Vec<String>,
    /// The first [`TRANSPORT_KEPT`] transport errors, with their causes.
    transport: Vec<String>,
    paid: Vec<Uuid>,
    /// Buyers that found no plain seat left.
    sold_out: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            empty: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
            http: BTreeMap::new(),
            statuses: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            violations: Vec::new(),
            transport: Vec::new(),
            paid: Vec::new(),
            sold_out: 0,
        })
    }

    /// Adds one buyer's answers. A transport failure (status 0) counts
    /// per status but has no latency: the request it belonged to records
    /// its latency, from its scheduled start, when an answer comes.
    fn add(&mut self, played: Played) {
        *self.scenarios.entry(played.scenario.name()).or_default() += 1;
        for Answer {
            route,
            status,
            micros,
        } in played.answers
        {
            *self.statuses.entry((route, status)).or_default() += 1;
            if status != 0 {
                self.http
                    .entry(route)
                    .or_insert_with(|| Histogram::new_from(&self.empty))
                    .saturating_record(micros.max(1));
            }
        }
        self.violations.extend(played.violations);
        let room = TRANSPORT_KEPT.saturating_sub(self.transport.len());
        self.transport
            .extend(played.transport.into_iter().take(room));
        self.paid.extend(played.paid);
        self.sold_out += u64::from(played.sold_out);
    }

    fn into_drive(
        mut self,
        concerts: Vec<Uuid>,
        seats: u32,
        offered: f64,
        achieved: f64,
        elapsed: Duration,
    ) -> Drive {
        // A same-key retry pays one order twice in the buyer's journal.
        self.paid.sort_unstable();
        self.paid.dedup();
        Drive {
            concerts,
            seats,
            offered_rate: offered,
            achieved_rate: achieved,
            elapsed,
            scenarios: self.scenarios,
            http: self
                .http
                .into_iter()
                .map(|(route, histogram)| (route.template(), histogram))
                .collect(),
            statuses: self
                .statuses
                .into_iter()
                .map(|((route, status), count)| ((route.template(), status), count))
                .collect(),
            violations: self.violations,
            transport_errors: self.transport,
            paid: self.paid,
        }
    }
}

/// The progress bar: buyers started of all, the live rate, buyers in
/// flight, errors so far (transport failures and 5xx answers) and, once
/// the cap on buyers in flight binds, buyers started late. indicatif draws only on a terminal; in a pipe
/// or a CI log it stays silent and the report says what happened.
struct Progress {
    bar: indicatif::ProgressBar,
    stop: CancellationToken,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(total: u64, live: Arc<Live>, sale: Arc<Sale>) -> anyhow::Result<Self> {
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} {bar:20} {pos}/{len} buyers, {per_sec}, {msg}",
            )
            .map_err(anyhow::Error::msg)?,
        );
        let stop = CancellationToken::new();
        let ticker = tokio::spawn({
            let (bar, stop) = (bar.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(PROGRESS_TICK);
                while stop.run_until_cancelled(tick.tick()).await.is_some() {
                    let started = live.started.load(Ordering::Relaxed);
                    let finished = live.finished.load(Ordering::Relaxed);
                    bar.set_position(started);
                    let behind = match live.behind.load(Ordering::Relaxed) {
                        0 => String::new(),
                        late => format!(", {late} started late (driver behind)"),
                    };
                    bar.set_message(format!(
                        "{} in flight, {} errors{behind}",
                        started.saturating_sub(finished),
                        sale.errors.load(Ordering::Relaxed)
                    ));
                }
            }
        });
        Ok(Self { bar, stop, ticker })
    }

    fn finish(self) {
        self.stop.cancel();
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scenario::Scenario;

    #[test]
    fn buyers_are_due_one_interval_apart_from_the_start() {
        assert_eq!(offset(0, 200.0), Duration::ZERO);
        assert_eq!(offset(1, 200.0), Duration::from_millis(5));
        assert_eq!(offset(200, 200.0), Duration::from_secs(1));
        assert_eq!(offset(3, 0.5), Duration::from_secs(6));
        let third = offset(2, 3.0).as_secs_f64();
        assert!((third - 2.0 / 3.0).abs() < 1e-9, "{third}");
    }

    #[test]
    fn a_driver_on_schedule_achieves_the_offered_rate() {
        let rate = achieved_rate(300, offset(299, 30.0), 30.0);
        assert!((rate - 30.0).abs() < 1e-6, "{rate}");
        assert!((achieved_rate(1, Duration::ZERO, 30.0) - 30.0).abs() < 1e-9);
        assert!(achieved_rate(0, Duration::ZERO, 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_driver_that_starts_buyers_late_achieves_less() {
        // 300 buyers at 30 a second should take 10 s to start; 20 s is half
        // the rate.
        let late = Duration::from_secs(20).saturating_sub(offset(1, 30.0));
        let rate = achieved_rate(300, late, 30.0);
        assert!((rate - 15.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn answers_add_up_per_route_template_and_status() {
        let mut tally = Tally::new().unwrap();
        let order = Uuid::new_v4();
        let answer = |route, status, micros| Answer {
            route,
            status,
            micros,
        };
        tally.add(Played {
            scenario: Scenario::RetryPay,
            answers: vec![
                answer(Route::Hold, 201, 3_000),
                answer(Route::Pay, 0, 15_000_000),
                answer(Route::Pay, 200, 15_300_000),
                answer(Route::Pay, 200, 2_000),
            ],
            violations: vec![],
            transport: vec![
                "POST /orders/{id}/pay: error sending request: connection reset".into(),
            ],
            paid: vec![order, order],
            sold_out: false,
        });
        tally.add(Played {
            scenario: Scenario::Hot,
            answers: vec![answer(Route::Hold, 409, 1_000)],
            violations: vec!["a line".into()],
            transport: vec![],
            paid: vec![],
            sold_out: true,
        });
        let tally_sold_out = tally.sold_out;
        let drive = tally.into_drive(vec![Uuid::nil()], 10, 30.0, 29.0, Duration::from_secs(1));

        let pay = "POST /orders/{id}/pay".to_owned();
        let hold = "POST /events/{id}/seats/{seat}/hold".to_owned();
        assert_eq!(drive.statuses[&(pay.clone(), 0)], 1);
        assert_eq!(drive.statuses[&(pay.clone(), 200)], 2);
        assert_eq!(drive.statuses[&(hold.clone(), 409)], 1);
        // The transport failure has a status but no latency of its own.
        assert_eq!(drive.http[&pay].len(), 2);
        assert_eq!(drive.http[&hold].len(), 2);
        assert!(drive.http[&pay].max() >= 15_000_000);
        assert_eq!(drive.scenarios["retry_pay"], 1);
        assert_eq!(drive.scenarios["hot"], 1);
        assert_eq!(drive.paid, [order], "one order, once");
        assert_eq!(drive.violations, ["a line"]);
        assert_eq!(
            drive.transport_errors,
            ["POST /orders/{id}/pay: error sending request: connection reset"],
            "why the request got no answer"
        );
        assert_eq!(tally_sold_out, 1);
    }
}
