//! The invariants checked after the load: what must hold however the sale
//! went and whatever failed during it.
//!
//! First [`settle`] waits (up to `--settle`) until nothing is in flight:
//! no order of the run's concerts still `PAID`, every outbox empty, every durable
//! consumer caught up, every e-mail owed sent. Then each invariant is one
//! [`Check`], judged from read-only queries of each service's own database
//! ([`snapshot`]), the public seat map ([`seat_map`]), the streams
//! ([`pipes`]), the mail provider ([`mailbox`]) and what the driver saw:
//!
//! | check | from |
//! |---|---|
//! | the system settles | [`settle`] |
//! | no seat is sold twice | inventory's `seats`, orders' `orders` and `order_lines` ([`sale`]) |
//! | the seat map agrees with inventory | `GET /events/{id}/seats` against `seats` ([`seat_map`]) |
//! | every paid order ends `CONFIRMED` or `REFUNDED` | the driver's paid orders and orders' `paid_at` ([`sale`]) |
//! | reporting's totals equal the confirmed orders | reporting's `sales`, priced by inventory ([`sale`]) |
//! | one e-mail per order and kind | notification's `notifications` and the provider ([`sale`], [`mailbox`]) |
//! | the outboxes drain | the three `outbox` tables ([`pipes`]) |
//! | the consumers catch up | JetStream consumer info ([`pipes`]) |
//! | the dead letters are empty | `DEAD_LETTERS` ([`pipes`]) |
//! | no 5xx other than 503 with `Retry-After` | the driver's answers |
//!
//! A check that could not look (a database down, NATS away) fails and says
//! so: "could not check" must never read as "held".
//!
//! The queries are plain `sqlx::query_as` with their SQL as text, not the
//! compile-time checked macros: ticketctl's macros are checked against one
//! schema (the orders database, `sqlx.toml`), and these read four.

mod mailbox;
mod pipes;
mod sale;
mod seat_map;
mod settle;
mod snapshot;

use std::time::Duration;

use sqlx::PgPool;

use super::{Check, Drive, Injected, Targets};
use crate::commands::support::connect_postgres;
use snapshot::Snapshot;

/// Waits for the system to settle (within `settle`), then checks.
pub(super) async fn check(
    targets: &Targets,
    drive: &Drive,
    settle: Duration,
    injected: &[Injected],
) -> anyhow::Result<Vec<Check>> {
    let sources = Sources::connect(targets).await;
    let mut checks = vec![settle::wait(&sources, &drive.concerts, settle).await];
    let snapshot = Snapshot::read(&sources, &drive.concerts).await;
    let provider = mailbox::read(targets, &snapshot).await;
    // The seat map is judged right after the seats it shows.
    let mut sale = sale::checks(&snapshot, drive, provider.as_ref()).into_iter();
    checks.extend(sale.next());
    checks.push(seat_map::check(targets, &drive.concerts, &snapshot).await);
    checks.extend(sale);
    checks.push(pipes::outboxes(&sources).await);
    checks.push(pipes::consumers(&sources).await);
    checks.push(pipes::dead_letters(&sources, &snapshot).await);
    checks.push(answers(drive, injected));
    Ok(checks)
}

/// The name of the check on the driver's answers.
const ANSWERS: &str = "no 5xx other than 503 with Retry-After";

/// The driver's violations (a 5xx other than 503 with `Retry-After`, or an
/// answer that breaks what the API documents, such as a same-key retry
/// that does not replay), and its transport errors when no fault was
/// injected: with faults, a refused connection is what a killed service
/// looks like; without, it is a service that fell over by itself.
fn answers(drive: &Drive, injected: &[Injected]) -> Check {
    let answered: u64 = drive.statuses.values().sum();
    let transport_errors: u64 = drive
        .statuses
        .iter()
        .filter(|((_, status), _)| *status == 0)
        .map(|(_, count)| count)
        .sum();
    let unexcused_transport = if injected.is_empty() {
        transport_errors
    } else {
        0
    };
    let ok = drive.violations.is_empty() && unexcused_transport == 0;
    let counts = format!(
        "{answered} answers, {} violations, {transport_errors} transport errors ({})",
        drive.violations.len(),
        if injected.is_empty() {
            "no fault injected: each is a violation"
        } else {
            "faults injected: excused"
        },
    );
    let mut detail = if drive.violations.is_empty() {
        counts
    } else {
        format!("{counts}; {}", first_few(&drive.violations))
    };
    if !drive.transport_errors.is_empty() {
        detail = format!(
            "{detail}; no answer: {}",
            first_few(&drive.transport_errors)
        );
    }
    Check {
        name: ANSWERS,
        ok,
        detail,
    }
}

/// How many offenders a failed check names.
const OFFENDERS_SHOWN: usize = 5;

/// The first few of `offenders`, and how many more there are.
fn first_few<T: std::fmt::Display>(offenders: &[T]) -> String {
    let mut shown: Vec<String> = offenders
        .iter()
        .take(OFFENDERS_SHOWN)
        .map(ToString::to_string)
        .collect();
    if offenders.len() > OFFENDERS_SHOWN {
        shown.push(format!("and {} more", offenders.len() - OFFENDERS_SHOWN));
    }
    shown.join("; ")
}

/// A check that could not look: failed, saying why.
fn could_not_look(name: &'static str, error: &anyhow::Error) -> Check {
    Check {
        name,
        ok: false,
        detail: format!("could not check: {error:#}"),
    }
}

/// A service database, or why it could not be reached.
struct Database {
    name: &'static str,
    pool: Result<PgPool, String>,
}

impl Database {
    async fn connect(name: &'static str, url: &str) -> Self {
        // Two connections: the checks run one query at a time.
        let pool = connect_postgres(url, 2).await.map_err(|e| format!("{e:#}"));
        Self { name, pool }
    }

    fn pool(&self) -> anyhow::Result<&PgPool> {
        self.pool
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{} database: {e}", self.name))
    }
}

/// Everything the checks read, each connected once; a part that could not
/// be reached fails the checks that need it, not the others.
struct Sources {
    orders: Database,
    inventory: Database,
    reporting: Database,
    notification: Database,
    nats: Result<(async_nats::jetstream::Context, messaging::Topology), String>,
}

impl Sources {
    async fn connect(targets: &Targets) -> Self {
        Self {
            orders: Database::connect("orders", &targets.orders_database_url).await,
            inventory: Database::connect("inventory", &targets.inventory_database_url).await,
            reporting: Database::connect("reporting", &targets.reporting_database_url).await,
            notification: Database::connect("notification", &targets.notification_database_url)
                .await,
            nats: targets.nats.connect().await.map_err(|e| format!("{e:#}")),
        }
    }

    fn nats(&self) -> anyhow::Result<(&async_nats::jetstream::Context, &messaging::Topology)> {
        self.nats
            .as_ref()
            .map(|(js, topology)| (js, topology))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The databases that hold an outbox.
    fn outboxes(&self) -> [&Database; 3] {
        [&self.orders, &self.inventory, &self.notification]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;

    fn drive(statuses: &[(u16, u64)], violations: &[&str]) -> Drive {
        Drive {
            concerts: vec![Uuid::nil()],
            seats: 10,
            offered_rate: 10.0,
            achieved_rate: 10.0,
            elapsed: Duration::from_secs(1),
            scenarios: BTreeMap::new(),
            http: BTreeMap::new(),
            statuses: statuses
                .iter()
                .map(|&(status, count)| (("POST /orders".to_owned(), status), count))
                .collect(),
            violations: violations.iter().map(|&v| v.to_owned()).collect(),
            transport_errors: Vec::new(),
            paid: Vec::new(),
        }
    }

    fn fault() -> Injected {
        Injected {
            at_s: 1.0,
            action: "kill inventory".into(),
            result: "ok".into(),
            ready_after_s: Some(2.5),
        }
    }

    #[test]
    fn a_transport_error_is_a_violation_only_when_no_fault_was_injected() {
        let drive = drive(&[(201, 10), (0, 2)], &[]);
        let without_faults = answers(&drive, &[]);
        assert!(!without_faults.ok, "{}", without_faults.detail);
        let with_a_fault = answers(&drive, &[fault()]);
        assert!(with_a_fault.ok, "{}", with_a_fault.detail);
    }

    #[test]
    fn a_request_without_an_answer_is_named_with_its_cause() {
        let mut drive = drive(&[(201, 10), (0, 1)], &[]);
        drive.transport_errors =
            vec!["POST /orders: error sending request: operation timed out".to_owned()];
        let check = answers(&drive, &[]);
        assert!(!check.ok);
        assert!(
            check
                .detail
                .contains("no answer: POST /orders: error sending request: operation timed out"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn the_drivers_violations_fail_the_check_and_are_named() {
        let drive = drive(&[(500, 1)], &["POST /orders answered 500 at 3.2 s"]);
        let check = answers(&drive, &[fault()]);
        assert!(!check.ok);
        assert!(
            check.detail.contains("answered 500 at 3.2 s"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn first_few_names_five_and_counts_the_rest() {
        let offenders: Vec<u32> = (1..=8).collect();
        assert_eq!(first_few(&offenders), "1; 2; 3; 4; 5; and 3 more");
        assert_eq!(first_few(&offenders[..2]), "1; 2");
    }
}
