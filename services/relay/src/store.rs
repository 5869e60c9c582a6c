//! SQL against the source database's outbox table.
//!
//! A row's life: written by a service in its business transaction;
//! [`claim`]ed (locked) by one relay pass when no earlier version of its
//! aggregate is waiting; then, in the same transaction, either
//! [`finish_published`] after its PubAck, or [`record_failure`] when it
//! failed on its own (backed off, and parked after the last attempt). A
//! parked row stays until an operator [`unpark`]s it (`ticketctl outbox
//! unpark`). [`delete_published`] sweeps marked rows when a retention
//! period is configured.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// An unpublished outbox row, claimed (locked) by the current transaction.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id (commit order is *not* id order).
    pub id: i64,
    /// The envelope's id: `Nats-Msg-Id`.
    pub event_id: Uuid,
    /// The envelope's type.
    pub event_type: String,
    /// The envelope's schema version.
    pub schema_version: i32,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    /// The subject, without the deployment prefix.
    pub subject: String,
    /// The envelope, as JSON text (published as it is, never re-parsed).
    pub payload: String,
    /// Trace context of the writing transaction.
    pub traceparent: Option<String>,
    /// Trace state of the writing transaction.
    pub tracestate: Option<String>,
}

/// Claims up to `limit` publishable rows, locking them until the caller's
/// transaction ends.
///
/// A row is publishable when it is neither published nor parked and no
/// earlier version of its aggregate is unpublished. So a batch holds at most
/// one row per aggregate, and a later version waits until the earlier one
/// is marked, whichever relay instance holds it. Rows locked by another
/// instance are skipped, not waited for.
pub async fn claim(tx: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as!(
        OutboxRow,
        r#"
        select o.id, o.event_id, o.event_type, o.schema_version, o.aggregate_id,
               o.aggregate_version, o.subject, o.payload::text as "payload!", o.traceparent, o.tracestate
        from outbox o
        where o.published_at is null
          and o.parked_at is null
          and (o.next_attempt_at is null or o.next_attempt_at <= now())
          and not exists (
              select 1 from outbox earlier
              where earlier.aggregate_type = o.aggregate_type
                and earlier.aggregate_id = o.aggregate_id
                and earlier.aggregate_version < o.aggregate_version
                and earlier.published_at is null
          )
        order by o.id
        limit $1
        for update of o skip locked
        "#,
        limit,
    )
    .fetch_all(tx)
    .await
}

/// What happens to a row once JetStream acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPublish {
    /// Delete it in the same transaction: the stream is the record of what
    /// was published, and a delete costs a tenth of an update (measured:
    /// `docs/benchmarks.md`, "Relay benchmark").
    Delete,
    /// Set `published_at` and leave it for the retention sweeper, as an
    /// audit trail in the source database.
    Mark,
}

/// Finishes rows that were published; only ever called after their PubAck.
pub async fn finish_published(
    tx: &mut PgConnection,
    ids: &[i64],
    after: AfterPublish,
) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    match after {
        AfterPublish::Delete => {
            sqlx::query!("delete from outbox where id = any($1)", ids)
                .execute(tx)
                .await?;
        }
        AfterPublish::Mark => {
            sqlx::query!(
                "update outbox set published_at = now(), attempts = attempts + 1 where id = any($1)",
                ids,
            )
            .execute(tx)
            .await?;
        }
    }
    Ok(())
}

/// Records a failure of the row's own; parks it at `max_attempts`, else
/// holds it back for `2^attempts` seconds (at most 5 minutes). Returns true
/// if the row is now parked.
pub async fn record_failure(
    tx: &mut PgConnection,
    id: i64,
    error: &str,
    max_attempts: i32,
) -> sqlx::Result<bool> {
    let parked = sqlx::query_scalar!(
        r#"
        update outbox
        set attempts = attempts + 1,
            last_error = $2,
            next_attempt_at = now() + make_interval(secs => least(power(2, attempts + 1), 300)),
            parked_at = case when attempts + 1 >= $3 then now() end
        where id = $1
        returning parked_at is not null as "parked!"
        "#,
        id,
        error,
        max_attempts,
    )
    .fetch_one(tx)
    .await?;
    Ok(parked)
}

/// The state of the outbox, for `/metrics` and `ticketctl outbox status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    /// Rows waiting to be published (not parked), at most
    /// [`BACKLOG_COUNT_CAP`].
    pub pending: i64,
    /// Rows parked after too many failures, at most [`BACKLOG_COUNT_CAP`].
    pub parked: i64,
    /// Age of the oldest pending row by id (which is close to the oldest
    /// by time, and one index probe away), in seconds; 0 when none.
    pub oldest_pending_secs: f64,
}

/// Makes a parked row publishable again (after its cause was fixed, e.g.
/// the server's max payload raised). Returns whether a parked row with
/// that event id existed.
pub async fn unpark(pool: &PgPool, event_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        r#"
        update outbox
        set parked_at = null, attempts = 0, next_attempt_at = null
        where event_id = $1 and parked_at is not null
        "#,
        event_id,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A parked row, for `ticketctl outbox status`.
#[derive(Debug, Clone)]
pub struct ParkedRow {
    pub event_id: Uuid,
    pub event_type: String,
    /// The aggregate it holds back.
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    /// Failures so far.
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// The parked rows, oldest first.
pub async fn parked(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<ParkedRow>> {
    sqlx::query_as!(
        ParkedRow,
        r#"
        select event_id, event_type, aggregate_id, aggregate_version, attempts, last_error
        from outbox
        where parked_at is not null
        order by parked_at
        limit $1
        "#,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The most rows [`backlog`] counts in each of its counts.
pub const BACKLOG_COUNT_CAP: i64 = 10_000;

/// Measures the backlog, at a cost that does not grow with it: `/metrics`
/// runs this on every scrape, and a scrape must stay cheap exactly when
/// the backlog is large. Each count stops at [`BACKLOG_COUNT_CAP`] (the
/// gauge then reads "at least this many"), and the oldest row is one probe
/// of the unpublished-rows index.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<Backlog> {
    let row = sqlx::query!(
        r#"
        select
            (select count(*) from (
                select 1 from outbox where published_at is null and parked_at is null limit $1
            ) pending) as "pending!",
            (select count(*) from (
                select 1 from outbox where published_at is null and parked_at is not null limit $1
            ) parked) as "parked!",
            coalesce((
                select extract(epoch from now() - created_at)::float8
                from outbox where published_at is null and parked_at is null
                order by id limit 1
            ), 0) as "oldest_pending_secs!"
        "#,
        BACKLOG_COUNT_CAP,
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending: row.pending,
        parked: row.parked,
        oldest_pending_secs: row.oldest_pending_secs,
    })
}

/// Deletes up to `batch` rows published more than `retention` ago.
///
/// Small batches, oldest first: a big delete would hold locks and produce a
/// burst of WAL and dead tuples at once. Rows are visited in id order (the
/// primary key), which is close to publication order, so no index on
/// `published_at` is needed, and none is paid for on every publish.
pub async fn delete_published(pool: &PgPool, retention: Duration, batch: i64) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        r#"
        delete from outbox
        where id in (
            select id from outbox
            where published_at < now() - make_interval(secs => $1)
            order by id
            limit $2
        )
        "#,
        retention.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
