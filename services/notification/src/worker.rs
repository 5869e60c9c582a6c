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

use crate::mail::{Accepted, Email, Mailer};

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

/// How often, and how far apart, a worker tries to record an e-mail it has
/// sent while Postgres does not answer: long enough to outlast a restart
/// (about 3 s on this machine), so that a sent e-mail is not sent again.
const RECORD_ATTEMPTS: u32 = 20;
const RECORD_RETRY: Duration = Duration::from_millis(500);

/// The steps, so that no transaction is open while the worker waits for
/// the rate limit or the provider (a transaction held that long would pin
/// a pooled connection and the row's lock for every second of it):
///
/// 1. [`Handler::before_transaction`]: claim the row in a statement of its
///    own (`sending_until`), wait for a slot under the rate limit, send,
///    and record the row sent at once, in a statement of its own, retried
///    while Postgres restarts;
/// 2. the runtime records the command as done (inbox, position), commits
///    and acks.
///
/// Recording the send before the command's transaction, not in it, is what
/// the 100,000-order soak taught (docs/soak/2026-11-30-native-100k.md): a
/// Postgres restart failed the transaction after the send, and the
/// redelivery found the worker's own claim live, waited on it through all
/// its retries and dead-lettered an e-mail that had gone out.
impl Handler for Sender {
    async fn before_transaction(
        &self,
        db: &PgPool,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let command: SendEmail = delivery.decode()?;
        let taken_over = match claim(db, &command).await? {
            Claim::Ours { taken_over } => taken_over,
            Claim::Sent => {
                tracing::info!(order_id = %command.order_id, kind = command.kind.as_str(), "already sent");
                return Ok(());
            }
            // Not a failure of the command: it waits for the claim to be
            // used or to lapse, however many deliveries that takes.
            Claim::Theirs => {
                return Err(HandlerError::Busy {
                    reason: "another worker is sending this e-mail".into(),
                    retry_in: CLAIM / 4,
                });
            }
        };
        let email = Email {
            to: command.to.clone(),
            subject: command.subject.clone(),
            body: command.body.clone(),
            reference: format!("{}-{}", command.order_id, command.kind.as_str()),
        };
        if taken_over && self.already_accepted(db, &command, &email).await? {
            return record_sent(db, &command).await;
        }
        // Sent before the commit: see the crate docs for what that costs.
        self.mailer.wait_for_slot().await;
        if let Err(e) = self.mailer.deliver(&email).await {
            // Let the next delivery have it at once rather than after CLAIM.
            give_back(db, &command, GiveBack::Unsent).await?;
            return Err(HandlerError::Transient(e.into()));
        }
        record_sent(db, &command).await
    }

    /// Nothing left: the e-mail was recorded sent before the transaction.
    async fn handle(&self, _: &mut PgConnection, _: &Delivery) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl Sender {
    /// Whether the provider already has an e-mail whose earlier worker's
    /// claim lapsed: that worker may have died after the provider accepted
    /// it and before recording it sent (the crate docs), so the provider's
    /// own record decides. `false` when the provider cannot tell: the
    /// e-mail is sent again, the one duplicate left.
    async fn already_accepted(
        &self,
        db: &PgPool,
        command: &SendEmail,
        email: &Email,
    ) -> Result<bool, HandlerError> {
        let accepted = match self.mailer.accepted(email).await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Not knowing is not a reason to send.
                give_back(db, command, GiveBack::Unknown).await?;
                return Err(HandlerError::Transient(e.into()));
            }
        };
        tracing::warn!(
            order_id = %command.order_id,
            kind = command.kind.as_str(),
            ?accepted,
            "took over an e-mail whose worker stopped mid-send; asked the provider"
        );
        Ok(accepted == Accepted::Yes)
    }
}

/// Records the e-mail sent, retrying while Postgres is unavailable (see
/// [`RECORD_ATTEMPTS`]). If it still cannot, the claim stays until it
/// lapses and a later delivery sends the e-mail again: the one duplicate
/// left (the crate docs).
async fn record_sent(db: &PgPool, command: &SendEmail) -> Result<(), HandlerError> {
    let mut attempts = 1;
    loop {
        // `coalesce`: a redelivery of a command sent long ago keeps its time.
        let recorded = sqlx::query!(
            r#"
            update notifications set sent_at = coalesce(sent_at, now()), sending_until = null
            where order_id = $1 and kind = $2
            "#,
            command.order_id,
            command.kind.as_str(),
        )
        .execute(db)
        .await;
        match recorded {
            Ok(_) => return Ok(()),
            Err(e) if attempts < RECORD_ATTEMPTS && pgkit::is_unavailable(&e) => {
                attempts += 1;
                tokio::time::sleep(RECORD_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Who may send an e-mail now.
enum Claim {
    /// This worker: the row is claimed for [`CLAIM`]. `taken_over`: an
    /// earlier claim lapsed unrecorded, so its worker may have sent it.
    Ours { taken_over: bool },
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
               exists (select 1 from claimed) as "claimed!",
               (select sending_until is not null from existing) as "lapsed?"
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
        (Some(false), true) => Ok(Claim::Ours {
            taken_over: claim.lapsed == Some(true),
        }),
        (Some(false), false) => Ok(Claim::Theirs),
    }
}

/// How a worker hands a claim back without having recorded the e-mail
/// sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GiveBack {
    /// The send failed, so nobody sent it: the claim is cleared and the
    /// next delivery sends at once.
    Unsent,
    /// The provider could not be asked whether it has an e-mail whose
    /// earlier worker died: the claim ends now but stays set, so the next
    /// delivery takes it at once and, seeing it lapsed, asks again rather
    /// than sending unasked.
    Unknown,
}

/// Ends this worker's claim on an e-mail, as `how` says.
async fn give_back(db: &PgPool, command: &SendEmail, how: GiveBack) -> Result<(), HandlerError> {
    sqlx::query!(
        "update notifications set sending_until = case when $3::boolean then now() end \
         where order_id = $1 and kind = $2 and sent_at is null",
        command.order_id,
        command.kind.as_str(),
        how == GiveBack::Unknown,
    )
    .execute(db)
    .await?;
    Ok(())
}
