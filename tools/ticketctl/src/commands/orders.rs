//! `ticketctl orders stuck [--older-than 5m]`: the paid orders still
//! waiting for inventory's answer past the saga's deadline, the ones the
//! orders service counts as `orders_stuck_paid` (`orders::stuck`).
//!
//! Exit status: 0 when none is stuck, [`super::NeedsAttention::EXIT_CODE`]
//! (3) when some are, 1 when the command could not look. A cron job or a
//! CI step can then tell "all settled" from "a human must act" from
//! "could not check".

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, Subcommand};
use orders::stuck::StuckOrder;

use super::NeedsAttention;
use super::support::{connect_postgres, defaults};

/// Order commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Orders {
    /// Paid orders past the deadline, longest-waiting first (exit status 3
    /// when there are any).
    Stuck(StuckArgs),
}

/// Which orders count as stuck, and where to look.
#[derive(Debug, Args)]
pub(crate) struct StuckArgs {
    /// Paid longer ago than this (`90s`, `5m`, `2h`); by default the
    /// service's own deadline, `PAID_DEADLINE`, or 5m when it is unset.
    #[arg(long, env = "PAID_DEADLINE", value_parser = super::support::duration)]
    older_than: Option<Duration>,
    /// The most orders to list.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// The orders database.
    #[arg(long, env = "ORDERS_DATABASE_URL", default_value = defaults::ORDERS_DATABASE)]
    database_url: String,
}

/// Runs an order command.
pub(crate) async fn run(command: Orders) -> anyhow::Result<()> {
    let Orders::Stuck(args) = command;
    let older_than = args
        .older_than
        .unwrap_or(orders::config::DEFAULT_PAID_DEADLINE);
    // One connection: the command is one query.
    let db = connect_postgres(&args.database_url, 1).await?;
    let stuck = orders::stuck::list(&db, older_than, args.limit).await?;
    print!("{}", table(&stuck));
    if i64::try_from(stuck.len()) == Ok(args.limit) {
        println!("(the first {}; --limit shows more)", args.limit);
    }
    verdict(stuck.len(), older_than)
}

/// The listing: a header and one line per order, or one line saying
/// there is none.
fn table(stuck: &[StuckOrder]) -> String {
    if stuck.is_empty() {
        return "no paid order is past the deadline\n".to_owned();
    }
    let mut text = format!(
        "{:<36}  {:<36}  {:<20}  {:>8}  {}\n",
        "order", "concert", "paid at (UTC)", "age", "customer"
    );
    for order in stuck {
        let customer = order
            .customer_id
            .map_or_else(|| "-".to_owned(), |id| id.to_string());
        writeln!(
            text,
            "{:<36}  {:<36}  {:<20}  {:>8}  {customer}",
            order.id,
            order.event_id,
            order.paid_at.format("%Y-%m-%d %H:%M:%S"),
            age(order.age_secs),
        )
        .expect("writing to a String cannot fail");
    }
    text
}

/// Success when nothing is stuck; otherwise the finding that sets the
/// exit status.
fn verdict(stuck: usize, older_than: Duration) -> anyhow::Result<()> {
    if stuck == 0 {
        return Ok(());
    }
    Err(NeedsAttention(format!(
        "{stuck} paid order(s) waiting longer than {} for inventory's answer: \
         see \"Stuck paid orders\" in docs/operations.md",
        age(older_than.as_secs_f64())
    ))
    .into())
}

/// An age an operator reads at a glance: `42s`, `7m05s`, `3h12m`, `2d04h`.
fn age(secs: f64) -> String {
    // Whole seconds are precise enough for minutes-long waits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = secs.max(0.0) as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use uuid::Uuid;

    use super::*;
    use crate::commands::support::duration;

    #[test]
    fn stuck_orders_make_the_command_need_attention_and_none_succeed() {
        let needs = verdict(2, Duration::from_mins(5)).unwrap_err();

        assert!(needs.is::<NeedsAttention>(), "{needs}");
        assert!(needs.to_string().contains("2 paid order(s)"), "{needs}");
        assert!(verdict(0, Duration::from_mins(5)).is_ok());
    }

    #[test]
    fn each_stuck_order_is_a_line_with_its_concert_paid_at_age_and_customer() {
        let order = StuckOrder {
            id: Uuid::from_u128(1),
            event_id: Uuid::from_u128(2),
            customer_id: None,
            paid_at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 30, 9, 15, 0)
                .unwrap(),
            age_secs: 425.7,
        };

        let text = table(&[order]);

        let line = text.lines().nth(1).unwrap();
        assert!(
            line.starts_with("00000000-0000-0000-0000-000000000001"),
            "{line}"
        );
        assert!(
            line.contains("00000000-0000-0000-0000-000000000002"),
            "{line}"
        );
        assert!(line.contains("2026-11-30 09:15:00"), "{line}");
        assert!(line.contains("7m05s"), "{line}");
        assert!(line.ends_with("  -"), "{line}");
    }

    #[test]
    fn ages_read_in_the_largest_sensible_units() {
        assert_eq!(age(42.9), "42s");
        assert_eq!(age(3_599.0), "59m59s");
        assert_eq!(age(3.0 * 3_600.0 + 12.0 * 60.0), "3h12m");
        assert_eq!(age(2.0 * 86_400.0 + 4.0 * 3_600.0), "2d04h");
    }

    #[test]
    fn older_than_reads_durations_as_the_services_do() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("5m"), Ok(Duration::from_mins(5)));
        let refused = duration("soon").unwrap_err();
        assert!(
            refused.starts_with("expected a number with a unit"),
            "{refused}"
        );
    }
}
