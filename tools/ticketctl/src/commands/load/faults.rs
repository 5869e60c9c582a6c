//! Faults during the load: `--fault AT:ACTION[:TARGET][:FOR]` at given
//! times, and `--chaos EVERY` for a random one every so often.
//!
//! | fault | what happens | done when |
//! |---|---|---|
//! | `20s:kill:inventory` | SIGKILL (no shutdown), then started again | it answers `/readyz` |
//! | `30s:restart:orders` | SIGTERM (graceful stop), then started again | it answers `/readyz` |
//! | `45s:restart:nats` (`redis`, `postgres`) | the server restarted | the server, then every service, answers |
//! | `60s:flush:redis` | the system's Redis keys deleted (holds, seat maps) | at once (Redis stays up) |
//! | `80s:pause:orders:8s` | SIGSTOP, and SIGCONT after `FOR` | it answers `/readyz` |
//!
//! `FOR` of a pause defaults to the hold TTL (`--hold-ttl`, inventory's
//! `HOLD_TTL`) plus [`PAUSE_MARGIN`]: a pause is there to outlive the holds
//! taken before it. Processes (kill, pause) are the services and relays;
//! `restart` also takes the servers.
//!
//! `AT` counts from the start of the load (the fault task starts just
//! before the driver). Each fault runs as its own task, so a long pause
//! does not delay the next fault, and none aborts the load: an error is
//! recorded in its [`Injected`] with the rest. When the load ends, faults
//! not yet due are recorded as skipped, and those under way run their
//! course (a pause to its end and SIGCONT, a restart until the target
//! answers), so the checks that follow start on a whole system.
//! `Injected::ready_after_s` is the fault's window: from its start until
//! its target answered again.
//!
//! Chaos picks an action, then a target that no fault is disturbing at that
//! moment: kill, restart or pause of a service or relay, a flush of Redis,
//! and a restart of a server. On `--backend native` the servers are the
//! machine's own Postgres, NATS and Redis, shared with everyone's tests, so
//! chaos leaves them alone unless `--chaos-servers` says otherwise; a fault
//! named with `--fault` is always injected. A chaos pause lasts `EVERY` at
//! most, so that it is over when the next fault comes.
//!
//! This file reads the faults; [`schedule`] injects them on time and picks
//! the chaos; [`inject`] does one fault and waits for its target to answer
//! again, through one of the two ways to reach the system: [`compose`]
//! (`docker compose` in the current directory) or [`native`] (processes
//! that `scripts/native-up` started).
//!
//! Long because the parser's unit tests (every accepted spec and every
//! error) live beside it; the code itself is under 350 lines, and the
//! backends are in `faults/`.

mod compose;
mod inject;
mod native;
mod schedule;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::super::support::{defaults, duration};
use super::{Injected, LoadArgs};
use inject::{Injector, System};
use schedule::Plan;

/// How long past the hold TTL a pause without `FOR` lasts: enough for
/// inventory's sweeper to have seen the holds expire.
const PAUSE_MARGIN: Duration = Duration::from_secs(5);

/// How faults reach the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// `docker compose` in the current directory (its project as compose
    /// itself chooses: `COMPOSE_PROJECT_NAME`, `COMPOSE_FILE`, `.env`).
    Compose,
    /// The processes `scripts/native-up` started (`--native-dir`).
    Native,
}

/// What the fault injector needs besides the faults themselves.
#[derive(Debug, Args)]
pub(crate) struct FaultOptions {
    /// Let `--chaos` restart the servers too when `--backend native`: they
    /// are this machine's Postgres, NATS and Redis, which the tests and
    /// everyone else use. (The compose stack's servers are its own, and
    /// always among the chaos faults.)
    #[arg(long)]
    pub(crate) chaos_servers: bool,
    /// The hold TTL of the system (inventory's `HOLD_TTL`): a pause without
    /// `FOR` lasts this plus 5 s.
    #[arg(long, env = "HOLD_TTL", value_parser = duration, default_value = "5m")]
    pub(crate) hold_ttl: Duration,
    /// The directory of `scripts/native-up` (pid files, start scripts,
    /// `services`), for `--backend native`.
    #[arg(long, env = "NATIVE_DIR", default_value = ".native")]
    pub(crate) native_dir: PathBuf,
    /// The Redis that `flush:redis` empties when `--backend native`.
    #[arg(long = "redis-url", env = "REDIS_URL", default_value = defaults::REDIS)]
    pub(crate) redis_url: String,
    /// The system's key prefix in that Redis: a native flush deletes the
    /// keys under it and nothing else (the machine's Redis is shared).
    #[arg(long = "redis-prefix", env = "REDIS_PREFIX")]
    pub(crate) redis_prefix: Option<String>,
}

/// A part of the system a fault can hit: its compose service name and its
/// native process name are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    Orders,
    Inventory,
    Reporting,
    Notification,
    RelayOrders1,
    RelayOrders2,
    RelayInventory,
    RelayNotification,
    Nats,
    Redis,
    Postgres,
}

impl Target {
    /// The services and relays: what `kill` and `pause` apply to.
    pub(super) const PROCESSES: [Self; 8] = [
        Self::Orders,
        Self::Inventory,
        Self::Reporting,
        Self::Notification,
        Self::RelayOrders1,
        Self::RelayOrders2,
        Self::RelayInventory,
        Self::RelayNotification,
    ];
    /// The servers the processes depend on: only `restart` (and `flush`
    /// for Redis) applies to them.
    pub(super) const SERVERS: [Self; 3] = [Self::Nats, Self::Redis, Self::Postgres];

    /// The name in compose.yaml and in `scripts/native-up`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Inventory => "inventory",
            Self::Reporting => "reporting",
            Self::Notification => "notification",
            Self::RelayOrders1 => "relay-orders-1",
            Self::RelayOrders2 => "relay-orders-2",
            Self::RelayInventory => "relay-inventory",
            Self::RelayNotification => "relay-notification",
            Self::Nats => "nats",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }

    pub(super) fn is_server(self) -> bool {
        Self::SERVERS.contains(&self)
    }

    fn all() -> impl Iterator<Item = Self> {
        Self::PROCESSES.into_iter().chain(Self::SERVERS)
    }

    fn names(targets: &[Self]) -> String {
        targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        Self::all().find(|t| t.name() == raw).ok_or_else(|| {
            format!(
                "unknown target `{raw}`: expected one of {}, {}",
                Self::names(&Self::PROCESSES),
                Self::names(&Self::SERVERS)
            )
        })
    }
}

/// What a fault does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// SIGKILL, then start again.
    Kill,
    /// SIGTERM, wait for the exit, start again (servers: their restart).
    Restart,
    /// Delete the system's Redis keys.
    Flush,
    /// SIGSTOP, then SIGCONT after the duration (`None`: the default, past
    /// the hold TTL).
    Pause(Option<Duration>),
}

impl Action {
    const NAMES: &str = "kill, restart, pause, flush";

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Restart => "restart",
            Self::Flush => "flush",
            Self::Pause(_) => "pause",
        }
    }

    /// Whether it applies to `target`, and if not, why.
    pub(super) fn check(self, target: Target) -> Result<(), String> {
        let allowed: &[Target] = match self {
            Self::Kill | Self::Pause(_) => &Target::PROCESSES,
            Self::Restart => return Ok(()),
            Self::Flush => &[Target::Redis],
        };
        if allowed.contains(&target) {
            return Ok(());
        }
        let hint = if target.is_server() {
            " (a server can be restarted)"
        } else {
            ""
        };
        Err(format!(
            "`{}` does not apply to `{}`{hint}: expected one of {}",
            self.name(),
            target.name(),
            Target::names(allowed)
        ))
    }
}

/// One `--fault AT:ACTION[:TARGET][:FOR]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    /// When, after the start of the load.
    pub(crate) at: Duration,
    pub(crate) action: Action,
    pub(crate) target: Target,
}

/// The syntax, repeated in every parse error.
const SYNTAX: &str = "AT:ACTION[:TARGET][:FOR], e.g. 20s:kill:inventory, 60s:flush:redis, \
                      80s:pause:orders:8s";

impl FromStr for Fault {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        parse_fault(raw).map_err(|reason| format!("{reason} ({SYNTAX})"))
    }
}

fn parse_fault(raw: &str) -> Result<Fault, String> {
    let mut parts = raw.split(':');
    let at = parts.next().unwrap_or_default();
    let at = duration(at).map_err(|e| format!("AT `{at}` is not a time after the start: {e}"))?;
    let action = match parts.next() {
        None | Some("") => return Err("ACTION is missing".to_owned()),
        Some(action) => action,
    };
    let target = parts.next().map(Target::from_str).transpose()?;
    let period = parts.next();
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected `:{extra}` after FOR"));
    }
    let (action, target) = match (action, target) {
        ("kill", Some(target)) => (Action::Kill, target),
        ("restart", Some(target)) => (Action::Restart, target),
        ("pause", Some(target)) => (Action::Pause(period.map(pause_for).transpose()?), target),
        // Redis is the only thing that can be flushed; naming it is optional.
        ("flush", target) => (Action::Flush, target.unwrap_or(Target::Redis)),
        ("kill" | "restart" | "pause", None) => {
            return Err(format!("`{action}` needs a TARGET"));
        }
        (other, _) => {
            return Err(format!(
                "unknown action `{other}`: expected one of {}",
                Action::NAMES
            ));
        }
    };
    if period.is_some() && !matches!(action, Action::Pause(_)) {
        return Err(format!(
            "FOR applies to `pause` only, not to `{}`",
            action.name()
        ));
    }
    action.check(target)?;
    Ok(Fault { at, action, target })
}

fn pause_for(raw: &str) -> Result<Duration, String> {
    match duration(raw) {
        Ok(Duration::ZERO) => Err("FOR of a pause must be longer than zero".to_owned()),
        Ok(period) => Ok(period),
        Err(e) => Err(format!("FOR `{raw}` is not a duration: {e}")),
    }
}

/// A duration the way `--fault` writes it (`8s`, `1500ms`).
pub(super) fn spec_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl fmt::Display for Fault {
    /// The `--fault` that means this fault.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (at, action, target) = (spec_duration(self.at), self.action, self.target.name());
        match action {
            Action::Pause(Some(period)) => {
                write!(f, "{at}:pause:{target}:{}", spec_duration(period))
            }
            _ => write!(f, "{at}:{}:{target}", action.name()),
        }
    }
}

/// Starts injecting `args.faults` (and `--chaos`) until `stop`; the task
/// returns what it injected, in the order of injection. An error here is
/// one of configuration (no `.native` directory, no Redis prefix to
/// flush), found before the load starts.
pub(super) fn start(
    args: &LoadArgs,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<Vec<Injected>>> {
    let plan = Plan::new(args);
    if plan.is_empty() {
        return Ok(tokio::spawn(async { Vec::new() }));
    }
    let system = match args.backend {
        Backend::Compose => System::Compose(compose::Compose),
        Backend::Native => {
            System::Native(native::Native::open(&args.fault_options, plan.may_flush())?)
        }
    };
    let injector = Arc::new(Injector::new(system, plan.pause_default)?);
    Ok(tokio::spawn(plan.run(injector, stop)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(raw: &str) -> Fault {
        raw.parse().unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn error(raw: &str) -> String {
        match raw.parse::<Fault>() {
            Ok(fault) => panic!("{raw} parsed as {fault:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_examples_of_the_syntax_parse() {
        assert_eq!(
            fault("20s:kill:inventory"),
            Fault {
                at: Duration::from_secs(20),
                action: Action::Kill,
                target: Target::Inventory
            }
        );
        assert_eq!(fault("30s:restart:orders").action, Action::Restart);
        assert_eq!(fault("45s:restart:nats").target, Target::Nats);
        assert_eq!(fault("1m:restart:postgres").at, Duration::from_mins(1));
        assert_eq!(fault("60s:flush:redis").action, Action::Flush);
        assert_eq!(
            fault("80s:pause:orders:8s").action,
            Action::Pause(Some(Duration::from_secs(8)))
        );
        assert_eq!(
            fault("500ms:kill:relay-orders-2").target,
            Target::RelayOrders2
        );
    }

    #[test]
    fn flush_targets_redis_when_none_is_named() {
        assert_eq!(fault("60s:flush").target, Target::Redis);
    }

    #[test]
    fn a_pause_without_for_waits_for_the_default() {
        assert_eq!(fault("80s:pause:orders").action, Action::Pause(None));
    }

    #[test]
    fn every_target_name_parses_back_to_itself() {
        for target in Target::all() {
            assert_eq!(target.name().parse::<Target>(), Ok(target));
        }
    }

    #[test]
    fn a_fault_prints_as_the_spec_that_means_it() {
        for raw in [
            "20s:kill:inventory",
            "0s:restart:nats",
            "1500ms:pause:relay-inventory:8s",
            "60s:flush:redis",
        ] {
            assert_eq!(fault(raw).to_string(), raw);
        }
    }

    #[test]
    fn a_bad_time_names_the_part_and_the_syntax() {
        let e = error("kill:inventory");
        assert!(e.contains("AT `kill`"), "{e}");
        assert!(e.contains("AT:ACTION[:TARGET][:FOR]"), "{e}");
        assert!(error("20:kill:inventory").contains("unit"));
    }

    #[test]
    fn an_unknown_action_lists_the_actions() {
        let e = error("20s:crash:inventory");
        assert!(e.contains("unknown action `crash`"), "{e}");
        assert!(e.contains("kill, restart, pause, flush"), "{e}");
        assert!(error("20s").contains("ACTION is missing"));
    }

    #[test]
    fn an_unknown_target_lists_the_targets() {
        let e = error("20s:kill:payments");
        assert!(e.contains("unknown target `payments`"), "{e}");
        assert!(e.contains("relay-notification"), "{e}");
        assert!(e.contains("postgres"), "{e}");
    }

    #[test]
    fn kill_and_pause_need_a_process() {
        assert!(error("20s:kill").contains("`kill` needs a TARGET"));
        let e = error("20s:kill:postgres");
        assert!(e.contains("`kill` does not apply to `postgres`"), "{e}");
        assert!(e.contains("can be restarted"), "{e}");
        assert!(error("20s:pause:redis:5s").contains("`pause` does not apply to `redis`"));
    }

    #[test]
    fn only_redis_can_be_flushed() {
        let e = error("60s:flush:orders");
        assert!(e.contains("`flush` does not apply to `orders`"), "{e}");
        assert!(e.contains("expected one of redis"), "{e}");
    }

    #[test]
    fn only_a_pause_takes_a_duration() {
        assert!(error("30s:kill:orders:8s").contains("FOR applies to `pause` only"));
        assert!(error("30s:pause:orders:soon").contains("FOR `soon`"));
        assert!(error("30s:pause:orders:0s").contains("longer than zero"));
        assert!(error("30s:pause:orders:8s:9s").contains("unexpected `:9s`"));
    }
}
