//! The workers: take `SendEmail` commands off the `NOTIFY_COMMANDS` work
//! queue and send them, at most once per (order, kind) as far as a
//! non-transactional provider allows (see the crate docs), without holding
//! a transaction while they wait for the rate limit or the provider.

use std::sync::Arc;
use std::time::Duration;

use consumer::{Delivery, Handler, HandlerError};
use contracts::notifications::SendEmail;
use sqlx::postgres::types::PgInterval;
use sqlx::{PgConnection, PgPool};

use crate::mail::{Email, Mailer};

/// The durable consumer name shared by all workers (one group).
pub const CONSUMER: &str = "notification-workers";

/// Sends the e-mail a command asks for.
#[derive(Clone)]
pub struct Sender {
    /// The provider, rate-limited.
    pub mailer: Arc<Mailer>,
}

/// How long a worker's claim on an e-mail lasts: longer than waiting for a
/// slot (a slot per worker at most ahead of it) and sending (the SMTP
/// timeout is 10 s) can take, so that no other worker sends it meanwhile;
/// short enough that an e-mail whose worker died goes out on a later
/// delivery of its command.
const CLAIM: Duration = Duration::from_mins(1);

/// The three steps, so that no transaction is open while the worker waits
/// for the rate limit or the provider (a transaction held that long would
/// pin a pooled connection and the row's lock for every second of it):
///
/// 1. [`Handler::before_transaction`]: claim the row in a statement of its
///    own (`sending_until`), wait for a slot under the rate limit, and
///    send;
/// 2. [`Handler::handle`]: mark the row sent, in the transaction that
///    records the command as done;
/// 3. the runtime commits and acks.
impl Handler for Sender {
    async fn before_transaction(
        &self,
        db: &PgPool,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let command: SendEmail = delivery.decode()?;
        match claim(db, &command).await? {
            Claim::Ours => {}
            Claim::Sent => {
                tracing::info!(order_id = %command.order_id, kind = command.kind.as_str(), "already sent");
                return Ok(());
            }
            Claim::Theirs => {
                return Err(HandlerError::Transient(
                    "another worker is sending this e-mail".into(),
                ));
            }
        }
        let email = Email {
            to: command.to.clone(),
            subject: command.subject.clone(),
            body: command.body.clone(),
            reference: format!("{}-{}", command.order_id, command.kind.as_str()),
        };
        // Sent before the commit: see the crate docs for what that costs.
        self.mailer.wait_for_slot().await;
        if let Err(e) = self.mailer.deliver(&email).await {
            // Let the next delivery have it at once rather than after CLAIM.
            release(db, &command).await?;
            return Err(HandlerError::Transient(e.into()));
        }
        Ok(())
    }

    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        let command: SendEmail = delivery.decode()?;
        // `coalesce`: a redelivery of a command sent long ago keeps its time.
        sqlx::query!(
            r#"
            update notifications set sent_at = coalesce(sent_at, now()), sending_until = null
            where order_id = $1 and kind = $2
            "#,
            command.order_id,
            command.kind.as_str(),
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Who may send an e-mail now.
enum Claim {
    /// This worker: the row is claimed for [`CLAIM`].
    Ours,
    /// Nobody: it was sent before.
    Sent,
    /// Another worker, whose claim has not lapsed.
    Theirs,
}

/// Claims the e-mail for this worker, in one statement: it commits at
/// once, so no lock outlives it.
async fn claim(db: &PgPool, command: &SendEmail) -> Result<Claim, HandlerError> {
    let claim = sqlx::query!(
        r#"
        with existing as (
            select sent_at, sending_until from notifications
            where order_id = $1 and kind = $2
        ), claimed as (
            update notifications set sending_until = now() + $3::interval
            where order_id = $1 and kind = $2 and sent_at is null
              and (sending_until is null or sending_until < now())
            returning 1
        )
        select (select sent_at is not null from existing) as "sent?",
               exists (select 1 from claimed) as "claimed!"
        "#,
        command.order_id,
        command.kind.as_str(),
        PgInterval::try_from(CLAIM).map_err(|e| HandlerError::Transient(e.into()))?,
    )
    .fetch_one(db)
    .await?;
    match (claim.sent, claim.claimed) {
        (None, _) => Err(HandlerError::Poison(format!(
            "no notification {} for order {}",
            command.kind.as_str(),
            command.order_id
        ))),
        (Some(true), _) => Ok(Claim::Sent),
        (Some(false), true) => Ok(Claim::Ours),
        (Some(false), false) => Ok(Claim::Theirs),
    }
}

/// Gives up this worker's claim after a failed send.
async fn release(db: &PgPool, command: &SendEmail) -> Result<(), HandlerError> {
    sqlx::query!(
        "update notifications set sending_until = null where order_id = $1 and kind = $2 and sent_at is null",
        command.order_id,
        command.kind.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}
