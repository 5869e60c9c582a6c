//! The seat sale under concurrency: two transactions allocating one seat
//! at the same time, as two inventory instances (or two redeliveries) would.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use consumer::{Delivery, Handler as _};
use contracts::Envelope;
use contracts::orders::{OrderPaid, OrderSeat};
use inventory::allocation::SeatAllocation;
use sqlx::PgPool;
use testkit::TestPostgres;
use uuid::Uuid;

fn paid(concert: Uuid, seats: &[&str]) -> Delivery {
    let order_id = Uuid::new_v4();
    let data = OrderPaid {
        order_id,
        event_id: concert,
        customer_email: "ada@example.com".into(),
        seats: seats
            .iter()
            .map(|s| OrderSeat {
                seat_id: (*s).into(),
                hold_token: Uuid::new_v4(),
            })
            .collect(),
        paid_at: chrono::Utc::now(),
    };
    let envelope = Envelope::new("orders", order_id, 2, chrono::Utc::now(), data);
    Delivery {
        envelope: Envelope {
            event_id: envelope.event_id,
            event_type: envelope.event_type,
            schema_version: envelope.schema_version,
            aggregate_type: envelope.aggregate_type,
            aggregate_id: envelope.aggregate_id,
            aggregate_version: envelope.aggregate_version,
            occurred_at: envelope.occurred_at,
            producer: envelope.producer,
            data: serde_json::to_value(&envelope.data).unwrap(),
        },
        subject: "orders.events.order_paid".into(),
        stream_sequence: 1,
        delivered: 1,
    }
}

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

    let sales = [paid(concert, &["B-1"]), paid(concert, &["B-1"])].map(|delivery| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            SeatAllocation {
                outbox: outbox::Writer::new(),
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
