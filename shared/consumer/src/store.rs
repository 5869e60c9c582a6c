//! SQL for the inbox and the per-aggregate positions (migration
//! `0003_inbox.sql` in each consuming service): recording and reading them
//! as messages are applied, and sweeping old rows (`crate::sweeper`).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Records that `consumer` applies `event_id` in this transaction. False if
/// it was applied before (the row exists): the caller skips the event.
pub async fn record_in_inbox(
    tx: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        r#"
        insert into inbox (consumer, event_id) values ($1, $2)
        on conflict on constraint inbox_pkey do nothing
        "#,
        consumer,
        event_id,
    )
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The last version of the aggregate `consumer` applied (0 if none),
/// locking the position row so that two instances cannot both apply the
/// next version.
pub async fn position(
    tx: &mut PgConnection,
    consumer: &str,
    aggregate_type: &str,
    aggregate_id: Uuid,
) -> sqlx::Result<i64> {
    let version = sqlx::query_scalar!(
        r#"
        select version from consumer_positions
        where consumer = $1 and aggregate_type = $2 and aggregate_id = $3
        for update
        "#,
        consumer,
        aggregate_type,
        aggregate_id,
    )
    .fetch_optional(tx)
    .await?;
    Ok(version.unwrap_or(0))
}

/// Moves the position of the aggregate to `version`.
pub async fn advance(
    tx: &mut PgConnection,
    consumer: &str,
    aggregate_type: &str,
    aggregate_id: Uuid,
    version: i64,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        insert into consumer_positions (consumer, aggregate_type, aggregate_id, version)
        values ($1, $2, $3, $4)
        on conflict on constraint consumer_positions_pkey
        do update set version = excluded.version, updated_at = now()
        "#,
        consumer,
        aggregate_type,
        aggregate_id,
        version,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Deletes up to `batch` of `consumer`'s inbox rows older than
/// `older_than`, oldest first; returns how many (`crate::sweeper` says
/// when that is safe).
pub async fn sweep_inbox(
    db: &PgPool,
    consumer: &str,
    older_than: Duration,
    batch: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"
        delete from inbox
        where (consumer, event_id) in (
            select consumer, event_id from inbox
            where consumer = $1 and processed_at < now() - make_interval(secs => $2)
            order by processed_at
            limit $3
        )
        "#,
        consumer,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` of `consumer`'s positions not moved for longer
/// than `older_than`, oldest first; returns how many.
pub async fn sweep_positions(
    db: &PgPool,
    consumer: &str,
    older_than: Duration,
    batch: i64,
) -> sqlx::Result<u64> {
    // The age is checked on the deleted row itself, not only in the
    // subquery: a row the consumer advances (it holds the row `for update`)
    // while the delete waits for it is checked again once the lock is free,
    // and kept, being young again.
    let done = sqlx::query!(
        r#"
        delete from consumer_positions
        where consumer = $1
          and updated_at < now() - make_interval(secs => $2)
          and (consumer, aggregate_type, aggregate_id) in (
            select consumer, aggregate_type, aggregate_id from consumer_positions
            where consumer = $1 and updated_at < now() - make_interval(secs => $2)
            order by updated_at
            limit $3
          )
        "#,
        consumer,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
