//! Relay metrics in the Prometheus text format.
//!
//! Counters live in this process; the backlog gauges are measured in the
//! database at scrape time, so every instance reports the same truth.
//! "Published per second" is `rate(relay_published_total[1m])`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::Backlog;

/// Counters of one relay instance.
#[derive(Debug, Default)]
pub struct Metrics {
    published: AtomicU64,
    duplicates: AtomicU64,
    publish_errors: AtomicU64,
    parked: AtomicU64,
    batches: AtomicU64,
}

impl Metrics {
    /// Rows published and finished (deleted or marked).
    pub fn published(&self, n: u64) {
        self.published.fetch_add(n, Ordering::Relaxed);
    }

    /// PubAcks that reported a duplicate (a republish after a crash).
    pub fn duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Ordering::Relaxed);
    }

    /// Failed publishes, whatever the cause.
    pub fn publish_errors(&self, n: u64) {
        self.publish_errors.fetch_add(n, Ordering::Relaxed);
    }

    /// Rows this instance parked.
    pub fn parked(&self, n: u64) {
        self.parked.fetch_add(n, Ordering::Relaxed);
    }

    /// Passes that claimed at least one row.
    pub fn batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Current values of the counters, for tests and the benchmark.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            published: self.published.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            publish_errors: self.publish_errors.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    /// Renders the counters and `backlog` for source `source`.
    pub fn render(&self, source: &str, backlog: Option<Backlog>) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{source=\"{source}\"}} {value}");
        };
        metric(
            "relay_published_total",
            "counter",
            "Events published to JetStream and finished in the outbox.",
            s.published.to_string(),
        );
        metric(
            "relay_duplicates_total",
            "counter",
            "Publishes JetStream reported as duplicates.",
            s.duplicates.to_string(),
        );
        metric(
            "relay_publish_errors_total",
            "counter",
            "Failed publishes.",
            s.publish_errors.to_string(),
        );
        metric(
            "relay_parked_total",
            "counter",
            "Rows this instance parked.",
            s.parked.to_string(),
        );
        metric(
            "relay_batches_total",
            "counter",
            "Passes that claimed rows.",
            s.batches.to_string(),
        );
        if let Some(b) = backlog {
            metric(
                "relay_backlog",
                "gauge",
                "Outbox rows waiting to be published (counted up to 10000).",
                b.pending.to_string(),
            );
            metric(
                "relay_parked_rows",
                "gauge",
                "Outbox rows parked after repeated failures.",
                b.parked.to_string(),
            );
            metric(
                "relay_oldest_pending_age_seconds",
                "gauge",
                "Age of the oldest row waiting to be published.",
                format!("{:.3}", b.oldest_pending_secs),
            );
        }
        out
    }
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Metrics::published`].
    pub published: u64,
    /// See [`Metrics::duplicates`].
    pub duplicates: u64,
    /// See [`Metrics::publish_errors`].
    pub publish_errors: u64,
    /// See [`Metrics::parked`].
    pub parked: u64,
    /// See [`Metrics::batch`].
    pub batches: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.published(3);
        let text = m.render(
            "orders",
            Some(Backlog {
                pending: 2,
                parked: 1,
                oldest_pending_secs: 1.5,
            }),
        );
        assert!(
            text.contains("relay_published_total{source=\"orders\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE relay_backlog gauge\nrelay_backlog{source=\"orders\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("relay_oldest_pending_age_seconds{source=\"orders\"} 1.500"),
            "{text}"
        );
    }
}
