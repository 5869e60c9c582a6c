//! The report of a load run, as text for a terminal or as JSON
//! (`--json`) for a script or for `docs/`, and the verdict: exit status 3
//! ([`NeedsAttention`]) when any invariant was violated.
//!
//! It holds, in this order: the offered rate next to the achieved one
//! (below the offer, the driver itself fell behind and the run measured
//! less than it claims), the buyers per scenario, the HTTP latency per
//! route with its statuses, the end-to-end stages after the payment's
//! commit, the faults injected, and the checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use super::{Check, Drive, Injected, Stage};
use crate::commands::NeedsAttention;

/// Everything a load run found.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    /// The concerts on sale, in the order their buyers came.
    concerts: Vec<Uuid>,
    /// Seats of each.
    seats: u32,
    /// Buyers offered per second, and the rate they actually started at.
    offered_rate: f64,
    achieved_rate: f64,
    elapsed_s: f64,
    buyers: u64,
    scenarios: BTreeMap<&'static str, u64>,
    routes: Vec<Route>,
    stages: Vec<Stage>,
    faults: Vec<Injected>,
    checks: Vec<Check>,
}

/// One route's latency (from each request's scheduled start) and answers.
#[derive(Debug, Serialize)]
struct Route {
    name: String,
    latency: Percentiles,
    /// Answers per status; `0` is a transport error (no answer).
    statuses: BTreeMap<u16, u64>,
}

/// A latency histogram of microseconds, summarised in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Percentiles {
    pub(super) count: u64,
    pub(super) p50_ms: f64,
    pub(super) p90_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
}

/// The summary of `histogram` (microseconds); all zeros when it is empty.
pub(super) fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    // Microseconds of a load run stay far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let ms = |micros: u64| micros as f64 / 1000.0;
    Percentiles {
        count: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
    }
}

impl Report {
    /// Gathers the report.
    pub(super) fn new(
        drive: &Drive,
        checks: Vec<Check>,
        stages: Vec<Stage>,
        injected: Vec<Injected>,
    ) -> Self {
        Self {
            concerts: drive.concerts.clone(),
            seats: drive.seats,
            offered_rate: drive.offered_rate,
            achieved_rate: drive.achieved_rate,
            elapsed_s: drive.elapsed.as_secs_f64(),
            buyers: drive.scenarios.values().sum(),
            scenarios: drive.scenarios.clone(),
            routes: routes(drive),
            stages,
            faults: injected,
            checks,
        }
    }

    /// Prints it, as text or as JSON.
    pub(super) fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.text());
        }
        Ok(())
    }

    /// `Ok` when every invariant held; else `NeedsAttention` (exit 3)
    /// naming the checks that failed.
    pub(super) fn verdict(&self) -> anyhow::Result<()> {
        let failed: Vec<&str> = self.failed().map(|c| c.name).collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(NeedsAttention(format!(
            "{} of {} invariants violated: {}",
            failed.len(),
            self.checks.len(),
            failed.join("; ")
        ))
        .into())
    }

    fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The text form.
    fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail: the results are ignored.
        let _ = match self.concerts.as_slice() {
            [concert] => writeln!(out, "load on concert {concert} ({} seats)", self.seats),
            concerts => writeln!(
                out,
                "load on {} concerts of {} seats, one after another ({} … {})",
                concerts.len(),
                self.seats,
                concerts
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                concerts.last().map(ToString::to_string).unwrap_or_default(),
            ),
        };
        let _ = writeln!(
            out,
            "offered {:.1} buyers/s, achieved {:.1}/s; {} buyers in {:.1} s",
            self.offered_rate, self.achieved_rate, self.buyers, self.elapsed_s
        );
        let scenarios: Vec<String> = self
            .scenarios
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(out, "scenarios: {}", scenarios.join(", "));
        self.write_routes(&mut out);
        self.write_stages(&mut out);
        self.write_faults(&mut out);
        self.write_checks(&mut out);
        out
    }

    fn write_routes(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nHTTP latency per route (ms, from each request's scheduled start)"
        );
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>8} {:>8} {:>8}  statuses",
            "route", "count", "p50", "p90", "p99", "max"
        );
        for route in &self.routes {
            let statuses: Vec<String> = route
                .statuses
                .iter()
                .map(|(status, n)| match status {
                    0 => format!("no answer×{n}"),
                    _ => format!("{status}×{n}"),
                })
                .collect();
            let _ = writeln!(
                out,
                "{:<32} {}  {}",
                route.name,
                row(&route.latency),
                statuses.join(" ")
            );
        }
    }

    fn write_stages(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nend-to-end latency after the payment's commit (ms, from the system's own timestamps)"
        );
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "stage", "orders", "p50", "p90", "p99", "max"
        );
        for stage in &self.stages {
            let summary = Percentiles {
                count: stage.count,
                p50_ms: stage.p50_ms,
                p90_ms: stage.p90_ms,
                p99_ms: stage.p99_ms,
                max_ms: stage.max_ms,
            };
            let _ = writeln!(out, "{:<32} {}", stage.name, row(&summary));
        }
    }

    fn write_faults(&self, out: &mut String) {
        let _ = writeln!(out, "\nfaults injected");
        if self.faults.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for fault in &self.faults {
            let ready = fault
                .ready_after_s
                .map_or_else(String::new, |s| format!(", ready again after {s:.1} s"));
            let _ = writeln!(
                out,
                "  {:>7.1} s  {}: {}{ready}",
                fault.at_s, fault.action, fault.result
            );
        }
    }

    fn write_checks(&self, out: &mut String) {
        let _ = writeln!(out, "\ninvariants");
        for check in &self.checks {
            let mark = if check.ok { '✓' } else { '✗' };
            let _ = writeln!(out, "  {mark} {}: {}", check.name, check.detail);
        }
        let failed = self.failed().count();
        if failed == 0 {
            let _ = writeln!(out, "\nall {} invariants held", self.checks.len());
        } else {
            let _ = writeln!(
                out,
                "\n{failed} of {} invariants violated",
                self.checks.len()
            );
        }
    }
}

/// Count and percentiles, aligned under the tables' headers.
fn row(p: &Percentiles) -> String {
    format!(
        "{:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
    )
}

/// Every route the driver timed or counted an answer of.
fn routes(drive: &Drive) -> Vec<Route> {
    let mut routes: BTreeMap<&str, Route> = BTreeMap::new();
    let empty = Percentiles {
        count: 0,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
    };
    let route = |name: &str| Route {
        name: name.to_owned(),
        latency: empty,
        statuses: BTreeMap::new(),
    };
    for (name, histogram) in &drive.http {
        let mut entry = route(name);
        entry.latency = percentiles(histogram);
        routes.insert(name, entry);
    }
    for ((name, status), n) in &drive.statuses {
        let entry = routes.entry(name).or_insert_with(|| route(name));
        *entry.statuses.entry(*status).or_default() += n;
    }
    routes.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn drive() -> Drive {
        let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
        for micros in [2_000, 4_000, 120_000] {
            histogram.record(micros).expect("in range");
        }
        Drive {
            concerts: vec![Uuid::from_u128(42)],
            seats: 100,
            offered_rate: 100.0,
            achieved_rate: 98.5,
            elapsed: Duration::from_mins(1),
            scenarios: BTreeMap::from([("buy", 5_000), ("abandon", 910)]),
            http: BTreeMap::from([("POST /orders".to_owned(), histogram)]),
            statuses: BTreeMap::from([
                (("POST /orders".to_owned(), 201), 2),
                (("POST /orders".to_owned(), 503), 1),
                (("POST /orders/{id}/pay".to_owned(), 0), 1),
            ]),
            violations: Vec::new(),
            transport_errors: Vec::new(),
            paid: Vec::new(),
        }
    }

    fn checks(seat_sold_twice: bool) -> Vec<Check> {
        vec![
            Check {
                name: "the system settles",
                ok: true,
                detail: "settled in 1.2 s".into(),
            },
            Check {
                name: "no seat is sold twice",
                ok: !seat_sold_twice,
                detail: "A-1 is in 2 confirmed orders".into(),
            },
        ]
    }

    fn report(seat_sold_twice: bool) -> Report {
        let stage = Stage {
            name: "inventory applied",
            count: 3,
            p50_ms: 4.0,
            p90_ms: 8.0,
            p99_ms: 9.5,
            max_ms: 10.0,
        };
        let fault = Injected {
            at_s: 20.0,
            action: "kill inventory".into(),
            result: "ok".into(),
            ready_after_s: Some(2.5),
        };
        Report::new(&drive(), checks(seat_sold_twice), vec![stage], vec![fault])
    }

    #[test]
    fn the_text_marks_a_failed_check_and_shows_every_part() {
        let text = report(true).text();
        assert!(text.contains("(100 seats)"), "{text}");
        assert!(
            text.contains("offered 100.0 buyers/s, achieved 98.5/s; 5910 buyers in 60.0 s"),
            "{text}"
        );
        assert!(text.contains("scenarios: abandon 910, buy 5000"), "{text}");
        assert!(text.contains("201×2 503×1"), "{text}");
        assert!(text.contains("no answer×1"), "{text}");
        assert!(text.contains("inventory applied"), "{text}");
        assert!(
            text.contains("20.0 s  kill inventory: ok, ready again after 2.5 s"),
            "{text}"
        );
        assert!(
            text.contains("✓ the system settles: settled in 1.2 s"),
            "{text}"
        );
        assert!(
            text.contains("✗ no seat is sold twice: A-1 is in 2 confirmed orders"),
            "{text}"
        );
        assert!(text.contains("1 of 2 invariants violated"), "{text}");
    }

    #[test]
    fn the_json_holds_the_same_parts() {
        let json = serde_json::to_value(report(true)).expect("serialisable");
        assert_eq!(json["achieved_rate"], 98.5);
        assert_eq!(json["routes"][0]["name"], "POST /orders");
        assert_eq!(json["routes"][0]["statuses"]["503"], 1);
        assert_eq!(json["stages"][0]["name"], "inventory applied");
        assert_eq!(json["checks"][1]["ok"], false);
        assert_eq!(json["faults"][0]["action"], "kill inventory");
    }

    #[test]
    fn a_failed_check_is_a_verdict_that_needs_attention_and_names_it() {
        let error = report(true).verdict().expect_err("a check failed");
        let attention = error
            .downcast_ref::<NeedsAttention>()
            .expect("exit status 3, not 1");
        assert_eq!(
            attention.0,
            "1 of 2 invariants violated: no seat is sold twice"
        );
        assert!(report(false).verdict().is_ok());
    }

    #[test]
    fn percentiles_are_milliseconds_of_the_microseconds_recorded() {
        let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
        for ms in 1..=1_000 {
            histogram.record(ms * 1_000).expect("in range");
        }
        let p = percentiles(&histogram);
        assert_eq!(p.count, 1_000);
        // Three significant figures: each value within 0.1 %.
        let near = |value: f64, expected: f64| (value - expected).abs() <= expected / 1_000.0;
        assert!(near(p.p50_ms, 500.0), "{p:?}");
        assert!(near(p.p90_ms, 900.0), "{p:?}");
        assert!(near(p.p99_ms, 990.0), "{p:?}");
        assert!(near(p.max_ms, 1_000.0), "{p:?}");
        let empty = percentiles(&Histogram::<u64>::new(3).expect("valid precision"));
        assert_eq!(empty.count, 0);
        assert!(empty.max_ms.abs() < f64::EPSILON);
    }
}
