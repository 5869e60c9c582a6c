//! The sale's invariants, judged from a [`Snapshot`] of the databases (and
//! the mail provider's count): pure functions, so each is tested here on
//! made-up states, including the broken ones a run must never produce.
//!
//! Long because each invariant is tested here on good and broken states;
//! the checks themselves are about 280 lines.

use std::collections::{BTreeMap, BTreeSet};

use contracts::notifications::EmailKind;
use orders::domain::OrderStatus;
use uuid::Uuid;

use super::mailbox::Provider;
use super::snapshot::{Notification, Orders, Sales, SalesByConcert, SeatRef, Seats, Snapshot};
use super::{could_not_look, first_few};
use crate::commands::load::{Check, Drive};

const NO_SEAT_SOLD_TWICE: &str = "no seat is sold twice";
const PAID_ORDERS_END: &str = "every paid order ends CONFIRMED or REFUNDED";
const REPORTING_TOTALS: &str = "reporting's totals equal the confirmed orders";
const EMAILS: &str = "one e-mail per order and kind, and every settled order got its e-mails";

/// The four checks of the sale, in the report's order: the seats first.
pub(super) fn checks(
    snapshot: &Snapshot,
    drive: &Drive,
    provider: Result<&Provider, &anyhow::Error>,
) -> Vec<Check> {
    let seats_check = match (&snapshot.orders, &snapshot.seats) {
        (Ok(orders), Ok(seats)) => no_seat_sold_twice(orders, seats),
        (Err(e), _) | (_, Err(e)) => could_not_look(NO_SEAT_SOLD_TWICE, e),
    };
    let paid_check = match &snapshot.orders {
        Ok(orders) => paid_orders_end(orders, &drive.paid),
        Err(e) => could_not_look(PAID_ORDERS_END, e),
    };
    let reporting_check = match (&snapshot.orders, &snapshot.seats, &snapshot.sales) {
        (Ok(orders), Ok(seats), Ok(sales)) => reporting_totals(orders, seats, sales),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => could_not_look(REPORTING_TOTALS, e),
    };
    let emails_check = match (&snapshot.orders, &snapshot.notifications, provider) {
        (Ok(orders), Ok(notifications), Ok(provider)) => emails(orders, notifications, provider),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => could_not_look(EMAILS, e),
    };
    vec![seats_check, paid_check, reporting_check, emails_check]
}

/// Every `SOLD` seat belongs to the one `CONFIRMED` order that lists it,
/// and every confirmed order's seats are sold to it: so no seat went to
/// two customers, and no customer holds a confirmation without a seat.
fn no_seat_sold_twice(orders: &Orders, seats: &Seats) -> Check {
    let mut offenders = Vec::new();
    let mut sold = 0;
    for (seat_id, seat) in seats {
        let Some(buyer) = seat.sold_to else { continue };
        sold += 1;
        match orders.by_id.get(&buyer) {
            None => offenders.push(format!(
                "{seat_id} is sold to {buyer}, an order orders does not have"
            )),
            Some(order) if order.status != OrderStatus::Confirmed => offenders.push(format!(
                "{seat_id} is sold to {buyer}, which is {}",
                order.status
            )),
            Some(order) if !order.seats.contains(seat_id) => offenders.push(format!(
                "{seat_id} is sold to {buyer}, which does not list it"
            )),
            Some(_) => {}
        }
    }
    let mut holders: BTreeMap<&SeatRef, Vec<Uuid>> = BTreeMap::new();
    let mut confirmed = 0;
    for (id, order) in orders.with_status(OrderStatus::Confirmed) {
        confirmed += 1;
        for seat_id in &order.seats {
            holders.entry(seat_id).or_default().push(*id);
            match seats.get(seat_id).and_then(|seat| seat.sold_to) {
                Some(buyer) if buyer == *id => {}
                Some(buyer) => offenders.push(format!(
                    "confirmed order {id} lists {seat_id}, which is sold to {buyer}"
                )),
                None => offenders.push(format!(
                    "confirmed order {id} lists {seat_id}, which inventory has not sold"
                )),
            }
        }
    }
    for (seat_id, ids) in holders.iter().filter(|(_, ids)| ids.len() > 1) {
        offenders.push(format!(
            "{seat_id} is in {} confirmed orders ({})",
            ids.len(),
            first_few(ids)
        ));
    }
    offenders.sort();
    let counts = format!("{sold} seats sold; {confirmed} CONFIRMED orders");
    verdict(NO_SEAT_SOLD_TWICE, &counts, &offenders)
}

/// Every order that was paid (answered 200 to the driver, or `paid_at`
/// set in orders) ended its saga: confirmed, or refunded.
fn paid_orders_end(orders: &Orders, answered_paid: &[Uuid]) -> Check {
    let mut paid: BTreeSet<Uuid> = orders.paid().map(|(id, _)| *id).collect();
    paid.extend(answered_paid);
    let (mut confirmed, mut refunded) = (0, 0);
    let mut offenders = Vec::new();
    for id in &paid {
        match orders.by_id.get(id).map(|order| order.status) {
            None => offenders.push(format!("{id} was paid (200), but orders does not have it")),
            Some(OrderStatus::Confirmed) => confirmed += 1,
            Some(OrderStatus::Refunded) => refunded += 1,
            Some(status) => offenders.push(format!("{id} is {status}")),
        }
    }
    let counts = format!(
        "{} paid orders ({} answered 200 to the driver): {confirmed} CONFIRMED, {refunded} REFUNDED",
        paid.len(),
        answered_paid.len(),
    );
    verdict(PAID_ORDERS_END, &counts, &offenders)
}

/// Reporting's row of each concert equals what its confirmed and refunded
/// orders add up to, as `reporting::projection` counts them: an
/// `OrderConfirmed` adds its seats and its amount (inventory's prices of
/// those seats), an `OrderRefunded` adds one refund; nothing else counts.
fn reporting_totals(orders: &Orders, seats: &Seats, reported: &SalesByConcert) -> Check {
    let mut expected: SalesByConcert = reported.keys().map(|&c| (c, Sales::default())).collect();
    let mut offenders = Vec::new();
    for (id, order) in orders.with_status(OrderStatus::Confirmed) {
        let totals = expected.entry(order.concert).or_default();
        totals.tickets_sold += i64::try_from(order.seats.len()).unwrap_or(i64::MAX);
        for seat in &order.seats {
            match seats.get(seat) {
                Some(priced) => totals.revenue_cents += priced.price_cents,
                None => offenders.push(format!("{id} lists {seat}, which inventory lacks")),
            }
        }
    }
    for (_, order) in orders.with_status(OrderStatus::Refunded) {
        expected.entry(order.concert).or_default().refunds += 1;
    }
    let show = |s: Sales| {
        format!(
            "{} tickets, {} cents, {} refunds",
            s.tickets_sold, s.revenue_cents, s.refunds
        )
    };
    let mut wrong = Vec::new();
    for (concert, expected) in &expected {
        let reported = reported.get(concert).copied().unwrap_or_default();
        if reported != *expected {
            wrong.push(format!(
                "reporting has {} for {concert}, its orders add up to {}",
                show(reported),
                show(*expected)
            ));
        }
    }
    offenders.splice(0..0, wrong);
    let total = reported.values().fold(Sales::default(), |sum, s| Sales {
        tickets_sold: sum.tickets_sold + s.tickets_sold,
        revenue_cents: sum.revenue_cents + s.revenue_cents,
        refunds: sum.refunds + s.refunds,
    });
    let counts = match reported.len() {
        1 => show(total),
        n => format!("{} over {n} concerts", show(total)),
    };
    verdict(REPORTING_TOTALS, &counts, &offenders)
}

/// Each paid order owes a `payment_received` e-mail, each confirmed one an
/// `order_confirmed`, each refunded one an `order_refunded`: each must be
/// recorded once and sent, nothing else may be, and the provider (when it
/// can be counted) must have received each exactly once.
fn emails(orders: &Orders, notifications: &[Notification], provider: &Provider) -> Check {
    let owed = owed_emails(orders);
    let recorded: BTreeMap<(Uuid, &str), bool> = notifications
        .iter()
        .map(|n| ((n.order_id, n.kind.as_str()), n.sent))
        .collect();
    let mut offenders = Vec::new();
    for (order_id, kind) in &owed {
        match recorded.get(&(*order_id, *kind)) {
            None => offenders.push(format!("{order_id} {kind}: never requested")),
            Some(false) => offenders.push(format!("{order_id} {kind}: not sent")),
            Some(true) => {}
        }
    }
    for (order_id, kind) in recorded.keys() {
        if !owed.contains(&(*order_id, *kind)) {
            let status = orders
                .by_id
                .get(order_id)
                .map_or_else(|| "unknown".to_owned(), |o| o.status.to_string());
            offenders.push(format!(
                "{order_id} {kind}: recorded, but the order is {status}"
            ));
        }
    }
    let sent = recorded.values().filter(|sent| **sent).count();
    let mut counts = format!("{} e-mails owed, {sent} sent", owed.len());
    match provider {
        Provider::NotChecked => {
            counts.push_str(
                "; the provider was not checked (give --email-log or --mailpit-url to count \
                 what went out)",
            );
        }
        Provider::Counted { source, received } => {
            let owed_references: BTreeSet<String> =
                owed.iter().map(|(id, kind)| reference(*id, kind)).collect();
            for owed_reference in &owed_references {
                match received.get(owed_reference).copied().unwrap_or(0) {
                    1 => {}
                    0 => offenders.push(format!("{owed_reference}: not at the provider")),
                    n => offenders.push(format!("{owed_reference}: received {n} times")),
                }
            }
            for (other, n) in received {
                if !owed_references.contains(other) {
                    offenders.push(format!("{other}: received {n} times, never owed"));
                }
            }
            let total: u64 = received.values().map(|n| u64::from(*n)).sum();
            counts = format!("{counts}; {total} received at {source}");
        }
    }
    verdict(EMAILS, &counts, &offenders)
}

/// The e-mails the orders' fates owe, as (order, kind).
fn owed_emails(orders: &Orders) -> BTreeSet<(Uuid, &'static str)> {
    let mut owed = BTreeSet::new();
    for (id, order) in orders.paid() {
        owed.insert((*id, EmailKind::PaymentReceived.as_str()));
        match order.status {
            OrderStatus::Confirmed => {
                owed.insert((*id, EmailKind::OrderConfirmed.as_str()));
            }
            OrderStatus::Refunded => {
                owed.insert((*id, EmailKind::OrderRefunded.as_str()));
            }
            _ => {}
        }
    }
    owed
}

/// The provider's name for an e-mail: the notification worker's
/// `reference`, `<order_id>-<kind>`.
pub(super) fn reference(order_id: Uuid, kind: &str) -> String {
    format!("{order_id}-{kind}")
}

/// A check that held when there are no offenders.
fn verdict(name: &'static str, counts: &str, offenders: &[String]) -> Check {
    if offenders.is_empty() {
        Check {
            name,
            ok: true,
            detail: counts.to_owned(),
        }
    } else {
        Check {
            name,
            ok: false,
            detail: format!(
                "{counts}; {} violations: {}",
                offenders.len(),
                first_few(offenders)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::commands::load::invariants::snapshot::{Order, Seat};

    const PRICE: i64 = 4_500;
    const CONCERT: Uuid = Uuid::from_u128(77);

    fn seat(label: &str) -> SeatRef {
        SeatRef {
            concert: CONCERT,
            label: label.to_owned(),
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Orders 1.. with the given status and seats, all paid except
    /// `PENDING` and `CANCELLED` ones.
    fn orders(list: &[(u128, OrderStatus, &[&str])]) -> Orders {
        let by_id = list
            .iter()
            .map(|&(n, status, seats)| {
                let order = Order {
                    concert: CONCERT,
                    status,
                    reached_paid: !matches!(status, OrderStatus::Pending | OrderStatus::Cancelled),
                    seats: seats.iter().map(|&s| seat(s)).collect(),
                };
                (id(n), order)
            })
            .collect();
        Orders { by_id }
    }

    /// Seats `A-1`..`A-5`, sold as given.
    fn seats(sold: &[(&str, u128)]) -> Seats {
        let sold: HashMap<&str, u128> = sold.iter().copied().collect();
        (1..=5)
            .map(|n| {
                let label = format!("A-{n}");
                let sold_to = sold.get(label.as_str()).map(|&n| id(n));
                let priced = Seat {
                    price_cents: PRICE,
                    sold_to,
                };
                (seat(&label), priced)
            })
            .collect()
    }

    #[test]
    fn a_sale_where_each_seat_went_to_its_confirmed_order_holds() {
        let orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1", "A-2"]),
            (2, OrderStatus::Refunded, &["A-2"]),
            (3, OrderStatus::Cancelled, &["A-3"]),
        ]);
        let check = no_seat_sold_twice(&orders, &seats(&[("A-1", 1), ("A-2", 1)]));
        assert!(check.ok, "{}", check.detail);
        assert_eq!(check.detail, "2 seats sold; 1 CONFIRMED orders");
    }

    #[test]
    fn a_seat_in_two_confirmed_orders_is_a_violation() {
        let orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1"]),
            (2, OrderStatus::Confirmed, &["A-1"]),
        ]);
        let check = no_seat_sold_twice(&orders, &seats(&[("A-1", 1)]));
        assert!(!check.ok);
        assert!(
            check.detail.contains("A-1 is in 2 confirmed orders"),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains("which is sold to"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_seat_sold_to_a_refunded_order_is_a_violation() {
        let orders = orders(&[(2, OrderStatus::Refunded, &["A-2"])]);
        let check = no_seat_sold_twice(&orders, &seats(&[("A-2", 2)]));
        assert!(!check.ok);
        assert!(
            check.detail.contains("which is REFUNDED"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_confirmed_order_without_its_seat_is_a_violation() {
        let orders = orders(&[(1, OrderStatus::Confirmed, &["A-1", "A-2"])]);
        let check = no_seat_sold_twice(&orders, &seats(&[("A-1", 1)]));
        assert!(!check.ok);
        assert!(
            check.detail.contains("A-2, which inventory has not sold"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_paid_order_still_paid_or_unknown_is_a_violation() {
        let orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1"]),
            (2, OrderStatus::Paid, &["A-2"]),
        ]);
        let check = paid_orders_end(&orders, &[id(1), id(9)]);
        assert!(!check.ok);
        assert!(
            check.detail.contains(&format!("{} is PAID", id(2))),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains(&format!("{} was paid (200)", id(9))),
            "{}",
            check.detail
        );
        assert!(
            check.detail.starts_with("3 paid orders (2 answered 200"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn paid_orders_that_ended_hold() {
        let orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1"]),
            (2, OrderStatus::Refunded, &["A-2"]),
            (3, OrderStatus::Pending, &["A-3"]),
        ]);
        let check = paid_orders_end(&orders, &[id(1)]);
        assert!(check.ok, "{}", check.detail);
        assert!(
            check.detail.ends_with("1 CONFIRMED, 1 REFUNDED"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn reporting_must_count_the_confirmed_seats_at_inventorys_prices() {
        let orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1", "A-2"]),
            (2, OrderStatus::Refunded, &["A-3"]),
        ]);
        let seats = seats(&[("A-1", 1), ("A-2", 1)]);
        let right = Sales {
            tickets_sold: 2,
            revenue_cents: 2 * PRICE,
            refunds: 1,
        };
        let reported = |sales| BTreeMap::from([(CONCERT, sales)]);
        assert!(reporting_totals(&orders, &seats, &reported(right)).ok);
        let short = Sales {
            revenue_cents: PRICE,
            ..right
        };
        let check = reporting_totals(&orders, &seats, &reported(short));
        assert!(!check.ok);
        assert!(
            check
                .detail
                .contains("its orders add up to 2 tickets, 9000 cents"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn reporting_is_judged_per_concert_not_in_sum() {
        let other = Uuid::from_u128(78);
        let mut orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1"]),
            (2, OrderStatus::Confirmed, &["A-1"]),
        ]);
        let moved = orders.by_id.get_mut(&id(2)).unwrap();
        moved.concert = other;
        moved.seats[0].concert = other;
        let mut seats = seats(&[("A-1", 1)]);
        let theirs = SeatRef {
            concert: other,
            label: "A-1".into(),
        };
        seats.insert(
            theirs,
            Seat {
                price_cents: PRICE,
                sold_to: Some(id(2)),
            },
        );
        assert!(no_seat_sold_twice(&orders, &seats).ok, "one seat each");
        let one = Sales {
            tickets_sold: 1,
            revenue_cents: PRICE,
            refunds: 0,
        };
        let split = BTreeMap::from([(CONCERT, one), (other, one)]);
        let check = reporting_totals(&orders, &seats, &split);
        assert!(check.ok, "{}", check.detail);
        assert!(
            check.detail.ends_with("over 2 concerts"),
            "{}",
            check.detail
        );
        // Both tickets counted under one concert: right in sum, wrong per
        // concert.
        let two = Sales {
            tickets_sold: 2,
            revenue_cents: 2 * PRICE,
            refunds: 0,
        };
        let lumped = BTreeMap::from([(CONCERT, two), (other, Sales::default())]);
        let check = reporting_totals(&orders, &seats, &lumped);
        assert!(!check.ok);
        assert!(
            check
                .detail
                .contains(&format!("0 tickets, 0 cents, 0 refunds for {other}")),
            "{}",
            check.detail
        );
    }

    fn sent(order: u128, kind: EmailKind) -> Notification {
        Notification {
            order_id: id(order),
            kind: kind.as_str().to_owned(),
            sent: true,
        }
    }

    fn counted(references: &[(String, u32)]) -> Provider {
        Provider::Counted {
            source: "the log".into(),
            received: references.iter().cloned().collect(),
        }
    }

    #[test]
    fn every_owed_email_sent_once_holds() {
        let orders = orders(&[
            (1, OrderStatus::Confirmed, &["A-1"]),
            (2, OrderStatus::Refunded, &["A-2"]),
            (3, OrderStatus::Cancelled, &["A-3"]),
        ]);
        let notifications = [
            sent(1, EmailKind::PaymentReceived),
            sent(1, EmailKind::OrderConfirmed),
            sent(2, EmailKind::PaymentReceived),
            sent(2, EmailKind::OrderRefunded),
        ];
        let provider = counted(
            &notifications
                .iter()
                .map(|n| (reference(n.order_id, &n.kind), 1))
                .collect::<Vec<_>>(),
        );
        let check = emails(&orders, &notifications, &provider);
        assert!(check.ok, "{}", check.detail);
        assert_eq!(
            check.detail,
            "4 e-mails owed, 4 sent; 4 received at the log"
        );
    }

    #[test]
    fn a_duplicate_at_the_provider_or_a_missing_email_is_a_violation() {
        let orders = orders(&[(1, OrderStatus::Confirmed, &["A-1"])]);
        let notifications = [sent(1, EmailKind::PaymentReceived)];
        let provider = counted(&[(reference(id(1), "payment_received"), 2)]);
        let check = emails(&orders, &notifications, &provider);
        assert!(!check.ok);
        assert!(
            check.detail.contains("order_confirmed: never requested"),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains("payment_received: received 2 times"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn without_a_provider_the_detail_says_it_was_not_checked() {
        let orders = orders(&[(3, OrderStatus::Pending, &["A-3"])]);
        let check = emails(&orders, &[], &Provider::NotChecked);
        assert!(check.ok);
        assert!(
            check.detail.contains("the provider was not checked"),
            "{}",
            check.detail
        );
    }
}
