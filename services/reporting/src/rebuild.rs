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
//! over the same log: proven by `tests/tests/reporting.rs`.

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

/// Rebuilds the read model; `progress(done, total)` is called as it goes.
pub async fn rebuild(
    db: &PgPool,
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, RebuildError> {
    let nats = |e: &dyn std::fmt::Display| RebuildError::Nats(e.to_string());
    let generation = sqlx::query_scalar!(
        r#"
        insert into generations (generation)
        select coalesce(max(generation), 0) + 1 from generations
        returning generation
        "#
    )
    .fetch_one(db)
    .await?;
    let stream = js
        .get_stream(topology.stream(StreamKind::OrderEvents))
        .await
        .map_err(|e| nats(&e))?;
    let target = stream
        .get_info()
        .await
        .map_err(|e| nats(&e))?
        .state
        .last_sequence;
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
