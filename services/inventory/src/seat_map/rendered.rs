//! Seat maps ready to send, kept in the process: the rendered body with its
//! `ETag`, keyed by concert and `ETag`, and the decoded stored map, keyed
//! by concert and version.
//!
//! Serving a map from Redis alone cost every request the whole stored map
//! over the wire (31 KB for 600 seats), its decoding, the view and its
//! encoding: in a profile of the cached seat map, allocation, decoding and
//! encoding took most of inventory's CPU, and a 304 cost nearly as much as
//! a 200 (issue #15). With these caches a request asks Redis only for the
//! version and the live holds, one small round trip; an unchanged map is
//! then sent as stored bytes, and a map whose holds changed is rendered
//! from the decoded map without asking Redis for it again.
//!
//! **Nothing here can be stale**, so nothing here is invalidated: a key
//! names everything its value depends on. The version moves with every
//! change of the Postgres part (the module docs of [`super`]), and the
//! `ETag` holds the version and a digest of the seats held right now, so a
//! changed map is a new key. Old keys are not asked for again; they leave
//! when idle for [`IDLE`] or when the weight bound ([`CAPACITY_BYTES`])
//! evicts them.
//!
//! Maps served without Redis (holds unknown) are not kept: they come from
//! Postgres, and the next request should see the holds again as soon as
//! Redis is back.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use moka::future::Cache;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::view::{HoldsKnown, StoredSeatMap, view};

/// How long an entry nobody asks for stays.
pub const IDLE: Duration = Duration::from_mins(1);
/// The most each of the two caches holds, in bytes (bodies by their
/// length, maps by an estimate of their size in memory).
pub const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// A seat map ready to send.
#[derive(Debug)]
pub struct Rendered {
    /// Its strong validator ([`etag`]).
    pub etag: String,
    /// The JSON of its [`SeatMap`](super::SeatMap).
    pub body: Bytes,
    /// Whether the holds are shown.
    pub holds: HoldsKnown,
}

impl Rendered {
    /// `map` with the seats in `held` shown held (holds unknown without).
    pub(super) fn of(
        event: Uuid,
        map: &StoredSeatMap,
        held: Option<&HashSet<String>>,
    ) -> Result<Self, serde_json::Error> {
        let seat_map = view(event, map, held);
        Ok(Self {
            etag: etag(map.version, held),
            body: serde_json::to_vec(&seat_map)?.into(),
            holds: seat_map.holds,
        })
    }
}

/// The strong validator of a seat map: the version of its Postgres part and
/// a digest of the seats held right now (`nh` when the holds are unknown).
/// That is everything the body depends on, so equal tags mean equal bodies,
/// which is what lets the tag key the cache of rendered bodies.
pub fn etag<S: BuildHasher>(version: i64, held: Option<&HashSet<String, S>>) -> String {
    let Some(held) = held else {
        return format!("\"v{version}-nh\"");
    };
    let mut seats: Vec<&str> = held.iter().map(String::as_str).collect();
    seats.sort_unstable();
    let digest = Sha256::digest(seats.join(",").as_bytes());
    let mut short = String::with_capacity(12);
    for byte in &digest[..6] {
        let _ = write!(short, "{byte:02x}");
    }
    format!("\"v{version}-{short}\"")
}

/// The two caches of one instance.
pub(super) struct LocalMaps {
    bodies: Cache<(Uuid, String), Arc<Rendered>>,
    stored: Cache<(Uuid, i64), Arc<StoredSeatMap>>,
}

impl Default for LocalMaps {
    fn default() -> Self {
        Self {
            bodies: Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|_, rendered: &Arc<Rendered>| weight(rendered.body.len()))
                .time_to_idle(IDLE)
                .build(),
            stored: Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                // A seat in memory: its label's heap string and the struct.
                .weigher(|_, map: &Arc<StoredSeatMap>| weight(map.seats.len() * 64))
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl LocalMaps {
    /// The rendered map of `event` whose tag is `etag`, if kept.
    pub(super) async fn body(&self, event: Uuid, etag: &str) -> Option<Arc<Rendered>> {
        self.bodies.get(&(event, etag.to_owned())).await
    }

    /// The decoded map of `event` at `version`, if kept.
    pub(super) async fn stored(&self, event: Uuid, version: i64) -> Option<Arc<StoredSeatMap>> {
        self.stored.get(&(event, version)).await
    }

    /// Keeps `map` (the Postgres part of `event` at its version).
    pub(super) async fn keep_stored(&self, event: Uuid, map: Arc<StoredSeatMap>) {
        self.stored.insert((event, map.version), map).await;
    }

    /// Keeps `rendered`, unless its holds are unknown (module docs).
    pub(super) async fn keep_body(&self, event: Uuid, rendered: Arc<Rendered>) {
        if rendered.holds == HoldsKnown::Live {
            self.bodies
                .insert((event, rendered.etag.clone()), rendered)
                .await;
        }
    }
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(seats: &[&str]) -> HashSet<String> {
        seats.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_tag_names_the_version_and_the_held_seats_in_any_order() {
        let tag = etag(3, Some(&held(&["A-2", "A-1"])));
        assert_eq!(tag, etag(3, Some(&held(&["A-1", "A-2"]))));
        assert!(tag.starts_with("\"v3-") && tag.len() == "\"v3-\"".len() + 12);
        assert_ne!(tag, etag(4, Some(&held(&["A-1", "A-2"]))));
        assert_ne!(tag, etag(3, Some(&held(&["A-1"]))));
        assert_eq!(etag::<std::hash::RandomState>(3, None), "\"v3-nh\"");
    }
}
