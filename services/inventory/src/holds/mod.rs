//! Seat holds: a short, exclusive claim on a seat while the customer
//! orders, kept in Redis and fenced by Postgres.
//!
//! Acquiring a hold is three steps:
//! 1. draw a fencing token from a Postgres sequence (and check the seat
//!    exists and is not sold);
//! 2. one Lua script in Redis: enforce the customer's hold limit, then
//!    `SET hold NX PX ttl` with the owner token, the fencing token and the
//!    customer, and index the hold for the seat map and the limit;
//! 3. record the grant in Postgres: `seats.hold_fence = token`, only if the
//!    token is greater than the recorded one and the seat is still
//!    available. If that fails, the Redis hold is released and the answer
//!    is 409.
//!
//! Why so much ceremony for a lock? Because a Redis lock alone is not
//! safe (Kleppmann, "How to do distributed locking"): a client can pause
//! past its hold's expiry, or Redis can lose its data, and two customers
//! then both believe they hold the seat. The fencing token settles it
//! where the truth lives: the sale (`allocation.rs`) requires the order's
//! token to equal `seats.hold_fence`, the token of the latest hold granted.
//! Tokens come from Postgres, so they keep increasing even if Redis forgets
//! everything (see `migrations/inventory/0004_holds.sql`).
//!
//! Every key a hold script touches (the hold, the concert's index, the
//! customer's index) carries the concert's hash tag, `{<concert id>}`, so
//! the scripts run unchanged on Redis Cluster (proven on one in
//! `tests/api/cluster.rs`). That is why the hold limit counts a customer's
//! holds per concert: a count across concerts would be a key on another
//! slot.
//!
//! The value and the scripts are in `scripts.rs`; the routes (hold,
//! release, verify) in `http.rs`.

pub(crate) mod http;
mod scripts;

use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::redis_link::{RedisLink, RedisUnavailable};
use scripts::{ACQUIRE, HoldValue, RELEASE};

/// A granted hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    /// The concert.
    pub event_id: Uuid,
    /// The seat.
    pub seat_id: String,
    /// Proves ownership: needed to release the hold and to order the seat.
    pub hold_token: Uuid,
    /// Decides the sale: only the latest hold's token can buy the seat.
    pub fencing_token: i64,
    /// When the hold lapses by itself.
    pub expires_at: DateTime<Utc>,
}

/// A hold presented for verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifiedHold {
    /// The seat.
    pub seat_id: String,
    /// The hold's fencing token, to be stored with the order line.
    pub fencing_token: i64,
    /// When the hold lapses.
    pub expires_at: DateTime<Utc>,
}

/// Why a hold was not granted, released or verified.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// No such concert or seat.
    #[error("no seat {seat_id} in concert {event_id}")]
    SeatNotFound { event_id: Uuid, seat_id: String },
    /// The seat is sold.
    #[error("seat {0} is sold")]
    Sold(String),
    /// Someone else holds the seat; it may be free after `retry_after`.
    #[error("seat {seat_id} is held by another customer")]
    HeldByAnother {
        seat_id: String,
        /// When the other hold lapses at the latest.
        retry_after: Duration,
    },
    /// A newer hold on the seat was granted while this request waited
    /// between drawing its fencing token and recording it; the seat may be
    /// free now, and a new request draws a newer token.
    #[error("a newer hold on seat {0} was granted meanwhile")]
    Superseded(String),
    /// The customer holds as many seats as allowed.
    #[error("customer holds {limit} seats already")]
    LimitReached {
        limit: u32,
        /// When the customer's oldest hold lapses.
        retry_after: Duration,
    },
    /// The hold token does not match a live hold on that seat.
    #[error("no live hold on seat {0} with that token")]
    NotHeld(String),
    /// Redis is down: holds cannot be granted or checked.
    #[error("redis unavailable")]
    RedisUnavailable(#[from] RedisUnavailable),
    /// Postgres is down or failed.
    #[error("postgres")]
    Database(#[from] sqlx::Error),
}

impl From<redis::RedisError> for HoldError {
    fn from(e: redis::RedisError) -> Self {
        Self::RedisUnavailable(RedisUnavailable::Command(e))
    }
}

/// Grants, releases and verifies holds.
#[derive(Clone)]
pub struct Holds {
    db: PgPool,
    redis: RedisLink,
    ttl: Duration,
    limit: u32,
}

impl Holds {
    /// Holds lasting `ttl`, at most `limit` per customer and concert.
    pub fn new(db: PgPool, redis: RedisLink, ttl: Duration, limit: u32) -> Self {
        Self {
            db,
            redis,
            ttl,
            limit,
        }
    }

    /// Grants `customer` a hold on the seat, or says why not.
    #[tracing::instrument(name = "holds.acquire", skip(self), fields(fencing_token))]
    pub async fn acquire(
        &self,
        event_id: Uuid,
        seat_id: &str,
        customer: Uuid,
    ) -> Result<Hold, HoldError> {
        // Fail fast without a token draw when Redis is known to be away.
        let mut connection = self.redis.connection()?;
        let seat = sqlx::query!(
            r#"select status, nextval('hold_fences') as "fence!" from seats where event_id = $1 and seat_id = $2"#,
            event_id,
            seat_id
        )
        .fetch_optional(&self.db)
        .await?
        .ok_or_else(|| HoldError::SeatNotFound {
            event_id,
            seat_id: seat_id.to_owned(),
        })?;
        if seat.status == "SOLD" {
            return Err(HoldError::Sold(seat_id.to_owned()));
        }
        let fence = seat.fence;
        tracing::Span::current().record("fencing_token", fence);

        let token = Uuid::new_v4();
        let keys = self.redis.keys();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        // The expiry in the value (this host's clock) is what `verify`
        // reports; the key's own PX, on Redis's clock, is what ends the hold.
        let value = HoldValue {
            token,
            fence,
            customer,
            expires_ms: Utc::now().timestamp_millis() + ttl_ms,
        };
        let (outcome, ms): (i64, i64) = ACQUIRE
            .key(keys.hold(event_id, seat_id))
            .key(keys.holds(event_id))
            .key(keys.customer_holds(event_id, customer))
            .arg(value.encode())
            .arg(ttl_ms)
            .arg(self.limit)
            .arg(seat_id)
            .invoke_async(&mut connection)
            .await?;
        let wait = Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0));
        match outcome {
            1 => {}
            0 => {
                return Err(HoldError::HeldByAnother {
                    seat_id: seat_id.to_owned(),
                    retry_after: wait,
                });
            }
            _ => {
                return Err(HoldError::LimitReached {
                    limit: self.limit,
                    retry_after: wait,
                });
            }
        }

        // The grant: Postgres records the newest token, unless the seat was
        // sold meanwhile or a newer hold was granted while we paused.
        let granted = sqlx::query!(
            r#"
            update seats set hold_fence = $3
            where event_id = $1 and seat_id = $2 and status = 'AVAILABLE'
              and (hold_fence is null or hold_fence < $3)
            "#,
            event_id,
            seat_id,
            fence
        )
        .execute(&self.db)
        .await;
        let refused = match granted {
            Ok(done) if done.rows_affected() == 1 => None,
            // Refused: sold meanwhile, or outrun by a newer token. Which
            // one decides what the customer should do next.
            Ok(_) => Some(self.why_refused(event_id, seat_id).await),
            Err(e) => Some(HoldError::Database(e)),
        };
        if let Some(error) = refused {
            // Best effort: if this fails too, the hold lapses by itself.
            let _ = self.release(event_id, seat_id, token, customer).await;
            return Err(error);
        }
        Ok(Hold {
            event_id,
            seat_id: seat_id.to_owned(),
            hold_token: token,
            fencing_token: fence,
            expires_at: Utc
                .timestamp_millis_opt(ms)
                .single()
                .unwrap_or_else(Utc::now),
        })
    }

    /// Why the grant of a hold was refused: the seat was sold, or a newer
    /// hold was granted meanwhile (then the seat may well be free).
    async fn why_refused(&self, event_id: Uuid, seat_id: &str) -> HoldError {
        let status = sqlx::query_scalar!(
            "select status from seats where event_id = $1 and seat_id = $2",
            event_id,
            seat_id
        )
        .fetch_one(&self.db)
        .await;
        match status {
            Ok(status) if status == "SOLD" => HoldError::Sold(seat_id.to_owned()),
            Ok(_) => HoldError::Superseded(seat_id.to_owned()),
            Err(e) => HoldError::Database(e),
        }
    }

    /// Releases the hold if `token` owns it and it is `customer`'s;
    /// `false` if not (wrong token, another customer's, already lapsed).
    /// The token alone is not enough: it travels in the customer's order,
    /// and whoever saw it must not be able to free the seat.
    #[tracing::instrument(name = "holds.release", skip(self, token))]
    pub async fn release(
        &self,
        event_id: Uuid,
        seat_id: &str,
        token: Uuid,
        customer: Uuid,
    ) -> Result<bool, HoldError> {
        let keys = self.redis.keys();
        let mut connection = self.redis.connection()?;
        let hold_key = keys.hold(event_id, seat_id);
        // The customer index key is in the value; the script re-checks the
        // token, so a hold replaced between the two calls is left alone.
        let current: Option<String> = redis::cmd("GET")
            .arg(&hold_key)
            .query_async(&mut connection)
            .await?;
        let Some(current) = current.as_deref().and_then(HoldValue::decode) else {
            return Ok(false);
        };
        if current.customer != customer {
            return Ok(false);
        }
        let released: i64 = RELEASE
            .key(hold_key)
            .key(keys.holds(event_id))
            .key(keys.customer_holds(event_id, current.customer))
            .arg(token.to_string())
            .arg(seat_id)
            .invoke_async(&mut connection)
            .await?;
        Ok(released == 1)
    }

    /// Checks that each `(seat, token)` is a live hold of `customer` and
    /// returns the fencing tokens, or the first seat whose hold is not.
    #[tracing::instrument(name = "holds.verify", skip(self, seats), fields(seats = seats.len()))]
    pub async fn verify(
        &self,
        event_id: Uuid,
        seats: &[(String, Uuid)],
        customer: Uuid,
    ) -> Result<Vec<VerifiedHold>, HoldError> {
        let keys = self.redis.keys();
        let mut connection = self.redis.connection()?;
        let hold_keys: Vec<String> = seats
            .iter()
            .map(|(seat, _)| keys.hold(event_id, seat))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&hold_keys)
            .query_async(&mut connection)
            .await?;
        seats
            .iter()
            .zip(values)
            .map(
                |((seat, token), value)| match value.as_deref().and_then(HoldValue::decode) {
                    Some(hold) if hold.token == *token && hold.customer == customer => {
                        Ok(VerifiedHold {
                            seat_id: seat.clone(),
                            fencing_token: hold.fence,
                            expires_at: Utc
                                .timestamp_millis_opt(hold.expires_ms)
                                .single()
                                .unwrap_or_else(Utc::now),
                        })
                    }
                    _ => Err(HoldError::NotHeld(seat.clone())),
                },
            )
            .collect()
    }
}
