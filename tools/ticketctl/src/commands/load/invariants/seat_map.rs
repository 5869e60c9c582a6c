//! The public seat map against inventory's table: `GET /events/{id}/seats`
//! (anonymous, as any visitor sees it) must show `SOLD` exactly the seats
//! the `seats` table has sold.
//!
//! The map is cached in Redis under the concert's version, and every sale
//! bumps the version, so it is normally exact. When a bump was lost (Redis
//! flushed or restarted during the load) the old map is served until the
//! version key expires: `SEATMAP_VERSION_TTL`, 60 s by default, plus 10 %
//! jitter. So a map that disagrees is read again every second for that
//! long, and judged on the last read: a lag within the TTL is the design,
//! a lag beyond it a bug.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use inventory::seat_map::{SeatMap, SeatStatus};
use uuid::Uuid;

use super::snapshot::{Seats, Snapshot};
use super::{could_not_look, first_few};
use crate::commands::load::{Check, Targets};

const SEAT_MAP: &str = "the seat map agrees with inventory";

/// The longest a cached map may lag the table (module docs).
const CACHE_LAG: Duration = Duration::from_secs(66);

/// How often a disagreeing map is read again.
const REREAD: Duration = Duration::from_secs(1);

/// Reads each concert's map until it agrees with the table or the cache's
/// lag, counted once for all of them, has passed.
pub(super) async fn check(targets: &Targets, concerts: &[Uuid], snapshot: &Snapshot) -> Check {
    let seats = match &snapshot.seats {
        Ok(seats) => seats,
        Err(e) => return could_not_look(SEAT_MAP, e),
    };
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => return could_not_look(SEAT_MAP, &e.into()),
    };
    // A flush lost every concert's bump at once, so their lags run
    // together: one deadline for all, not one each.
    let started = Instant::now();
    let mut sold = 0;
    let mut versions = Vec::new();
    let mut reread = false;
    for &concert in concerts {
        let table = sold_in(seats, concert);
        let url = format!("{}/events/{concert}/seats", targets.inventory_url);
        match agreed(&http, &url, &table, started).await {
            Ok((version, lagged)) => {
                versions.push(version);
                reread |= lagged;
            }
            Err(disagreement) => {
                return Check {
                    name: SEAT_MAP,
                    ok: false,
                    detail: format!("{concert}: {disagreement}"),
                };
            }
        }
        sold += table.len();
    }
    let on_maps = match versions.as_slice() {
        [version] => format!("the map (version {version})"),
        _ => format!("the maps of {} concerts", versions.len()),
    };
    let agreed = format!("{sold} seats SOLD on {on_maps} and in the table");
    let detail = if reread {
        format!(
            "{agreed}; the cached maps agreed after {:.0} s",
            started.elapsed().as_secs_f64()
        )
    } else {
        agreed
    };
    Check {
        name: SEAT_MAP,
        ok: true,
        detail,
    }
}

/// Reads the map at `url` until it shows `SOLD` exactly the seats of
/// `table`, and returns its version and whether it had to be read again;
/// or, once [`CACHE_LAG`] has passed since `started`, what it still shows
/// differently.
async fn agreed(
    http: &reqwest::Client,
    url: &str,
    table: &BTreeSet<String>,
    started: Instant,
) -> Result<(i64, bool), String> {
    let mut reread = false;
    loop {
        let disagreement = match read_map(http, url).await {
            Ok(map) => match disagreement(table, &map) {
                None => return Ok((map.version, reread)),
                Some(disagreement) => disagreement,
            },
            Err(e) => format!("could not read the map: {e:#}"),
        };
        if started.elapsed() >= CACHE_LAG {
            return Err(format!(
                "{disagreement}; still after {:.0} s (the version key's TTL)",
                started.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(REREAD).await;
        reread = true;
    }
}

async fn read_map(http: &reqwest::Client, url: &str) -> anyhow::Result<SeatMap> {
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("reading the seat map of {url}"))
}

/// The labels of `concert`'s seats the table has sold.
fn sold_in(seats: &Seats, concert: Uuid) -> BTreeSet<String> {
    seats
        .iter()
        .filter(|(seat, sold)| seat.concert == concert && sold.sold_to.is_some())
        .map(|(seat, _)| seat.label.clone())
        .collect()
}

/// What the map shows differently from the table, or `None` when it
/// shows `SOLD` exactly the seats the table has sold.
fn disagreement(table: &BTreeSet<String>, map: &SeatMap) -> Option<String> {
    let shown: BTreeSet<String> = map
        .seats
        .iter()
        .filter(|seat| seat.status == SeatStatus::Sold)
        .map(|seat| seat.seat_id.clone())
        .collect();
    if &shown == table {
        return None;
    }
    let not_sold: Vec<&String> = shown.difference(table).collect();
    let not_shown: Vec<&String> = table.difference(&shown).collect();
    let mut parts = vec![format!(
        "the map (version {}) shows {} seats SOLD, the table has {}",
        map.version,
        shown.len(),
        table.len()
    )];
    if !not_sold.is_empty() {
        parts.push(format!("SOLD on the map only: {}", first_few(&not_sold)));
    }
    if !not_shown.is_empty() {
        parts.push(format!("sold in the table only: {}", first_few(&not_shown)));
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use inventory::seat_map::{HoldsKnown, SeatView};

    use super::*;

    fn map(statuses: &[(&str, SeatStatus)]) -> SeatMap {
        SeatMap {
            event_id: Uuid::nil(),
            version: 7,
            holds: HoldsKnown::Live,
            seats: statuses
                .iter()
                .map(|&(seat_id, status)| SeatView {
                    seat_id: seat_id.to_owned(),
                    price_cents: 4_500,
                    status,
                })
                .collect(),
        }
    }

    #[test]
    fn a_map_that_shows_the_tables_sold_seats_agrees_whatever_it_shows_held() {
        let table = BTreeSet::from(["A-1".to_owned()]);
        let shown = map(&[("A-1", SeatStatus::Sold), ("A-2", SeatStatus::Held)]);
        assert_eq!(disagreement(&table, &shown), None);
    }

    #[test]
    fn a_map_that_lags_or_invents_a_sale_disagrees_and_names_the_seats() {
        let table = BTreeSet::from(["A-1".to_owned(), "A-2".to_owned()]);
        let shown = map(&[
            ("A-1", SeatStatus::Available),
            ("A-2", SeatStatus::Sold),
            ("A-3", SeatStatus::Sold),
        ]);
        let found = disagreement(&table, &shown).expect("they disagree");
        assert!(found.contains("SOLD on the map only: A-3"), "{found}");
        assert!(found.contains("sold in the table only: A-1"), "{found}");
    }
}
