//! What one buyer does: one of five scripts, chosen by weight, that
//! between them bring the contention of a real sale.
//!
//! | scenario | share | the buyer | what it puts to the test |
//! |---|---|---|---|
//! | `buy` | 45 % | reads the seat map, holds 1–2 free seats, orders, pays | the happy path, the seat map under load |
//! | `hot` | 25 % | holds one of the few hot seats; the winner orders and pays | one seat, many buyers: one hold wins, the rest get 409 |
//! | `abandon` | 15 % | holds and orders, then cancels (half) or walks away | released seats, holds that lapse, orders never paid |
//! | `double_pay` | 10 % | pays one order twice at once, with two keys | the state machine: exactly one pay wins |
//! | `retry_pay` | 5 % | pays, then pays again with the same key | idempotency: the same answer, replayed |
//!
//! Each buyer is a new customer with a token of their own. Plain seats
//! (all but the hot ones) come from one cursor that all buyers share
//! ([`seats`]), so buyers mostly want different seats and collide where
//! the load means them to: on the hot seats. Every request goes through
//! [`http`], which records it and judges the answer against what the API
//! promises; the scripts add the promises only they can see (a same-key
//! retry answered differently, both pays of one order answered 200).
//!
//! Long because the five scripts share one `Sale` and its steps (hold,
//! order, pay), which read best next to each other; the request plumbing is
//! in `scenario/http.rs`, the seat cursor in `scenario/seats.rs`, and about
//! 270 lines are the tests.

mod http;
mod seats;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use httpkit::auth::dev::{Issuer, TokenRequest};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

pub(super) use http::{Answer, Route};
pub(super) use seats::seat_label;

use http::{Outcome, is_invalid_transition};
use seats::{SeatPicker, seat_number};

/// One buyer's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scenario {
    Buy,
    Hot,
    Abandon,
    DoublePay,
    RetryPay,
}

impl Scenario {
    /// Each scenario with its share of the buyers, in percent; the shares
    /// add up to 100.
    const MIX: [(Self, u64); 5] = [
        (Self::Buy, 45),
        (Self::Hot, 25),
        (Self::Abandon, 15),
        (Self::DoublePay, 10),
        (Self::RetryPay, 5),
    ];

    /// Its name in the report.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Hot => "hot",
            Self::Abandon => "abandon",
            Self::DoublePay => "double_pay",
            Self::RetryPay => "retry_pay",
        }
    }

    /// The scenario of buyer `index`. `index × 37 mod 100` visits every
    /// number below 100 once in any hundred consecutive buyers (37 is prime
    /// to 100), so every hundred buyers play exactly the mix, and the
    /// scenarios interleave instead of coming in blocks: a short run gets
    /// them all, and a run is the same every time.
    pub(super) fn of_buyer(index: u64) -> Self {
        let mut roll = (index % 100) * 37 % 100;
        for (scenario, share) in Self::MIX {
            if roll < share {
                return scenario;
            }
            roll -= share;
        }
        // Not reached while the shares add up to 100 (a test checks).
        Self::Buy
    }
}

/// What every buyer shares: the one HTTP client (one connection pool),
/// where the APIs are, the concerts and their seats on offer, and the
/// issuer each buyer's token comes from.
pub(super) struct Sale {
    http: reqwest::Client,
    orders_url: String,
    inventory_url: String,
    /// The concerts on sale, one after another: buyer `i` buys for
    /// `concerts[i / buyers_per_concert]` (the last one takes any rest).
    concerts: Vec<Concert>,
    buyers_per_concert: u64,
    issuer: Issuer,
    /// Transport failures and 5xx answers so far, for the progress bar.
    pub(super) errors: AtomicU64,
}

/// One concert of the sale: its id and the seats buyers ask for.
pub(super) struct Concert {
    id: Uuid,
    seats: SeatPicker,
}

/// Where the sale's buyers go and what they buy.
pub(super) struct Offer<'a> {
    pub(super) orders_url: &'a str,
    pub(super) inventory_url: &'a str,
    /// The concerts, in the order their buyers come.
    pub(super) concerts: &'a [Uuid],
    /// Seats of each concert, `A-1` … `A-{seats}`, of which `A-1` …
    /// `A-{hot}` are the hot ones.
    pub(super) seats: u32,
    pub(super) hot: u32,
    /// Buyers per concert before the next one's turn.
    pub(super) buyers_per_concert: u64,
}

impl Sale {
    /// The sale of `offer`'s concerts, in that order.
    pub(super) fn new(http: reqwest::Client, offer: &Offer<'_>, issuer: Issuer) -> Self {
        assert!(!offer.concerts.is_empty(), "a sale needs a concert");
        Self {
            http,
            orders_url: offer.orders_url.trim_end_matches('/').to_owned(),
            inventory_url: offer.inventory_url.trim_end_matches('/').to_owned(),
            concerts: offer
                .concerts
                .iter()
                .map(|&id| Concert {
                    id,
                    seats: SeatPicker::new(offer.seats, offer.hot),
                })
                .collect(),
            buyers_per_concert: offer.buyers_per_concert.max(1),
            issuer,
            errors: AtomicU64::new(0),
        }
    }

    /// The concert buyer `index` buys for.
    fn concert_of(&self, index: u64) -> &Concert {
        let turn = usize::try_from(index / self.buyers_per_concert).unwrap_or(usize::MAX);
        // `drive` creates enough concerts for every buyer; were it short,
        // the last one would take the rest.
        &self.concerts[turn.min(self.concerts.len() - 1)]
    }
}

/// What a buyer did and saw, for the driver's totals.
#[derive(Debug)]
pub(super) struct Played {
    pub(super) scenario: Scenario,
    pub(super) answers: Vec<Answer>,
    pub(super) violations: Vec<String>,
    /// Why each request without an answer got none (`route: error`).
    pub(super) transport: Vec<String>,
    /// Orders whose pay was answered 200 (at least once).
    pub(super) paid: Vec<Uuid>,
    /// The buyer found no plain seat free to hold (all sold or held).
    pub(super) sold_out: bool,
}

/// Plays buyer `index`'s scenario; its first request is due at `slot`.
/// An error is a fault of the driver (a request it cannot build), not of
/// the system, which is judged in [`Played`].
pub(super) async fn play(sale: &Sale, index: u64, slot: Instant) -> anyhow::Result<Played> {
    let scenario = Scenario::of_buyer(index);
    let buyer = Buyer::new(sale, index, slot)?;
    match scenario {
        Scenario::Buy => buyer.buy().await?,
        Scenario::Hot => buyer.hot().await?,
        Scenario::Abandon => buyer.abandon().await?,
        Scenario::DoublePay => buyer.double_pay().await?,
        Scenario::RetryPay => buyer.retry_pay().await?,
    }
    Ok(buyer.played(scenario))
}

/// A well-spread number from a buyer's index (splitmix64's finalizer): the
/// buyer's choices (how many seats, which hot seat, whether to cancel) are
/// random-looking yet the same in every run.
fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One customer playing one scenario. Its methods take `&self` so that
/// two requests can be in flight at once (the double pay); the journal
/// and the slot sit behind locks that are never held across an await.
struct Buyer<'a> {
    sale: &'a Sale,
    /// The concert this buyer buys for.
    concert: &'a Concert,
    index: u64,
    roll: u64,
    token: String,
    /// The first request's scheduled start; taken by that request. Later
    /// requests are due when they are sent: the buyer does not think.
    slot: Mutex<Option<Instant>>,
    journal: Mutex<Journal>,
}

#[derive(Debug, Default)]
struct Journal {
    answers: Vec<Answer>,
    violations: Vec<String>,
    transport: Vec<String>,
    paid: Vec<Uuid>,
    sold_out: bool,
}

/// A held seat, as an order line needs it.
#[derive(Debug, Clone, Copy)]
struct Held {
    seat: u32,
    hold_token: Uuid,
}

/// A created order.
#[derive(Debug)]
struct Order {
    id: Uuid,
    seats: Vec<u32>,
}

/// How a hold went.
enum Holding {
    Held(Held),
    /// 409: held by someone else or sold; another seat may do.
    Taken,
    /// Any other outcome: the buyer stops.
    Stopped,
}

impl<'a> Buyer<'a> {
    /// Buyer `index`, a new customer, whose first request is due at `slot`.
    fn new(sale: &'a Sale, index: u64, slot: Instant) -> anyhow::Result<Self> {
        let customer = Uuid::new_v4();
        Ok(Self {
            sale,
            concert: sale.concert_of(index),
            index,
            roll: splitmix64(index),
            token: sale.issuer.mint(&TokenRequest::customer(customer))?,
            slot: Mutex::new(Some(slot)),
            journal: Mutex::default(),
        })
    }

    /// What the buyer did and saw, once it played `scenario`.
    fn played(self, scenario: Scenario) -> Played {
        let journal = self
            .journal
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Played {
            scenario,
            answers: journal.answers,
            violations: journal.violations,
            transport: journal.transport,
            paid: journal.paid,
            sold_out: journal.sold_out,
        }
    }

    /// Reads the seat map, holds one or two seats it shows free, orders
    /// and pays.
    async fn buy(&self) -> anyhow::Result<()> {
        let Some(available) = self.seat_map().await? else {
            return Ok(());
        };
        let wanted = 1 + usize::from(self.roll % 2 == 1);
        let held = self
            .hold_plain(wanted, |seat| available.contains(&seat))
            .await?;
        if let Some(order) = self.create_order(&held).await? {
            self.pay(&order, Uuid::new_v4()).await?;
        }
        Ok(())
    }

    /// Tries for one hot seat; only the buyer whose hold wins orders and
    /// pays.
    async fn hot(&self) -> anyhow::Result<()> {
        let seat = self.concert.seats.hot(self.roll >> 8);
        if let Holding::Held(held) = self.hold(seat).await?
            && let Some(order) = self.create_order(&[held]).await?
        {
            self.pay(&order, Uuid::new_v4()).await?;
        }
        Ok(())
    }

    /// Holds and orders, then cancels (half of them) or walks away, so the
    /// order stays `PENDING` and the hold lapses.
    async fn abandon(&self) -> anyhow::Result<()> {
        let held = self.hold_plain(1, |_| true).await?;
        if let Some(order) = self.create_order(&held).await?
            && (self.roll >> 16).is_multiple_of(2)
        {
            self.cancel(&order).await?;
        }
        Ok(())
    }

    /// Pays one order twice at once with two keys: one pay wins (200), the
    /// other finds the order paid (409). Two 200s would be two payments.
    async fn double_pay(&self) -> anyhow::Result<()> {
        let held = self.hold_plain(1, |_| true).await?;
        let Some(order) = self.create_order(&held).await? else {
            return Ok(());
        };
        let (first, second) = tokio::join!(
            self.pay(&order, Uuid::new_v4()),
            self.pay(&order, Uuid::new_v4())
        );
        match (first?, second?) {
            (Outcome::Done { .. }, Outcome::Done { .. }) => self.violation(format!(
                "double pay: both keys of order {} were answered 200",
                order.id
            )),
            (Outcome::Refused { problem: a, .. }, Outcome::Refused { problem: b, .. })
                if is_invalid_transition(&a) && is_invalid_transition(&b) =>
            {
                self.violation(format!(
                    "double pay: neither key of the pending order {} won (both 409 {a})",
                    order.id
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Pays, then pays again with the same key, as a client does when the
    /// answer was lost: the stored answer must come back, marked replayed.
    async fn retry_pay(&self) -> anyhow::Result<()> {
        let held = self.hold_plain(1, |_| true).await?;
        let Some(order) = self.create_order(&held).await? else {
            return Ok(());
        };
        let key = Uuid::new_v4();
        let Outcome::Done { body: first, .. } = self.pay(&order, key).await? else {
            return Ok(());
        };
        match self.pay(&order, key).await? {
            Outcome::Done { body, replayed } if body == first && replayed => {}
            Outcome::Done { body, replayed } => self.violation(format!(
                "same-key pay retry of order {}: 200 (replayed: {replayed}) with version {} \
                 and status {}, where the first answer had version {} and status {}",
                order.id, body.version, body.status, first.version, first.status
            )),
            // The retry could not run (admission, a restart): no answer to
            // compare, and no broken promise.
            Outcome::Refused {
                status: 429 | 503, ..
            }
            | Outcome::Lost => {}
            Outcome::Refused { status, problem } => self.violation(format!(
                "same-key pay retry of order {}: {status} {problem} where the first was 200",
                order.id
            )),
        }
        Ok(())
    }

    /// The seat map's available seats; `None` if it could not be read.
    async fn seat_map(&self) -> anyhow::Result<Option<HashSet<u32>>> {
        let concert = self.concert.id.to_string();
        let request = self.request(Route::SeatMap, &[&concert]);
        let Outcome::Done { body, .. } = self.send::<SeatMapBody>(Route::SeatMap, request).await?
        else {
            return Ok(None);
        };
        let expected = usize::try_from(self.concert.seats.count())?;
        self.promise(Route::SeatMap, body.seats.len() == expected, || {
            format!("{} seats, not the concert's {expected}", body.seats.len())
        });
        Ok(Some(
            body.seats
                .iter()
                .filter(|s| s.status == SeatStatus::Available)
                .filter_map(|s| seat_number(&s.seat_id))
                .collect(),
        ))
    }

    /// Holds up to `wanted` plain seats that `free` accepts, trying a few
    /// more when some turn out taken.
    async fn hold_plain(
        &self,
        wanted: usize,
        free: impl Fn(u32) -> bool,
    ) -> anyhow::Result<Vec<Held>> {
        let mut held = Vec::with_capacity(wanted);
        let mut tries = wanted + 2;
        while held.len() < wanted && tries > 0 {
            tries -= 1;
            let Some(seat) = self.concert.seats.next(&free) else {
                self.lock_journal().sold_out = true;
                break;
            };
            match self.hold(seat).await? {
                Holding::Held(granted) => held.push(granted),
                Holding::Taken => {}
                Holding::Stopped => break,
            }
        }
        Ok(held)
    }

    async fn hold(&self, seat: u32) -> anyhow::Result<Holding> {
        let label = seat_label(seat);
        let concert = self.concert.id.to_string();
        let request = self.request(Route::Hold, &[&concert, &label]);
        Ok(match self.send::<HoldBody>(Route::Hold, request).await? {
            Outcome::Done { body, .. } => {
                self.promise(
                    Route::Hold,
                    body.seat_id == label && body.fencing_token > 0,
                    || {
                        format!(
                            "a hold on {} with fencing token {} when {label} was asked for",
                            body.seat_id, body.fencing_token
                        )
                    },
                );
                Holding::Held(Held {
                    seat,
                    hold_token: body.hold_token,
                })
            }
            Outcome::Refused { status: 409, .. } => Holding::Taken,
            Outcome::Refused { .. } | Outcome::Lost => Holding::Stopped,
        })
    }

    /// Orders the `held` seats; `None` when there are none or the order
    /// was not created.
    async fn create_order(&self, held: &[Held]) -> anyhow::Result<Option<Order>> {
        if held.is_empty() {
            return Ok(None);
        }
        let lines: Vec<_> = held
            .iter()
            .map(|h| json!({ "seat_id": seat_label(h.seat), "hold_token": h.hold_token }))
            .collect();
        let request = self
            .request(Route::CreateOrder, &[])
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({
                "event_id": self.concert.id,
                "seats": lines,
                "customer_email": format!("buyer-{}@example.com", self.index),
            }));
        let Outcome::Done { body, .. } =
            self.send::<OrderBody>(Route::CreateOrder, request).await?
        else {
            return Ok(None);
        };
        let ordered: HashSet<&str> = body.seats.iter().map(|s| s.seat_id.as_str()).collect();
        let asked: Vec<String> = held.iter().map(|h| seat_label(h.seat)).collect();
        let lines_ok = ordered.len() == asked.len()
            && asked.iter().all(|s| ordered.contains(s.as_str()))
            && body.seats.iter().all(|s| s.fencing_token > 0);
        self.promise(
            Route::CreateOrder,
            body.status == "PENDING" && lines_ok,
            || {
                format!(
                    "order {} is {} with seats {:?} for holds on {asked:?}",
                    body.id, body.status, ordered
                )
            },
        );
        Ok(Some(Order {
            id: body.id,
            seats: held.iter().map(|h| h.seat).collect(),
        }))
    }

    /// Pays `order` under `key`; a 200 makes it paid and its seats sold.
    async fn pay(&self, order: &Order, key: Uuid) -> anyhow::Result<Outcome<OrderBody>> {
        let id = order.id.to_string();
        let request = self
            .request(Route::Pay, &[&id])
            .header("idempotency-key", key.to_string());
        let outcome = self.send::<OrderBody>(Route::Pay, request).await?;
        if let Outcome::Done { body, .. } = &outcome {
            self.promise(
                Route::Pay,
                body.id == order.id && body.status == "PAID",
                || {
                    format!(
                        "paying order {} answered order {} {}",
                        order.id, body.id, body.status
                    )
                },
            );
            self.lock_journal().paid.push(order.id);
            for &seat in &order.seats {
                self.concert.seats.mark_sold(seat);
            }
        }
        Ok(outcome)
    }

    async fn cancel(&self, order: &Order) -> anyhow::Result<()> {
        let id = order.id.to_string();
        let request = self
            .request(Route::Cancel, &[&id])
            .header("idempotency-key", Uuid::new_v4().to_string());
        if let Outcome::Done { body, .. } = self.send::<OrderBody>(Route::Cancel, request).await? {
            self.promise(Route::Cancel, body.status == "CANCELLED", || {
                format!("cancelling order {} left it {}", order.id, body.status)
            });
        }
        Ok(())
    }
}

/// `GET /events/{id}/seats`: the fields a buyer needs.
#[derive(Deserialize)]
struct SeatMapBody {
    seats: Vec<MapSeat>,
}

#[derive(Deserialize)]
struct MapSeat {
    seat_id: String,
    status: SeatStatus,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum SeatStatus {
    Available,
    Held,
    Sold,
}

/// A hold's 201: the fields the docs promise.
#[derive(Deserialize)]
struct HoldBody {
    seat_id: String,
    hold_token: Uuid,
    fencing_token: i64,
    // Read only to check that it is there and a time.
    #[serde(rename = "expires_at")]
    _expires_at: DateTime<Utc>,
}

/// An order as orders answers it: the fields the buyer checks, and those
/// a replay must repeat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct OrderBody {
    id: Uuid,
    status: String,
    version: i64,
    updated_at: DateTime<Utc>,
    seats: Vec<OrderSeat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct OrderSeat {
    seat_id: String,
    fencing_token: i64,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn every_hundred_consecutive_buyers_play_exactly_the_mix() {
        assert_eq!(
            Scenario::MIX.iter().map(|(_, share)| share).sum::<u64>(),
            100
        );
        for start in [0, 1, 57, 1_000_003] {
            let mut played = BTreeMap::new();
            for index in start..start + 100 {
                *played.entry(Scenario::of_buyer(index).name()).or_insert(0) += 1;
            }
            for (scenario, share) in Scenario::MIX {
                assert_eq!(played[scenario.name()], share, "from buyer {start}");
            }
        }
    }

    #[test]
    fn scenarios_interleave_so_a_short_run_has_them_all() {
        let first: HashSet<_> = (0..20).map(|i| Scenario::of_buyer(i).name()).collect();
        assert_eq!(first.len(), Scenario::MIX.len(), "{first:?}");
    }

    #[test]
    fn buyers_take_the_concerts_in_turns_and_the_last_takes_the_rest() {
        let concerts = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let offer = Offer {
            orders_url: "http://orders",
            inventory_url: "http://inventory",
            concerts: &concerts,
            seats: 10,
            hot: 2,
            buyers_per_concert: 2,
        };
        let sale = Sale::new(reqwest::Client::new(), &offer, Issuer::generate());
        let turns: Vec<u128> = [0, 1, 2, 3, 4, 5, 100]
            .map(|index| sale.concert_of(index).id.as_u128())
            .to_vec();
        assert_eq!(turns, [1, 1, 2, 2, 3, 3, 3]);
    }

    #[tokio::test]
    async fn a_503_that_says_when_is_retried_once_and_a_500_is_a_violation() {
        let fake = Fake::start(|_, n| match n {
            0 => Some(answer("503", "retry-after: 0\r\n", PROBLEM_OVERLOADED)),
            _ => Some(answer("500", "", r#"{"type":"/problems/internal"}"#)),
        })
        .await;
        let sale = fake.sale();
        let buyer = Buyer::new(&sale, 0, Instant::now()).unwrap();

        let holding = buyer.hold(3).await.unwrap();

        assert!(matches!(holding, Holding::Stopped));
        let played = buyer.played(Scenario::Buy);
        assert_eq!(statuses(&played), [503, 500]);
        assert_eq!(
            played.violations,
            ["POST /events/{id}/seats/{seat}/hold: 500 /problems/internal"]
        );
    }

    #[tokio::test]
    async fn a_lost_answer_counts_as_status_0_and_the_pay_goes_again_with_its_key() {
        let order = Order {
            id: Uuid::new_v4(),
            seats: vec![3],
        };
        let body = order_body(order.id, "PAID", 2);
        let fake = Fake::start(move |_, n| match n {
            // A crashed process: the connection closes without an answer.
            0 => None,
            _ => Some(answer("200 OK", "", &body)),
        })
        .await;
        let sale = fake.sale();
        let buyer = Buyer::new(&sale, 0, Instant::now()).unwrap();

        let outcome = buyer.pay(&order, Uuid::new_v4()).await.unwrap();

        assert!(matches!(outcome, Outcome::Done { .. }));
        let heads = fake.heads();
        let keys: Vec<_> = heads.iter().map(|h| header(h, "idempotency-key")).collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], keys[1], "the resend carries the same key");
        let played = buyer.played(Scenario::Buy);
        assert_eq!(statuses(&played), [0, 200]);
        assert!(played.violations.is_empty(), "{:?}", played.violations);
        assert_eq!(played.paid, [order.id]);
        assert_eq!(
            sale.concerts[0].seats.next(|_| true),
            Some(4),
            "seat 3 is sold"
        );
    }

    #[tokio::test]
    async fn a_same_key_pay_retry_must_replay_the_first_answer() {
        // The retry answered 200 again, but as a second payment (a new
        // version, not marked replayed): a broken promise.
        let played = play_against_orders(Scenario::RetryPay, |pay, id| {
            let version = 2 + i64::try_from(pay).unwrap();
            Some(answer("200 OK", "", &order_body(id, "PAID", version)))
        })
        .await;
        assert_eq!(played.violations.len(), 1, "{:?}", played.violations);
        assert!(played.violations[0].starts_with("same-key pay retry"));

        // The same answer, replayed: as promised.
        let played = play_against_orders(Scenario::RetryPay, |pay, id| {
            let replayed = if pay == 0 {
                ""
            } else {
                "idempotent-replayed: true\r\n"
            };
            Some(answer("200 OK", replayed, &order_body(id, "PAID", 2)))
        })
        .await;
        assert!(played.violations.is_empty(), "{:?}", played.violations);
        assert_eq!(played.paid.len(), 2, "one order, paid in both answers");
    }

    #[tokio::test]
    async fn both_pays_of_a_double_pay_answered_200_are_a_violation() {
        let played = play_against_orders(Scenario::DoublePay, |_, id| {
            Some(answer("200 OK", "", &order_body(id, "PAID", 2)))
        })
        .await;
        assert_eq!(played.violations.len(), 1, "{:?}", played.violations);
        assert!(played.violations[0].contains("both keys"));

        // One wins, the other finds the order paid: as promised.
        let played = play_against_orders(Scenario::DoublePay, |pay, id| match pay {
            0 => Some(answer("200 OK", "", &order_body(id, "PAID", 2))),
            _ => Some(answer(
                "409",
                "",
                r#"{"type":"/problems/invalid-transition"}"#,
            )),
        })
        .await;
        assert!(played.violations.is_empty(), "{:?}", played.violations);
        let mut statuses = statuses(&played);
        statuses.sort_unstable(); // the two pays answer in either order
        assert_eq!(statuses, [200, 201, 201, 409]);
    }

    const PROBLEM_OVERLOADED: &str = r#"{"type":"/problems/overloaded"}"#;

    /// Plays `scenario` against a fake inventory that grants every hold and
    /// a fake orders that creates every order and answers the `n`th pay
    /// with `pay(n, order id)`.
    async fn play_against_orders(
        scenario: Scenario,
        pay: impl Fn(usize, Uuid) -> Option<String> + Send + Sync + 'static,
    ) -> Played {
        let order = Uuid::new_v4();
        let pays = AtomicUsize::new(0);
        let fake = Fake::start(move |head, _| {
            if head.starts_with("POST /events/") {
                let hold = json!({
                    "event_id": Uuid::nil(), "seat_id": "A-3", "hold_token": Uuid::new_v4(),
                    "fencing_token": 1, "expires_at": "2030-01-01T00:00:00Z",
                });
                Some(answer("201 Created", "", &hold.to_string()))
            } else if head.starts_with("POST /orders ") {
                Some(answer("201 Created", "", &order_body(order, "PENDING", 1)))
            } else {
                pay(pays.fetch_add(1, Ordering::SeqCst), order)
            }
        })
        .await;
        let sale = fake.sale();
        let buyer = Buyer::new(&sale, 0, Instant::now()).unwrap();
        match scenario {
            Scenario::RetryPay => buyer.retry_pay().await.unwrap(),
            Scenario::DoublePay => buyer.double_pay().await.unwrap(),
            other => panic!("{other:?} is not a pay scenario"),
        }
        buyer.played(scenario)
    }

    fn order_body(id: Uuid, status: &str, version: i64) -> String {
        json!({
            "id": id, "status": status, "version": version,
            "updated_at": format!("2030-01-01T00:00:0{version}Z"),
            "seats": [{ "seat_id": "A-3", "fencing_token": 1 }],
        })
        .to_string()
    }

    fn statuses(played: &Played) -> Vec<u16> {
        played.answers.iter().map(|a| a.status).collect()
    }

    /// A raw HTTP/1.1 answer that closes the connection.
    fn answer(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    fn header<'h>(head: &'h str, name: &str) -> &'h str {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
            .unwrap_or_default()
    }

    /// A stand-in for both APIs: one connection at a time, each request
    /// answered with what the script says for its head and its number
    /// (`None`: the connection closes without an answer, as when the
    /// process dies).
    struct Fake {
        url: String,
        heads: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        async fn start(
            script: impl Fn(&str, usize) -> Option<String> + Send + Sync + 'static,
        ) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let heads = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&heads);
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let head = read_request(&mut socket).await;
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(head.clone());
                        seen.len() - 1
                    };
                    if let Some(reply) = script(&head, n) {
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                }
            });
            Self { url, heads }
        }

        fn sale(&self) -> Sale {
            let offer = Offer {
                orders_url: &self.url,
                inventory_url: &self.url,
                concerts: &[Uuid::nil()],
                seats: 10,
                hot: 2,
                buyers_per_concert: 1_000,
            };
            Sale::new(reqwest::Client::new(), &offer, Issuer::generate())
        }

        fn heads(&self) -> Vec<String> {
            self.heads.lock().unwrap().clone()
        }
    }

    /// Reads one request, body included (a socket closed with unread
    /// bytes is reset, and the client would never see the answer).
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0; 4096];
        loop {
            let read = socket.read(&mut chunk).await.unwrap_or(0);
            bytes.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = header(&text[..end], "content-length").parse().unwrap_or(0);
                if read == 0 || bytes.len() >= end + 4 + length {
                    return text[..end].to_owned();
                }
            } else if read == 0 {
                return text;
            }
        }
    }
}
