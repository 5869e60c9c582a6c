//! The seat sale under concurrency: two transactions allocating one seat
//! at the same time, as two inventory instances (or two redeliveries) would.

use consumer::Handler as _;
use inventory::allocation::SeatAllocation;
use sqlx::PgPool;
use testkit::TestPostgres;
use uuid::Uuid;

use crate::support::paid;
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
