//! Rebuilding the read model by replaying `ORDER_EVENTS` from the start.
//!
//! 1. Open a new generation and replay the stream into it, up to the last
//!    message that existed when the rebuild began, through an ephemeral
//!    ordered consumer (it leaves nothing behind on the server).
//! 2. Swap: make the new generation active, in one update. The live
//!    consumer, which holds the state row `for share` while it counts,
//!    writes into the new generation from then on.
//! 3. Catch up: replay what arrived during step 1. The live consumer may
//!    count the same events into the new generation; `counted` keeps each
//!    to once.
//! 4. Drop the old generations.
//!
//! The rebuilt totals equal the live ones because both are the same fold
//! over the same log: proven by `tests/tests/saga.rs`
//! (`reporting_follows_the_orders_and_a_rebuild_from_the_log_reproduces_it`)
//! and, over a log holding every schema version, by
//! `services/reporting/tests/replay.rs`.
//!
//! Only over the *whole* log, though: `ORDER_EVENTS` expires after 7 days
//! (the `messaging::topology` docs say why), and a purge or a deleted
//! message shortens it too. A rebuild first checks that the stream still
//! starts at sequence 1 with no message missing, and otherwise refuses with
//! [`RebuildError::PartialHistory`], before it has written anything, unless
//! [`RebuildOptions::accept_partial_history`] says totals of what is left
//! are wanted.
//!
//! `counted` is kept per generation: the rows of retired generations go
//! with them (step 4, `on delete cascade`), and [`sweep_counted`] trims the
//! old rows of the others, for the reason the consumers' inbox is trimmed.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;
use messaging::{StreamKind, Topology};
use sqlx::PgPool;

use crate::projection::count;

/// A rebuild could not finish; the active generation is unchanged unless
/// the swap already happened (then only the catch-up was cut short, and
/// the live consumer keeps counting into the new generation).
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Postgres failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// NATS failed or stalled.
    #[error("nats: {0}")]
    Nats(String),
    /// An event could not be counted.
    #[error("cannot count the event at stream sequence {sequence}: {reason}")]
    Count { sequence: u64, reason: String },
    /// The stream has lost messages (expired, purged or deleted), so a
    /// replay would swap in smaller totals; nothing was written.
    #[error(
        "the stream no longer holds its whole history: it starts at sequence {first_sequence} \
         and {missing} of the {last_sequence} messages ever stored are gone (expired, purged \
         or deleted), so the rebuilt totals would miss their events; accept a partial history \
         explicitly (`ticketctl reporting rebuild --accept-partial-history`) to rebuild from \
         what is left"
    )]
    PartialHistory {
        /// The first sequence the stream still holds.
        first_sequence: u64,
        /// The last sequence it ever stored.
        last_sequence: u64,
        /// How many of `1..=last_sequence` it no longer holds.
        missing: u64,
    },
}

/// What a rebuild may accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildOptions {
    /// Rebuild from what the stream still holds even when it has lost
    /// messages: the totals then leave out their events. Off by default.
    pub accept_partial_history: bool,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    /// The generation now active.
    pub generation: i32,
    /// Messages replayed before the swap.
    pub replayed: u64,
    /// Messages replayed after it.
    pub caught_up: u64,
}

/// Rebuilds the read model from the whole stream, refusing a partial
/// history; `progress(done, total)` is called as it goes.
pub async fn rebuild(
    db: &PgPool,
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, RebuildError> {
    rebuild_with(db, js, topology, RebuildOptions::default(), progress).await
}

/// Rebuilds the read model as `options` allow; `progress(done, total)` is
/// called as it goes.
pub async fn rebuild_with(
    db: &PgPool,
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    options: RebuildOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, RebuildError> {
    let nats = |e: &dyn std::fmt::Display| RebuildError::Nats(e.to_string());
    let stream = js
        .get_stream(topology.stream(StreamKind::OrderEvents))
        .await
        .map_err(|e| nats(&e))?;
    let state = stream.get_info().await.map_err(|e| nats(&e))?.state;
    if !options.accept_partial_history {
        check_whole_history(&state)?;
    }
    let target = state.last_sequence;
    let generation = sqlx::query_scalar!(
        r#"
        insert into generations (generation)
        select coalesce(max(generation), 0) + 1 from generations
        returning generation
        "#
    )
    .fetch_one(db)
    .await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..pull::OrderedConfig::default()
        })
        .await
        .map_err(|e| nats(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| nats(&e))?;

    let mut position = 0;
    let mut replayed = 0;
    while position < target {
        position = replay_next(db, generation, &mut messages).await?;
        replayed += 1;
        progress(position, target);
    }

    sqlx::query!(
        "update projection_state set active_generation = $1",
        generation
    )
    .execute(db)
    .await?;
    tracing::info!(
        generation,
        replayed,
        "rebuilt generation is active; catching up"
    );

    let end = stream
        .get_info()
        .await
        .map_err(|e| nats(&e))?
        .state
        .last_sequence;
    let mut caught_up = 0;
    while position < end {
        position = replay_next(db, generation, &mut messages).await?;
        caught_up += 1;
    }
    sqlx::query!("delete from generations where generation <> $1", generation)
        .execute(db)
        .await?;
    Ok(RebuildReport {
        generation,
        replayed,
        caught_up,
    })
}

/// Counts the next message into `generation`; returns its stream sequence.
async fn replay_next(
    db: &PgPool,
    generation: i32,
    messages: &mut async_nats::jetstream::consumer::pull::Ordered,
) -> Result<u64, RebuildError> {
    let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .map_err(|_| RebuildError::Nats("no message within 10 s".into()))?
        .ok_or_else(|| RebuildError::Nats("the replay ended early".into()))?
        .map_err(|e| RebuildError::Nats(e.to_string()))?;
    let sequence = next
        .info()
        .map_err(|e| RebuildError::Nats(e.to_string()))?
        .stream_sequence;
    // Messages that are not envelopes were dead-lettered by the live
    // consumer; they count for nothing here either.
    if let Ok(envelope) = serde_json::from_slice(&next.payload) {
        let mut tx = db.begin().await?;
        count(&mut tx, generation, &envelope)
            .await
            .map_err(|e| RebuildError::Count {
                sequence,
                reason: e.to_string(),
            })?;
        tx.commit().await?;
    }
    Ok(sequence)
}

/// Refuses a stream that no longer holds every message it ever stored:
/// one that does starts at sequence 1 (or is still empty) and holds all of
/// `first..=last`. Expiry and a purge move the first sequence; deleting a
/// single message leaves a hole that only the count shows.
fn check_whole_history(state: &async_nats::jetstream::stream::State) -> Result<(), RebuildError> {
    let never_used = state.last_sequence == 0;
    let missing = state.last_sequence - state.messages.min(state.last_sequence);
    if never_used || (state.first_sequence == 1 && missing == 0) {
        return Ok(());
    }
    Err(RebuildError::PartialHistory {
        first_sequence: state.first_sequence,
        last_sequence: state.last_sequence,
        missing,
    })
}

/// Deletes up to `batch` rows of `counted` older than `older_than`,
/// oldest first; returns how many.
///
/// A row stops the same event from being counted twice into one
/// generation: by the live consumer after a rebuild's catch-up counted it,
/// or by a replay that meets an event twice (a redrive republishes it under
/// a new message id). Both happen within the stream's 7 days; past them the
/// live consumer's own inbox and positions already skip the event. So rows
/// older than the consumers' inbox retention
/// (`consumer::sweeper::Retention::inbox`) guard nothing and may go.
pub async fn sweep_counted(db: &PgPool, older_than: Duration, batch: i64) -> sqlx::Result<u64> {
    // Small batches keep each delete's locks and WAL short.
    let done = sqlx::query!(
        r#"
        delete from counted
        where (generation, message_id) in (
            select generation, message_id from counted
            where counted_at < now() - make_interval(secs => $1)
            order by counted_at
            limit $2
        )
        "#,
        older_than.as_secs_f64(),
        batch,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Sweeps `counted` until `shutdown`, on the consumers' sweeper schedule
/// and with their inbox retention.
pub async fn run_counted_sweeper(db: PgPool, shutdown: tokio_util::sync::CancellationToken) {
    let retention = consumer::sweeper::Retention::default();
    consumer::sweeper::every(retention.interval, "counted", shutdown, || {
        sweep_counted(&db, retention.inbox, retention.batch)
    })
    .await;
}
