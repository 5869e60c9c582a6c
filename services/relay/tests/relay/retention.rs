//! What happens to a row after its PubAck: deleted at once by default, or
//! kept as an audit trail for `RELAY_RETENTION` and swept in batches.

use std::time::Duration;

use uuid::Uuid;

use crate::Outbox;

/// `(rows in the outbox, rows marked published)`.
async fn rows_and_marked(outbox: &Outbox) -> (i64, i64) {
    sqlx::query_as("select count(*), count(published_at) from outbox")
        .fetch_one(&outbox.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn by_default_a_published_row_is_deleted_in_the_claiming_transaction() {
    let outbox = Outbox::start().await;
    let mut relay = outbox.relay(&[]).await;

    outbox.write_event(Uuid::new_v4(), 1).await;
    outbox.drained(Duration::from_secs(10)).await;

    assert_eq!(rows_and_marked(&outbox).await, (0, 0));
    assert_eq!(outbox.stream().await.len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn with_a_retention_period_rows_are_marked_and_only_old_ones_swept() {
    let outbox = Outbox::start().await;
    let mut relay = outbox.relay(&[("RELAY_RETENTION", "1h")]).await;
    for _ in 0..5 {
        outbox.write_event(Uuid::new_v4(), 1).await;
    }
    outbox.drained(Duration::from_secs(10)).await;
    assert_eq!(rows_and_marked(&outbox).await, (5, 5), "kept and marked");

    sqlx::query(
        "update outbox set published_at = now() - interval '2 hours' \
         where id in (select id from outbox order by id limit 3)",
    )
    .execute(&outbox.db)
    .await
    .unwrap();
    let swept = relay::store::delete_published(&outbox.db, Duration::from_hours(1), 2)
        .await
        .unwrap();
    let swept_more = relay::store::delete_published(&outbox.db, Duration::from_hours(1), 2)
        .await
        .unwrap();

    assert_eq!(
        (swept, swept_more),
        (2, 1),
        "small batches, only rows past the retention"
    );
    assert_eq!(rows_and_marked(&outbox).await, (2, 2));
    relay.stop().await;
}

#[tokio::test]
async fn measuring_the_backlog_costs_the_same_however_large_it_is() {
    let outbox = Outbox::start().await;
    // More rows than a scrape counts, written straight into the outbox.
    let rows = relay::store::BACKLOG_COUNT_CAP + 500;
    sqlx::query(
        "insert into outbox (event_id, event_type, schema_version, aggregate_type, aggregate_id, \
         aggregate_version, subject, payload) \
         select gen_random_uuid(), 'OrderPaid', 2, 'order', gen_random_uuid(), 1, \
         'orders.events.order_paid', '{}'::json from generate_series(1, $1)",
    )
    .bind(rows)
    .execute(&outbox.db)
    .await
    .unwrap();

    let backlog = relay::store::backlog(&outbox.db).await.unwrap();

    // Counted up to the cap, not all of them: the count reads at most the
    // cap's worth of index entries, whatever the backlog.
    assert_eq!(backlog.pending, relay::store::BACKLOG_COUNT_CAP);
    assert_eq!(backlog.parked, 0);
    assert!(backlog.oldest_pending_secs >= 0.0);
}
