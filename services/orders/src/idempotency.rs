//! Idempotency keys: a retried POST is answered from storage, not executed
//! again.
//!
//! Every POST carries an `Idempotency-Key` header. [`execute`] runs the
//! request's work in one transaction that first *claims* the key:
//!
//! - a new key is inserted (response still empty), the work runs, the
//!   response is stored on the key row, and everything commits together;
//! - a key whose request committed before returns the stored status and
//!   body, marked `Idempotent-Replayed: true`, without running the work;
//! - a key used before for a *different* request (method, path or body) is
//!   a client bug: 422 `/problems/idempotency-key-reused`.
//!
//! Two concurrent requests with one key: the second one's `INSERT` waits on
//! the first one's uncommitted key row. When the first commits, the second
//! finds the row and **replays** its response; when the first rolls back
//! (an error), the second runs as if it were first. So there is never a
//! second write. The wait is bounded (2 s `lock_timeout`): a request still
//! waiting then gets 409 `/problems/idempotency-key-in-progress` with
//! `Retry-After`, so a retry storm cannot hold every pooled connection.
//!
//! Keys are scoped per customer (the verified token's `sub`): the same key
//! from two customers is two keys, so one customer can neither replay nor
//! block another's request by guessing its key.
//!
//! Errors are not stored: a request that failed changed nothing, and
//! retrying it with the same key runs it again. Keys expire after
//! `IDEMPOTENCY_KEY_TTL`; a background sweeper deletes expired rows.
//!
//! # Work that must happen before the transaction
//!
//! Creating an order first asks inventory whether the holds are live: a
//! network call of up to `INVENTORY_TIMEOUT`. It must not run inside
//! [`execute`]'s transaction, which would hold a pooled connection and the
//! key's row lock for that long (a slow inventory could then drain the pool
//! and stop payments too). It must not run for a replay either: a retried
//! create has to get its stored 201 even while inventory is down, and
//! without asking again about holds it has already turned into an order.
//! So such a request calls [`lookup`] first, which answers replays and key
//! reuse from storage, then does its remote work, then calls [`execute`].
//! A concurrent request with the same key can slip between the two; then
//! [`execute`] still replays its response (the remote check was wasted,
//! not harmful, as it only reads).

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why a request cannot run under its key. The HTTP layer turns these into
/// problems (`crate::http::ApiError`); this module knows nothing of it.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key came with a different request before.
    #[error("the idempotency key was used for a different request")]
    Reused,
    /// Storing or reading the key failed; a lock timeout (55P03) means a
    /// request with the same key is still running.
    #[error("idempotency key storage")]
    Storage(#[from] sqlx::Error),
    /// The response could not be turned into JSON (a bug).
    #[error("the response cannot be stored")]
    Response(#[from] serde_json::Error),
}

/// The header clients send.
pub const HEADER: &str = "idempotency-key";
/// The header on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A client-chosen key: 1–255 visible ASCII characters (a UUID is typical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a raw header value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 255 {
            return Err("must have 1 to 255 characters".into());
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII without spaces".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a request was: the same key must always come with the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Hashes the method, the path and the parsed body. The body is
    /// re-serialized from its typed form, so whitespace or key order in the
    /// client's JSON does not make a retry look like a different request.
    pub fn of(method: &str, path: &str, body: &impl Serialize) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update(b" ");
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
        // Serializing our own validated types cannot fail.
        hasher.update(serde_json::to_vec(body).unwrap_or_default());
        Self(hasher.finalize().into())
    }
}

/// A response as stored on the key row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: serde_json::Value,
    /// True when answered from storage.
    pub replayed: bool,
}

impl StoredResponse {
    /// A fresh response.
    pub fn new(status: StatusCode, body: &impl Serialize) -> Result<Self, IdempotencyError> {
        let body = serde_json::to_value(body)?;
        Ok(Self {
            status,
            body,
            replayed: false,
        })
    }
}

/// What claiming a key found.
enum Claim {
    /// The key is new (or expired) and now ours until commit: do the work.
    Fresh,
    /// The key has a committed row.
    Taken(Stored),
}

/// What a committed key row says about this request.
enum Stored {
    /// The key's request committed before: answer with its response.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
}

/// The stored answer for `key`, without claiming it: `Some` replay if its
/// request committed, 422 if the key was used for a different request,
/// `None` if the request has not run (or its key expired). Only reads, and
/// takes no lock: it sees committed keys only, so a same-key request still
/// in flight reads as `None` and [`execute`] settles the race.
#[tracing::instrument(
    name = "idempotency.lookup",
    skip_all,
    fields(db.system = "postgresql", idempotency_key = key.as_str(), replayed = tracing::field::Empty)
)]
pub async fn lookup(
    pool: &PgPool,
    owner: Uuid,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Result<Option<StoredResponse>, IdempotencyError> {
    let mut conn = pool.acquire().await?;
    match stored(&mut conn, owner, key, fingerprint).await? {
        None => Ok(None),
        Some(Stored::Replay(response)) => {
            tracing::Span::current().record("replayed", true);
            Ok(Some(response))
        }
        Some(Stored::Mismatch) => Err(IdempotencyError::Reused),
    }
}

/// Runs `work` at most once per `owner`'s key: see the module docs.
///
/// `work` gets the transaction's connection; its writes, the stored
/// response and the key commit together or not at all. Its error type is
/// the caller's, which must take this module's errors as well.
#[tracing::instrument(
    name = "db.transaction",
    skip_all,
    fields(db.system = "postgresql", idempotency_key = key.as_str(), replayed = tracing::field::Empty)
)]
pub async fn execute<F, E>(
    pool: &PgPool,
    owner: Uuid,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    ttl: Duration,
    work: F,
) -> Result<StoredResponse, E>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<StoredResponse, E>,
    E: From<IdempotencyError>,
{
    let storage = |e: sqlx::Error| E::from(IdempotencyError::Storage(e));
    let mut tx = pool.begin().await.map_err(storage)?;
    // A request waiting on a same-key request holds a pooled connection;
    // bound the wait so a retry storm on one slow request cannot drain the
    // pool. Past it the client gets 409 in-progress with Retry-After.
    sqlx::query!("set local lock_timeout = '2s'")
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
    match claim(&mut tx, owner, key, fingerprint, ttl)
        .await
        .map_err(storage)?
    {
        Claim::Taken(Stored::Replay(response)) => {
            tracing::Span::current().record("replayed", true);
            return Ok(response);
        }
        Claim::Taken(Stored::Mismatch) => return Err(IdempotencyError::Reused.into()),
        Claim::Fresh => {}
    }
    let response = work(&mut tx).await?;
    let status = i16::try_from(response.status.as_u16()).expect("HTTP statuses fit in i16");
    sqlx::query!(
        "update idempotency_keys set response_status = $3, response_body = $4 \
         where customer_id = $1 and key = $2",
        owner,
        key.as_str(),
        status,
        &response.body,
    )
    .execute(&mut *tx)
    .await
    .map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    Ok(response)
}

/// Inserts the key, or finds the committed row that already has it.
async fn claim(
    tx: &mut PgConnection,
    owner: Uuid,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    ttl: Duration,
) -> sqlx::Result<Claim> {
    // An expired row is taken over in place; a live one is left alone and
    // the insert returns nothing. A concurrent uncommitted claim of the same
    // key makes this statement wait for that transaction to end.
    let inserted = sqlx::query_scalar!(
        r#"
        insert into idempotency_keys (customer_id, key, request_hash, expires_at)
        values ($1, $2, $3, now() + make_interval(secs => $4))
        on conflict on constraint idempotency_keys_pkey do update
            set request_hash = excluded.request_hash,
                response_status = null,
                response_body = null,
                created_at = now(),
                expires_at = excluded.expires_at
            where idempotency_keys.expires_at <= now()
        returning key
        "#,
        owner,
        key.as_str(),
        &fingerprint.0[..],
        ttl.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_some() {
        return Ok(Claim::Fresh);
    }
    // Not inserted: a live row exists and, once the insert stopped
    // waiting, is committed.
    stored(tx, owner, key, fingerprint)
        .await?
        .map(Claim::Taken)
        .ok_or(sqlx::Error::RowNotFound)
}

/// The committed, unexpired row of `key`, as a replay or a mismatch.
async fn stored(
    conn: &mut PgConnection,
    owner: Uuid,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> sqlx::Result<Option<Stored>> {
    // Every committed row has a response (the column comment in the
    // migration says why), hence the non-null overrides.
    let Some(stored) = sqlx::query!(
        r#"
        select request_hash, response_status as "response_status!", response_body as "response_body!"
        from idempotency_keys
        where customer_id = $1 and key = $2 and expires_at > now()
        "#,
        owner,
        key.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    if stored.request_hash != fingerprint.0 {
        return Ok(Some(Stored::Mismatch));
    }
    let status = u16::try_from(stored.response_status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| sqlx::Error::Decode("stored response status out of range".into()))?;
    Ok(Some(Stored::Replay(StoredResponse {
        status,
        body: stored.response_body,
        replayed: true,
    })))
}

/// Deletes up to `batch` expired keys; returns how many went.
pub async fn sweep_expired(pool: &PgPool, batch: i64) -> sqlx::Result<u64> {
    // Small batches keep each delete's locks and WAL short.
    let done = sqlx::query!(
        r#"
        delete from idempotency_keys
        where (customer_id, key) in (
            select customer_id, key from idempotency_keys
            where expires_at <= now()
            order by expires_at
            limit $1
        )
        "#,
        batch,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Sweeps expired keys every `interval` until `shutdown`.
pub async fn run_sweeper(pool: PgPool, interval: Duration, shutdown: CancellationToken) {
    const BATCH: i64 = 1_000;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            match sweep_expired(&pool, BATCH).await {
                Ok(n) if n == BATCH.unsigned_abs() => {}
                Ok(n) => {
                    tracing::debug!(deleted = n, "expired idempotency keys swept");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping idempotency keys failed; retrying later");
                    break;
                }
            }
        }
    }
}
