//! The seat sale under concurrency: two transactions allocating one seat
//! at the same time, as two inventory instances (or two redeliveries) would.
//! And the sale from every committed version of `OrderPaid`: the stream
//! still holds the versions older producers wrote.

use consumer::{Delivery, Handler as _};
use inventory::allocation::SeatAllocation;
use sqlx::PgPool;
use testkit::TestPostgres;
use uuid::Uuid;

use crate::support::{Steps as _, paid, paid_written_at, with_concert};

#[tokio::test]
async fn two_concurrent_allocations_of_one_seat_sell_it_once() {
    let postgres = TestPostgres::start().await;
    let db = PgPool::connect(postgres.url()).await.unwrap();
    inventory::MIGRATOR.run(&db).await.unwrap();
    let concert = Uuid::new_v4();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r"
        insert into events (id, name, venue, starts_at, sale_opens_at)
            values ('{concert}', 'Night Shift', 'Hall 1', now() + interval '30 days', now());
        insert into seats (event_id, seat_id, price_cents) values ('{concert}', 'B-1', 4500);
        -- Each seat update waits half a second: the two sales provably overlap.
        create function slow_down() returns trigger language plpgsql as $$
        begin perform pg_sleep(0.5); return new; end $$;
        create trigger slow_down before update on seats for each row execute function slow_down();
        "
    )))
    .execute(&db)
    .await
    .unwrap();

    let sales = [
        paid(concert, &[("B-1", None)]),
        paid(concert, &[("B-1", None)]),
    ]
    .map(|delivery| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            SeatAllocation {
                outbox: outbox::Writer::new(),
                seat_maps: None,
            }
            .handle(&mut tx, &delivery)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            delivery.envelope.aggregate_id
        })
    });
    let mut orders = Vec::new();
    for sale in sales {
        orders.push(sale.await.unwrap());
    }

    let answers: Vec<(String, Uuid)> =
        sqlx::query_as("select event_type, aggregate_id from outbox order by event_type")
            .fetch_all(&db)
            .await
            .unwrap();
    let types: Vec<&str> = answers.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["SeatAllocationRejected", "SeatsConfirmed"],
        "one sale, one rejection"
    );
    let winner = answers
        .iter()
        .find(|(t, _)| t == "SeatsConfirmed")
        .unwrap()
        .1;
    let owner: Option<Uuid> =
        sqlx::query_scalar("select order_id from seats where seat_id = 'B-1'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(owner, Some(winner));
    assert!(orders.contains(&winner));
}

/// Applies `delivery` as inventory's consumer does, without a seat-map
/// cache; panics with the handler's error.
async fn allocate(db: &PgPool, delivery: &Delivery) {
    let mut tx = db.begin().await.unwrap();
    SeatAllocation {
        outbox: outbox::Writer::new(),
        seat_maps: None,
    }
    .handle(&mut tx, delivery)
    .await
    .unwrap_or_else(|e| {
        let version = delivery.envelope.schema_version;
        panic!("OrderPaid v{version} not applied: {e}")
    });
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn an_order_paid_of_every_committed_version_sells_its_seats() {
    let postgres = TestPostgres::start().await;
    let db = PgPool::connect(postgres.url()).await.unwrap();
    inventory::MIGRATOR.run(&db).await.unwrap();
    let concert = Uuid::new_v4();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r"
        insert into events (id, name, venue, starts_at, sale_opens_at)
            values ('{concert}', 'Night Shift', 'Hall 1', now() + interval '30 days', now());
        insert into seats (event_id, seat_id, price_cents)
            values ('{concert}', 'B-1', 4500), ('{concert}', 'B-2', 4500), ('{concert}', 'B-3', 4500);
        "
    )))
    .execute(&db)
    .await
    .unwrap();

    for (version, seat) in [(1, "B-1"), (2, "B-2"), (3, "B-3")] {
        let delivery = paid_written_at(version, concert, &[(seat, None)]);
        allocate(&db, &delivery).await;

        let owner: Option<Uuid> =
            sqlx::query_scalar("select order_id from seats where seat_id = $1")
                .bind(seat)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(
            owner,
            Some(delivery.envelope.aggregate_id),
            "v{version}: {seat}"
        );
    }
    // The answers are written in the current version, whatever was read.
    let answers: Vec<(String, i32, String)> =
        sqlx::query_as("select event_type, schema_version, payload::text from outbox order by id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(answers.len(), 3);
    for (event_type, version, payload) in answers {
        assert_eq!((event_type.as_str(), version), ("SeatsConfirmed", 2));
        let envelope: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            envelope["data"]["concert_id"],
            concert.to_string(),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn after_a_sale_of_any_version_the_cached_seat_map_shows_the_seat_sold() {
    let (_world, inventory, concert) = with_concert(3).await;
    // Cached before the sales: only the version bump after each commit
    // makes the next read see it.
    let before = inventory.seat_map(concert).await;
    assert_eq!(before.body["seats"][0]["status"], "AVAILABLE");

    for (version, seat) in [(1, "A-1"), (2, "A-2"), (3, "A-3")] {
        let (_, answer) = inventory
            .apply_sale(paid_written_at(version, concert, &[(seat, None)]))
            .await;
        assert_eq!(answer, "SeatsConfirmed", "v{version}");

        let map = inventory.seat_map(concert).await.body;
        let status = map["seats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["seat_id"] == seat)
            .unwrap()["status"]
            .clone();
        assert_eq!(status, "SOLD", "v{version}: {seat} in {map}");
    }
}
