//! A service's consumers, installed on its `service::Builder` in one step:
//! each runs as a background task until shutdown, and `/metrics` reports
//! their counts and their lag.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `consumer_applied_total` | counter | events whose effect committed |
//! | `consumer_duplicates_total` | counter | events skipped because the inbox had them |
//! | `consumer_stale_total` | counter | events skipped because their aggregate was past them |
//! | `consumer_retried_total` | counter | deliveries postponed (failures, gaps, database down) |
//! | `consumer_dead_lettered_total` | counter | messages sent to the dead letters |
//! | `consumer_pending` | gauge | messages not yet delivered |
//! | `consumer_ack_pending` | gauge | messages delivered and not yet acked |
//! | `consumer_redelivered` | gauge | messages delivered more than once |
//!
//! Each is labelled `consumer="<durable name>"`. Several instances of one
//! durable (notification's senders) are one consumer to an operator: their
//! counts are summed. The gauges are JetStream's own numbers, asked for at
//! scrape time; while NATS is unreachable they are left out rather than
//! reported as zero.
//!
//! Each durable consumer also gets a sweeper of its inbox and positions
//! ([`crate::sweeper`]), so that no service can forget one.

use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use messaging::{StreamKind, Topology};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ConsumerMetrics, Counts, Lag, lag};
use crate::sweeper::{self, Retention};
use crate::{Consumer, Handler};

type Run = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// The consumers of one service.
pub struct Group {
    js: async_nats::jetstream::Context,
    topology: Topology,
    runs: Vec<Run>,
    members: Vec<Member>,
    retention: Retention,
}

/// One durable consumer as `/metrics` shows it.
#[derive(Debug)]
struct Member {
    name: String,
    stream: StreamKind,
    /// Where its inbox and positions are (its first instance's pool).
    db: sqlx::PgPool,
    instances: Vec<Arc<ConsumerMetrics>>,
    lag: Mutex<Option<Lag>>,
}

impl Member {
    fn counts(&self) -> Counts {
        self.instances
            .iter()
            .map(|m| m.snapshot())
            .fold(Counts::default(), |sum, c| Counts {
                applied: sum.applied + c.applied,
                duplicates: sum.duplicates + c.duplicates,
                stale: sum.stale + c.stale,
                retried: sum.retried + c.retried,
                dead_lettered: sum.dead_lettered + c.dead_lettered,
            })
    }

    fn lag(&self) -> Option<Lag> {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Group {
    /// An empty group; `js` and `topology` are where lag is asked for.
    pub fn new(js: async_nats::jetstream::Context, topology: Topology) -> Self {
        Self {
            js,
            topology,
            runs: Vec::new(),
            members: Vec::new(),
            retention: Retention::default(),
        }
    }

    /// Sweeps the consumers' tables with `retention` instead of the
    /// default (tests use a short interval).
    pub fn retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// Adds `consumer`: it runs when the service runs.
    pub fn add<H: Handler + Send + Sync + 'static>(&mut self, consumer: Consumer<H>) {
        let (name, stream) = (consumer.spec().name.clone(), consumer.spec().stream);
        let metrics = consumer.metrics();
        match self.members.iter_mut().find(|m| m.name == name) {
            Some(member) => member.instances.push(metrics),
            None => self.members.push(Member {
                name,
                stream,
                db: consumer.database().clone(),
                instances: vec![metrics],
                lag: Mutex::new(None),
            }),
        }
        self.runs.push(Box::new(move |stop| {
            async move { consumer.run(stop).await }.boxed()
        }));
    }

    /// Hands the consumers to the service: their tasks, a sweeper per
    /// durable consumer, their metrics, and a scrape hook that asks
    /// JetStream for their lag. One group per service: a second would
    /// register the `consumer_*` families again.
    pub fn install(self, app: &mut service::Builder) {
        for run in self.runs {
            app.task(run);
        }
        for member in &self.members {
            let (db, name, retention) = (member.db.clone(), member.name.clone(), self.retention);
            app.task(move |stop| sweeper::run(db, name, retention, stop));
        }
        let members = Arc::new(Members(self.members));
        app.registry()
            .register_collector(Box::new(ConsumerCollector(members.clone())));
        let (js, topology) = (self.js, self.topology);
        app.on_scrape(move || {
            let (members, js, topology) = (members.clone(), js.clone(), topology.clone());
            async move {
                // All at once, each within a readiness check's time: while
                // NATS is away a scrape must still answer with the counts.
                let asked = members.0.iter().map(|member| async {
                    let asking = lag(&js, &topology, member.stream, &member.name);
                    let now = tokio::time::timeout(service::ops::CHECK_TIMEOUT, asking).await;
                    *member.lag.lock().unwrap_or_else(PoisonError::into_inner) =
                        now.ok().and_then(Result::ok);
                });
                futures::future::join_all(asked).await;
            }
        });
    }
}

/// The consumers `/metrics` reports, shared by the collector and the
/// scrape hook that refreshes their lag.
#[derive(Debug)]
struct Members(Vec<Member>);

/// Encodes the members' counts and lag at each scrape.
#[derive(Debug)]
struct ConsumerCollector(Arc<Members>);

/// A metric family: its name, its help, and its value read from a `T`.
type Family<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The counters (the encoder adds `_total` to their names).
#[rustfmt::skip]
const COUNTERS: [Family<Counts>; 5] = [
    ("consumer_applied", "Events whose effect committed.", |c| c.applied),
    ("consumer_duplicates", "Events skipped because the inbox had them.", |c| c.duplicates),
    ("consumer_stale", "Events skipped because their aggregate was past them.", |c| c.stale),
    ("consumer_retried", "Deliveries postponed (failures, gaps, database down).", |c| c.retried),
    ("consumer_dead_lettered", "Messages sent to the dead letters.", |c| c.dead_lettered),
];

/// The gauges, from JetStream's view of the consumer.
#[rustfmt::skip]
const GAUGES: [Family<Lag>; 3] = [
    ("consumer_pending", "Messages not yet delivered.", |l| l.pending),
    ("consumer_ack_pending", "Messages delivered and not yet acked.", |l| l.ack_pending),
    ("consumer_redelivered", "Messages delivered more than once.", |l| l.redelivered),
];

impl Collector for ConsumerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let members = &self.0.0;
        for (name, help, count) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for member in members {
                let labels = [("consumer", member.name.as_str())];
                ConstCounter::new(count(&member.counts()))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        // A lag JetStream did not report is left out, not shown as zero.
        let lags: Vec<(&str, Lag)> = members
            .iter()
            .filter_map(|m| m.lag().map(|lag| (m.name.as_str(), lag)))
            .collect();
        if lags.is_empty() {
            return Ok(());
        }
        for (name, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (consumer, lag) in &lags {
                let gauge = ConstGauge::new(i64::try_from(value(lag)).unwrap_or(i64::MAX));
                gauge.encode(family.encode_family(&[("consumer", *consumer)])?)?;
            }
        }
        Ok(())
    }
}
