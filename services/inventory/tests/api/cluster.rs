//! Inventory on Redis Cluster: every Lua script's keys hash to one slot.
//!
//! A cluster refuses a script whose keys live on different slots
//! (`CROSSSLOT`), even when one node serves them all. So each script runs
//! here on a one-node cluster (`testkit::ClusterRedis`), through the path
//! that uses it, and must do its work: grant (ACQUIRE), release (RELEASE),
//! read and fill (READ, STORE), move the version after a sale (BUMP) and
//! keep a map hot (REFRESH). The keys share the concert's hash tag,
//! `{<concert id>}` (`inventory::redis_link::Keys`).

use reqwest::{Method, StatusCode};
use testkit::{Ask as _, ClusterRedis, World};
use uuid::Uuid;

use inventory::seat_map::SeatMaps;
use inventory::seat_map::opening::Refreshed;

use crate::support::{Steps as _, start, status_of};

#[tokio::test]
async fn every_script_runs_unchanged_on_a_redis_cluster() {
    let world = World::start().await;
    let redis = ClusterRedis::start().await;
    let inventory = start(&world, &[("REDIS_URL", &redis.url())]).await;
    let concert = world.concert(&inventory, 3).await;
    let metrics = inventory.lent::<SeatMaps>().metrics();

    // ACQUIRE: the hold, the concert's index and the customer's count.
    let ada = Uuid::new_v4();
    let (token, _) = inventory.held(&world, concert, "A-1", ada).await;

    // READ, then STORE on the miss; the second read is a hit.
    let map = inventory.seat_map(concert).await;
    assert_eq!(map.status, StatusCode::OK, "{}", map.text);
    assert_eq!(status_of(&map.body, "A-1"), "HELD");
    let hits = metrics.hits.get();
    assert_eq!(inventory.seat_map(concert).await.status, StatusCode::OK);
    assert!(metrics.hits.get() > hits, "the stored map is read back");

    // RELEASE: the hold and both indexes.
    let released = inventory
        .request(Method::DELETE, &format!("/events/{concert}/seats/A-1/hold"))
        .bearer_auth(world.customer(ada))
        .header("hold-token", token.to_string())
        .answer()
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.text);
    let map = inventory.seat_map(concert).await;
    assert_eq!(status_of(&map.body, "A-1"), "AVAILABLE");

    // BUMP: after a sale the version key moves, so the cached map of the
    // old version is no longer served.
    let (_, answer) = inventory.sell(concert, &[("A-2", None)]).await;
    assert_eq!(answer, "SeatsConfirmed");
    let map = inventory.seat_map(concert).await;
    assert_eq!(status_of(&map.body, "A-2"), "SOLD");

    // REFRESH: the current map is cached (the read above stored it), so
    // its keys are extended.
    let refreshed = inventory.lent::<SeatMaps>().refresh(concert).await;
    assert!(
        matches!(refreshed, Ok(Refreshed::Extended)),
        "{refreshed:?}"
    );
}
