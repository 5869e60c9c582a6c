//! What a seat map is: the part Postgres knows, as cached in Redis
//! ([`StoredSeatMap`]), and the map a client sees, which adds the live
//! holds ([`SeatMap`]).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What Postgres knows about a concert's seats, as cached in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeatMap {
    /// `events.version` when this was read.
    pub version: i64,
    /// The seats, by label.
    pub seats: Vec<StoredSeat>,
}

/// One seat of a [`StoredSeatMap`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeat {
    pub seat_id: String,
    /// In cents.
    pub price_cents: i32,
    /// Sold to an order.
    pub sold: bool,
}

/// A seat's status on the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    /// Free to hold.
    Available,
    /// Someone holds it right now.
    Held,
    /// Sold.
    Sold,
}

/// A seat on the map a client sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeatView {
    /// Its label.
    pub seat_id: String,
    /// Its price in cents.
    pub price_cents: i32,
    /// Available, held or sold.
    pub status: SeatStatus,
}

/// Whether the map's holds are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldsKnown {
    /// Read from Redis with the map.
    Live,
    /// Redis is unavailable: held seats show as available.
    Unknown,
}

/// The seat map a client sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeatMap {
    /// The concert.
    pub event_id: Uuid,
    /// The version of the Postgres part (the `ETag` starts with it).
    pub version: i64,
    /// Whether holds are shown.
    pub holds: HoldsKnown,
    /// The seats.
    pub seats: Vec<SeatView>,
}

/// The map a client sees: `map` with the seats in `held` shown held, or,
/// without `held` (Redis unavailable), with holds unknown.
pub(super) fn view(event: Uuid, map: &StoredSeatMap, held: Option<&HashSet<String>>) -> SeatMap {
    SeatMap {
        event_id: event,
        version: map.version,
        holds: if held.is_some() {
            HoldsKnown::Live
        } else {
            HoldsKnown::Unknown
        },
        seats: map
            .seats
            .iter()
            .map(|s| SeatView {
                seat_id: s.seat_id.clone(),
                price_cents: s.price_cents,
                status: if s.sold {
                    SeatStatus::Sold
                } else if held.is_some_and(|h| h.contains(&s.seat_id)) {
                    SeatStatus::Held
                } else {
                    SeatStatus::Available
                },
            })
            .collect(),
    }
}
