//! Which seats buyers ask for: the plain seats round robin from one
//! cursor, the hot seats by lot.
//!
//! Buyers that each read the seat map and took the first free seats would
//! all want the same ones: the contention would be an artefact of the
//! driver, and the hot-seat scenario would measure nothing special. One
//! shared cursor spreads them instead, without a seat-map read per buyer,
//! and leaves the contention where the load means it: on the hot seats.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The label of seat number `n`.
pub(crate) fn seat_label(n: u32) -> String {
    format!("A-{n}")
}

/// The number of seat `label`, if it is one of ours.
pub(super) fn seat_number(label: &str) -> Option<u32> {
    label.strip_prefix("A-")?.parse().ok()
}

/// Hands out the plain seats, `A-{hot+1}` … `A-{seats}`, round robin from
/// one cursor, so that concurrent buyers want different seats without
/// each reading the seat map; skips the seats it has seen sold. After a
/// lap it offers again the seats of abandoned orders (cancelled, or whose
/// holds lapsed).
pub(super) struct SeatPicker {
    seats: u32,
    hot: u32,
    cursor: AtomicU64,
    /// `sold[n - 1]`: seat `n` was in an order whose pay was answered 200.
    sold: Vec<AtomicBool>,
}

impl SeatPicker {
    pub(super) fn new(seats: u32, hot: u32) -> Self {
        Self {
            seats,
            hot,
            cursor: AtomicU64::new(0),
            sold: (0..seats).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// How many seats the concert has, hot ones included.
    pub(super) fn count(&self) -> u32 {
        self.seats
    }

    /// The next plain seat that is not known sold and that `free` accepts;
    /// `None` when a whole lap found none (the plain seats sold out).
    pub(super) fn next(&self, free: impl Fn(u32) -> bool) -> Option<u32> {
        let plain = u64::from(self.seats.saturating_sub(self.hot));
        for _ in 0..plain {
            let step = self.cursor.fetch_add(1, Ordering::Relaxed) % plain;
            let seat = self.hot + 1 + u32::try_from(step).ok()?;
            if !self.is_sold(seat) && free(seat) {
                return Some(seat);
            }
        }
        None
    }

    /// Hot seat number `roll` (modulo their count): `A-1` … `A-{hot}`.
    pub(super) fn hot(&self, roll: u64) -> u32 {
        let index = roll % u64::from(self.hot.max(1));
        1 + u32::try_from(index).unwrap_or(0)
    }

    fn is_sold(&self, seat: u32) -> bool {
        self.slot(seat).is_some_and(|s| s.load(Ordering::Relaxed))
    }

    pub(super) fn mark_sold(&self, seat: u32) {
        if let Some(sold) = self.slot(seat) {
            sold.store(true, Ordering::Relaxed);
        }
    }

    fn slot(&self, seat: u32) -> Option<&AtomicBool> {
        self.sold.get(usize::try_from(seat.checked_sub(1)?).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_seats_go_round_past_the_hot_ones() {
        let picker = SeatPicker::new(5, 2);
        let seats: Vec<_> = (0..4).map(|_| picker.next(|_| true)).collect();
        assert_eq!(seats, [Some(3), Some(4), Some(5), Some(3)]);
        assert_eq!(picker.hot(0), 1);
        assert_eq!(picker.hot(3), 2);
    }

    #[test]
    fn seats_seen_sold_or_not_free_are_skipped_until_none_is_left() {
        let picker = SeatPicker::new(5, 2);
        picker.mark_sold(3);
        assert_eq!(picker.next(|seat| seat != 4), Some(5));
        picker.mark_sold(5);
        assert_eq!(picker.next(|_| true), Some(4));
        picker.mark_sold(4);
        assert_eq!(picker.next(|_| true), None);
    }

    #[test]
    fn seat_labels_and_numbers_round_trip() {
        assert_eq!(seat_label(12), "A-12");
        assert_eq!(seat_number("A-12"), Some(12));
        assert_eq!(seat_number("B-12"), None);
    }
}
