//! Injecting on time: the given faults at their times after the start,
//! the chaos at every tick, each fault as its own task, until the load
//! ends; then the faults under way finish and the ones not yet due are
//! recorded as skipped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::IndexedRandom as _;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inject::Injector;
use super::{Action, Backend, Fault, Injected, LoadArgs, PAUSE_MARGIN, Target};

/// The faults to inject: the given ones, in time order, and the chaos.
pub(super) struct Plan {
    given: VecDeque<Fault>,
    chaos: Option<Chaos>,
    /// A pause's `FOR` when it names none.
    pub(super) pause_default: Duration,
}

impl Plan {
    pub(super) fn new(args: &LoadArgs) -> Self {
        let mut given = args.faults.clone();
        given.sort_by_key(|f| f.at);
        let pause_default = args.fault_options.hold_ttl + PAUSE_MARGIN;
        let servers = match args.backend {
            Backend::Compose => true,
            Backend::Native => args.fault_options.chaos_servers,
        };
        Self {
            given: given.into(),
            chaos: args
                .chaos
                .map(|every| Chaos::new(every, servers, pause_default)),
            pause_default,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.given.is_empty() && self.chaos.is_none()
    }

    pub(super) fn may_flush(&self) -> bool {
        self.chaos.is_some() || self.given.iter().any(|f| f.action == Action::Flush)
    }

    /// Injects each fault at its time until `stop`, then lets those under
    /// way finish.
    pub(super) async fn run(
        mut self,
        injector: Arc<Injector>,
        stop: CancellationToken,
    ) -> Vec<Injected> {
        let start = Instant::now();
        let mut ticks = self.chaos.as_ref().map(|chaos| {
            let mut ticks = tokio::time::interval_at(start + chaos.every, chaos.every);
            // A late tick is dropped rather than bunched up with the next.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticks
        });
        let mut running = Running::default();
        let mut injected = Vec::new();
        loop {
            let next_given = self.given.front().map(|fault| start + fault.at);
            tokio::select! {
                () = stop.cancelled() => break,
                () = sleep_until(next_given) => {
                    if let Some(fault) = self.given.pop_front() {
                        running.spawn(&injector, fault, start);
                    }
                }
                () = tick(ticks.as_mut()) => {
                    let fault = self.chaos.as_ref().and_then(|chaos| {
                        chaos.pick(start.elapsed(), &running.busy, &mut rand::rng())
                    });
                    if let Some(fault) = fault {
                        running.spawn(&injector, fault, start);
                    } else {
                        tracing::info!("chaos: every target is under a fault; none this time");
                    }
                }
                Some(done) = running.next() => injected.push(done),
            }
        }
        for fault in self.given.drain(..) {
            injected.push(Injected {
                at_s: fault.at.as_secs_f64(),
                action: injector.describe(&fault),
                result: "skipped: the load ended before its time".to_owned(),
                ready_after_s: None,
            });
        }
        while let Some(done) = running.next().await {
            injected.push(done);
        }
        injected.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        injected
    }
}

/// Sleeps until `deadline`, or forever when there is none (a disabled
/// branch of the `select!`).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tick(ticks: Option<&mut tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The faults under way, and the targets they hold.
#[derive(Default)]
struct Running {
    tasks: JoinSet<Injected>,
    /// Which task disturbs which target: a target is busy until its fault
    /// is over, and chaos leaves it alone meanwhile.
    targets: HashMap<tokio::task::Id, (Target, String, f64)>,
    busy: HashSet<Target>,
}

impl Running {
    fn spawn(&mut self, injector: &Arc<Injector>, fault: Fault, start: Instant) {
        let at_s = start.elapsed().as_secs_f64();
        let action = injector.describe(&fault);
        tracing::info!(at_s, action, "injecting a fault");
        let task = self.tasks.spawn(Arc::clone(injector).inject(fault, at_s));
        self.targets.insert(task.id(), (fault.target, action, at_s));
        self.busy.insert(fault.target);
    }

    /// The next fault to finish; `None` when none is under way.
    async fn next(&mut self) -> Option<Injected> {
        let (id, joined) = match self.tasks.join_next_with_id().await? {
            Ok((id, injected)) => (id, Ok(injected)),
            Err(e) => (e.id(), Err(e)),
        };
        let (target, action, at_s) = self.targets.remove(&id)?;
        self.busy.remove(&target);
        let injected = joined.unwrap_or_else(|e| Injected {
            at_s,
            action,
            result: format!("the fault's task failed: {e}"),
            ready_after_s: None,
        });
        tracing::info!(
            at_s = injected.at_s,
            action = injected.action,
            result = injected.result,
            ready_after_s = injected.ready_after_s,
            "fault over"
        );
        Some(injected)
    }
}

/// `--chaos EVERY`: what it may pick from.
struct Chaos {
    every: Duration,
    /// Whether server restarts are among the picks.
    servers: bool,
    /// How long a chaos pause lasts.
    pause: Duration,
}

/// The kinds of chaos fault, picked with equal chances (so that the eight
/// processes do not crowd out the one flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kill,
    Restart,
    Pause,
    Flush,
    ServerRestart,
}

impl Chaos {
    fn new(every: Duration, servers: bool, pause_default: Duration) -> Self {
        Self {
            every,
            servers,
            // Past the hold TTL when EVERY allows it; never into the next fault.
            pause: pause_default.min(every),
        }
    }

    /// A random fault on a target that is not `busy`, or `None` when every
    /// target of the kind picked is.
    fn pick(&self, at: Duration, busy: &HashSet<Target>, rng: &mut impl Rng) -> Option<Fault> {
        let mut kinds = vec![Kind::Kill, Kind::Restart, Kind::Pause, Kind::Flush];
        if self.servers {
            kinds.push(Kind::ServerRestart);
        }
        let kind = *kinds.choose(rng)?;
        let (action, targets): (Action, &[Target]) = match kind {
            Kind::Kill => (Action::Kill, &Target::PROCESSES),
            Kind::Restart => (Action::Restart, &Target::PROCESSES),
            Kind::Pause => (Action::Pause(Some(self.pause)), &Target::PROCESSES),
            Kind::Flush => (Action::Flush, &[Target::Redis]),
            Kind::ServerRestart => (Action::Restart, &Target::SERVERS),
        };
        let idle: Vec<Target> = targets
            .iter()
            .copied()
            .filter(|t| !busy.contains(t))
            .collect();
        let target = *idle.choose(rng)?;
        Some(Fault { at, action, target })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    fn chaos(servers: bool) -> Chaos {
        Chaos::new(Duration::from_secs(10), servers, Duration::from_secs(305))
    }

    fn picks(chaos: &Chaos, busy: &HashSet<Target>) -> Vec<Fault> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..500)
            .filter_map(|_| chaos.pick(Duration::ZERO, busy, &mut rng))
            .collect()
    }

    #[test]
    fn chaos_leaves_the_servers_alone_unless_allowed() {
        let restarted_servers = |servers| {
            picks(&chaos(servers), &HashSet::new())
                .iter()
                .filter(|f| f.action == Action::Restart && f.target.is_server())
                .count()
        };
        assert_eq!(restarted_servers(false), 0);
        assert!(restarted_servers(true) > 0);
    }

    #[test]
    fn chaos_picks_every_kind_and_only_faults_that_apply() {
        let picked = picks(&chaos(true), &HashSet::new());
        for fault in &picked {
            assert_eq!(fault.action.check(fault.target), Ok(()), "{fault}");
        }
        for action in ["kill", "restart", "pause", "flush"] {
            assert!(picked.iter().any(|f| f.action.name() == action), "{action}");
        }
    }

    #[test]
    fn chaos_never_picks_a_target_under_a_fault() {
        let busy = HashSet::from([Target::Orders, Target::Redis, Target::Inventory]);
        let picked = picks(&chaos(true), &busy);
        assert!(!picked.is_empty());
        assert!(picked.iter().all(|f| !busy.contains(&f.target)));
    }

    #[test]
    fn a_chaos_pause_ends_before_the_next_fault() {
        assert!(
            picks(&chaos(false), &HashSet::new())
                .iter()
                .filter_map(|f| match f.action {
                    Action::Pause(period) => period,
                    _ => None,
                })
                .all(|period| period == Duration::from_secs(10))
        );
        let long = Chaos::new(Duration::from_mins(10), false, Duration::from_secs(305));
        assert_eq!(long.pause, Duration::from_secs(305));
    }
}

/// The schedule end to end, on a native system whose processes have no
/// pid files: every fault fails, which shows how a failure is recorded.
#[cfg(test)]
mod schedule_tests {
    use clap::Parser;

    use super::super::start;
    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn load(dir: &std::path::Path, faults: &[&str]) -> LoadArgs {
        let mut argv = vec!["load", "--backend", "native", "--native-dir"];
        argv.push(dir.to_str().expect("a UTF-8 path"));
        for fault in faults {
            argv.extend(["--fault", fault]);
        }
        Cli::try_parse_from(argv).expect("valid options").load
    }

    #[tokio::test]
    async fn faults_come_in_time_order_and_fail_without_stopping_the_rest() {
        let dir = std::env::temp_dir().join(format!("faults-plan-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("a scratch directory");
        std::fs::write(dir.join("services"), "orders 1\n").expect("written");
        let args = load(
            &dir,
            &["1h:pause:orders", "50ms:kill:orders", "0s:restart:orders"],
        );
        let stop = CancellationToken::new();

        let faults = start(&args, stop.clone()).expect("a plan");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        let injected = faults.await.expect("the task ends");
        std::fs::remove_dir_all(&dir).expect("cleaned up");

        let actions: Vec<&str> = injected.iter().map(|i| i.action.as_str()).collect();
        assert_eq!(
            actions,
            ["restart orders", "kill orders", "pause orders for 305s"]
        );
        for failed in &injected[..2] {
            assert!(failed.result.contains("orders.pid"), "{}", failed.result);
            assert_eq!(failed.ready_after_s, None);
        }
        assert!(injected[1].at_s >= 0.05, "{}", injected[1].at_s);
        assert!(
            injected[2].result.starts_with("skipped"),
            "{}",
            injected[2].result
        );
        assert!((injected[2].at_s - 3600.0).abs() < f64::EPSILON);
    }

    #[test]
    fn clap_refuses_a_bad_fault_with_the_reason() {
        let e = Cli::try_parse_from(["load", "--fault", "20s:kill:payments"])
            .err()
            .expect("refused");
        let message = e.to_string();
        assert!(message.contains("'20s:kill:payments'"), "{message}");
        assert!(message.contains("unknown target `payments`"), "{message}");
    }

    #[test]
    fn a_native_flush_needs_the_system_prefix() {
        let dir = std::env::temp_dir().join(format!("faults-plan-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("a scratch directory");
        std::fs::write(dir.join("services"), "orders 1\n").expect("written");
        let mut args = load(&dir, &["10s:flush:redis"]);
        args.fault_options.redis_prefix = None;
        let refused = start(&args, CancellationToken::new()).err();
        std::fs::remove_dir_all(&dir).expect("cleaned up");
        let e = refused.expect("no prefix, no flush");
        assert!(e.to_string().contains("REDIS_PREFIX"), "{e}");
    }
}
