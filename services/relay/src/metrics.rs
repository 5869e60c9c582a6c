//! Relay metrics, in the service's Prometheus registry.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `relay_published_total` | counter | events published to JetStream and finished in the outbox |
//! | `relay_duplicates_total` | counter | publishes JetStream reported as duplicates |
//! | `relay_publish_errors_total` | counter | failed publishes |
//! | `relay_parked_total` | counter | rows this instance parked |
//! | `relay_batches_total` | counter | passes that claimed rows |
//! | `relay_empty_passes_total` | counter | passes that claimed nothing: work for Postgres and no rows (a wake-up that another pass had already served) |
//! | `relay_backlog` | gauge | rows waiting to be published (counted up to `store::BACKLOG_COUNT_CAP`) |
//! | `relay_parked_rows` | gauge | rows parked after repeated failures |
//! | `relay_oldest_pending_age_seconds` | gauge | age of the oldest row waiting to be published |
//!
//! Each is labelled `source="<RELAY_SOURCE>"`. The counters live in this
//! process; "published per second" is `rate(relay_published_total[1m])`.
//! The gauges are measured in the database at each scrape ([`BacklogGauges`],
//! refreshed by a scrape hook), so every instance reports the same truth.
//! While Postgres does not answer they are left out rather than reported
//! at a stale value: an alert on the backlog then sees no data instead of
//! an old "all is well".

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::store::Backlog;

/// Counters of one relay instance. The publisher counts into them; they
/// are exposed once [`Metrics::register`]ed (the benchmark leaves them out).
#[derive(Debug, Default)]
pub struct Metrics {
    published: Counter,
    duplicates: Counter,
    publish_errors: Counter,
    parked: Counter,
    batches: Counter,
    empty_passes: Counter,
}

impl Metrics {
    /// Exposes the counters in `registry`, labelled with `source`.
    pub fn register(&self, registry: &mut Registry, source: &str) {
        let registry = source_registry(registry, source);
        // prometheus-client appends `_total` to a counter's name.
        for (name, help, counter) in [
            (
                "relay_published",
                "Events published to JetStream and finished in the outbox.",
                &self.published,
            ),
            (
                "relay_duplicates",
                "Publishes JetStream reported as duplicates.",
                &self.duplicates,
            ),
            (
                "relay_publish_errors",
                "Failed publishes.",
                &self.publish_errors,
            ),
            ("relay_parked", "Rows this instance parked.", &self.parked),
            ("relay_batches", "Passes that claimed rows.", &self.batches),
            (
                "relay_empty_passes",
                "Passes that claimed nothing.",
                &self.empty_passes,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
    }

    /// Rows published and finished (deleted or marked).
    pub fn published(&self, n: u64) {
        self.published.inc_by(n);
    }

    /// PubAcks that reported a duplicate (a republish after a crash).
    pub fn duplicates(&self, n: u64) {
        self.duplicates.inc_by(n);
    }

    /// Failed publishes, whatever the cause.
    pub fn publish_errors(&self, n: u64) {
        self.publish_errors.inc_by(n);
    }

    /// Rows this instance parked.
    pub fn parked(&self, n: u64) {
        self.parked.inc_by(n);
    }

    /// Passes that claimed at least one row.
    pub fn batch(&self) {
        self.batches.inc();
    }

    /// A pass that claimed nothing.
    pub fn empty_pass(&self) {
        self.empty_passes.inc();
    }

    /// Current values of the counters, for tests and the benchmark.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            published: self.published.get(),
            duplicates: self.duplicates.get(),
            publish_errors: self.publish_errors.get(),
            parked: self.parked.get(),
            batches: self.batches.get(),
            empty_passes: self.empty_passes.get(),
        }
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
    /// See [`Metrics::empty_pass`].
    pub empty_passes: u64,
}

/// The backlog gauges: the last measurement, or none while Postgres does
/// not answer (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct BacklogGauges(Arc<Mutex<Option<Backlog>>>);

impl BacklogGauges {
    /// Exposes the gauges in `registry`, labelled with `source`.
    pub fn register(&self, registry: &mut Registry, source: &str) {
        source_registry(registry, source).register_collector(Box::new(self.clone()));
    }

    /// Records a measurement, or `None` when there is none to report.
    pub fn set(&self, backlog: Option<Backlog>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = backlog;
    }
}

impl Collector for BacklogGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(backlog) = *self.0.lock().unwrap_or_else(PoisonError::into_inner) else {
            return Ok(());
        };
        let pending = format!(
            "Outbox rows waiting to be published (counted up to {}).",
            crate::store::BACKLOG_COUNT_CAP
        );
        for (name, help, value) in [
            (
                "relay_backlog",
                pending.as_str(),
                ConstGauge::new(backlog.pending),
            ),
            (
                "relay_parked_rows",
                "Outbox rows parked after repeated failures.",
                ConstGauge::new(backlog.parked),
            ),
        ] {
            value.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        ConstGauge::new(backlog.oldest_pending_secs).encode(encoder.encode_descriptor(
            "relay_oldest_pending_age_seconds",
            "Age of the oldest row waiting to be published.",
            None,
            MetricType::Gauge,
        )?)
    }
}

/// The part of `registry` whose metrics carry `source="<source>"`.
fn source_registry<'r>(registry: &'r mut Registry, source: &str) -> &'r mut Registry {
    registry.sub_registry_with_label((Cow::Borrowed("source"), Cow::Owned(source.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, registry).unwrap();
        text
    }

    /// Counters and gauges of source `orders`, registered.
    fn registered() -> (Registry, Metrics, BacklogGauges) {
        let mut registry = Registry::default();
        let (metrics, gauges) = (Metrics::default(), BacklogGauges::default());
        metrics.register(&mut registry, "orders");
        gauges.register(&mut registry, "orders");
        (registry, metrics, gauges)
    }

    #[test]
    fn counters_and_gauges_carry_the_source_label() {
        let (registry, metrics, gauges) = registered();
        metrics.published(3);
        gauges.set(Some(Backlog {
            pending: 2,
            parked: 1,
            oldest_pending_secs: 1.5,
        }));

        let text = scrape(&registry);

        assert!(
            text.contains(
                "# TYPE relay_published_total counter\nrelay_published_total{source=\"orders\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE relay_backlog gauge\nrelay_backlog{source=\"orders\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("relay_oldest_pending_age_seconds{source=\"orders\"} 1.5\n"),
            "{text}"
        );
        assert_eq!(metrics.snapshot().published, 3);
    }

    #[test]
    fn without_a_measurement_the_gauges_are_left_out() {
        let (registry, _metrics, gauges) = registered();
        gauges.set(None);

        let text = scrape(&registry);

        assert!(
            text.contains("relay_batches_total{source=\"orders\"} 0"),
            "{text}"
        );
        assert!(!text.contains("relay_backlog"), "{text}");
    }
}
