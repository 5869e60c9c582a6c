//! Validated domain types and the order state machine.
//!
//! Parse, don't validate: request bodies deserialize straight into these
//! types, whose `Deserialize` rejects bad values, so a value that reached a
//! handler is valid and the error names the field it came from.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The most seats one order may hold.
pub const MAX_SEATS_PER_ORDER: usize = 10;

/// A customer's e-mail address, trimmed and strictly checked: a bare
/// `local@domain.tld`, as it goes into the `To:` header of the mails the
/// system sends. No display name (`"Call +1-555 now" <a@example.com>` would
/// put the caller's text in front of the reader), no IP-literal domain, and
/// a domain with at least one dot (no `a@localhost`), all through the
/// `email_address` crate's own options, not a hand-written pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(format = Email, example = "ada@example.com")]
pub struct CustomerEmail(String);

impl TryFrom<String> for CustomerEmail {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let value = value.trim();
        if value.len() > 254 {
            return Err("an e-mail address has at most 254 characters".into());
        }
        let strict = email_address::Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        if let Err(e) = email_address::EmailAddress::parse_with_options(value, strict) {
            return Err(format!(
                "{value:?} is not a bare e-mail address like ada@example.com: {e}"
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

impl From<CustomerEmail> for String {
    fn from(email: CustomerEmail) -> Self {
        email.0
    }
}

impl CustomerEmail {
    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A seat's label within its concert, e.g. `A-12`: 1–16 letters, digits,
/// `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(pattern = "^[A-Za-z0-9_-]{1,16}$", example = "A-12")]
pub struct SeatId(String);

impl TryFrom<String> for SeatId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = (1..=16).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(value))
        } else {
            Err(format!(
                "{value:?} is not a seat id (1-16 letters, digits, '-' or '_')"
            ))
        }
    }
}

impl From<SeatId> for String {
    fn from(seat: SeatId) -> Self {
        seat.0
    }
}

impl SeatId {
    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One seat the customer wants, with the hold inventory gave them for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatRequest {
    /// The seat.
    pub seat_id: SeatId,
    /// The customer's hold on it.
    pub hold_token: Uuid,
}

/// 1 to [`MAX_SEATS_PER_ORDER`] distinct seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<SeatRequest>", into = "Vec<SeatRequest>")]
pub struct SeatSelection(Vec<SeatRequest>);

impl TryFrom<Vec<SeatRequest>> for SeatSelection {
    type Error = String;

    fn try_from(seats: Vec<SeatRequest>) -> Result<Self, Self::Error> {
        if seats.is_empty() || seats.len() > MAX_SEATS_PER_ORDER {
            return Err(format!(
                "an order has 1 to {MAX_SEATS_PER_ORDER} seats, not {}",
                seats.len()
            ));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = seats.iter().find(|s| !seen.insert(&s.seat_id)) {
            return Err(format!("seat {} is listed twice", dup.seat_id.as_str()));
        }
        Ok(Self(seats))
    }
}

impl From<SeatSelection> for Vec<SeatRequest> {
    fn from(selection: SeatSelection) -> Self {
        selection.0
    }
}

impl SeatSelection {
    /// The seats in the customer's order.
    pub fn seats(&self) -> &[SeatRequest] {
        &self.0
    }
}

/// `POST /orders` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// The concert.
    pub event_id: Uuid,
    /// The seats, with their holds: 1 to 10, each seat once.
    // The schema repeats MAX_SEATS_PER_ORDER: utoipa takes literals only.
    #[schema(value_type = Vec<SeatRequest>, min_items = 1, max_items = 10)]
    pub seats: SeatSelection,
    /// Where confirmations go.
    pub customer_email: CustomerEmail,
}

/// Where an order is in its life.
///
/// `PENDING → PAID → CONFIRMED`, `PENDING → CANCELLED`, `PAID → REFUNDED`.
/// Transitions are enforced in SQL (`update … where status = <from>`), not
/// by reading the status first, so two concurrent requests cannot both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Created, waiting for payment.
    Pending,
    /// Paid; inventory is confirming the seats.
    Paid,
    /// Seats confirmed sold.
    Confirmed,
    /// Cancelled before payment.
    Cancelled,
    /// Paid, then refunded (compensation).
    Refunded,
}

impl OrderStatus {
    /// The value stored in `orders.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PENDING" => Self::Pending,
            "PAID" => Self::Paid,
            "CONFIRMED" => Self::Confirmed,
            "CANCELLED" => Self::Cancelled,
            "REFUNDED" => Self::Refunded,
            other => return Err(format!("unknown order status {other:?}")),
        })
    }
}

/// A state change: asked for by a client (pay, cancel) or caused by
/// inventory's answer to a payment (confirm, refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `PENDING → PAID`.
    Pay,
    /// `PENDING → CANCELLED`.
    Cancel,
    /// `PAID → CONFIRMED`: inventory sold the seats.
    Confirm,
    /// `PAID → REFUNDED`: inventory could not; the payment is compensated.
    Refund,
}

impl Transition {
    /// The only status this transition starts from.
    pub fn from(self) -> OrderStatus {
        match self {
            Self::Pay | Self::Cancel => OrderStatus::Pending,
            Self::Confirm | Self::Refund => OrderStatus::Paid,
        }
    }

    /// The status it ends in.
    pub fn to(self) -> OrderStatus {
        match self {
            Self::Pay => OrderStatus::Paid,
            Self::Cancel => OrderStatus::Cancelled,
            Self::Confirm => OrderStatus::Confirmed,
            Self::Refund => OrderStatus::Refunded,
        }
    }

    /// The verb, for errors: "cannot pay an order that is CANCELLED".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Pay => "pay",
            Self::Cancel => "cancel",
            Self::Confirm => "confirm",
            Self::Refund => "refund",
        }
    }
}

/// A change a customer asks for. The others (confirm, refund) are
/// inventory's answers to a payment ([`crate::reactions`]), so no client
/// can ask for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `POST /orders/{id}/pay`.
    Pay,
    /// `POST /orders/{id}/cancel`.
    Cancel,
}

impl Command {
    /// The transition it asks for.
    pub fn transition(self) -> Transition {
        match self {
            Self::Pay => Transition::Pay,
            Self::Cancel => Transition::Cancel,
        }
    }
}

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// The order id.
    pub id: Uuid,
    /// The concert.
    pub event_id: Uuid,
    /// The customer who created it (the `sub` of their token); absent only
    /// on orders written before identity was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub customer_id: Option<Uuid>,
    /// Where confirmations go.
    pub customer_email: String,
    /// Current status.
    pub status: OrderStatus,
    /// Aggregate version: 1 at creation, +1 per state change.
    pub version: i64,
    /// The seats.
    pub seats: Vec<OrderSeat>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
}

/// A seat of an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderSeat {
    /// The seat.
    pub seat_id: String,
    /// The fencing token of the hold it was ordered with, as inventory
    /// reported it when the order was created; the sale checks it. `None`
    /// only on lines written before holds were verified (and then left out
    /// of the JSON). The hold token itself is never shown: see
    /// `migrations/orders/0005_owners.sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fencing_token: Option<i64>,
}

impl Order {
    /// The seats in the shape events carry them.
    pub fn event_seats(&self) -> Vec<contracts::orders::OrderSeat> {
        self.seats
            .iter()
            .map(|s| contracts::orders::OrderSeat {
                seat_id: s.seat_id.clone(),
                fencing_token: s.fencing_token,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_checked() {
        assert_eq!(
            CustomerEmail::try_from(" ada@example.com ".to_owned())
                .unwrap()
                .as_str(),
            "ada@example.com"
        );
        assert!(CustomerEmail::try_from("ada at example".to_owned()).is_err());
    }

    #[test]
    fn an_email_is_a_bare_address_on_a_dotted_domain() {
        for bad in [
            "Call +1-555 now <a@example.com>",
            "\"Ada\" <ada@example.com>",
            "ada@[127.0.0.1]",
            "ada@localhost",
            "\u{0} <a@example.com>",
            "ada@exa\u{7}mple.com",
        ] {
            assert!(CustomerEmail::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(
            CustomerEmail::try_from("ada.lovelace+tickets@mail.example.co.uk".to_owned()).is_ok()
        );
    }

    #[test]
    fn a_selection_rejects_duplicates_and_empty_lists() {
        let seat = |id: &str| SeatRequest {
            seat_id: SeatId::try_from(id.to_owned()).unwrap(),
            hold_token: Uuid::new_v4(),
        };
        assert!(SeatSelection::try_from(vec![]).is_err());
        assert!(SeatSelection::try_from(vec![seat("A-1"), seat("A-1")]).is_err());
        assert!(SeatSelection::try_from(vec![seat("A-1"), seat("A-2")]).is_ok());
    }

    #[test]
    fn seat_ids_are_short_labels() {
        assert!(SeatId::try_from("A-12".to_owned()).is_ok());
        assert!(SeatId::try_from(String::new()).is_err());
        assert!(SeatId::try_from("A 12".to_owned()).is_err());
        assert!(SeatId::try_from("x".repeat(17)).is_err());
    }

    #[test]
    fn statuses_round_trip_through_their_column_values() {
        for s in [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ] {
            assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), s);
        }
    }
}
