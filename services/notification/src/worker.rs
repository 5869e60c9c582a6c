//! The workers: take `SendEmail` commands off the `NOTIFY_COMMANDS` work
//! queue and send them, at most once per (order, kind) as far as a
//! non-transactional provider allows (see the crate docs).

use std::sync::Arc;

use consumer::{Delivery, Handler, HandlerError};
use contracts::notifications::SendEmail;
use sqlx::PgConnection;

use crate::mail::{Email, Mailer};

/// The durable consumer name shared by all workers (one group).
pub const CONSUMER: &str = "notification-workers";

/// Sends the e-mail a command asks for.
#[derive(Clone)]
pub struct Sender {
    /// The provider, rate-limited.
    pub mailer: Arc<Mailer>,
}

impl Handler for Sender {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        // Another type, an unknown version or invalid data is poison.
        let command: SendEmail = delivery.decode()?;
        // Locks the row: two workers never send the same e-mail at once.
        let row = sqlx::query!(
            r#"
            select sent_at from notifications where order_id = $1 and kind = $2 for update
            "#,
            command.order_id,
            command.kind.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(HandlerError::Poison(format!(
                "no notification {} for order {}",
                command.kind.as_str(),
                command.order_id
            )));
        };
        if row.sent_at.is_some() {
            tracing::info!(order_id = %command.order_id, kind = command.kind.as_str(), "already sent");
            return Ok(());
        }
        let email = Email {
            to: command.to.clone(),
            subject: command.subject.clone(),
            body: command.body.clone(),
            reference: format!("{}-{}", command.order_id, command.kind.as_str()),
        };
        // Sent before the commit: see the crate docs for what that costs.
        self.mailer
            .send(&email)
            .await
            .map_err(|e| HandlerError::Transient(e.into()))?;
        sqlx::query!(
            "update notifications set sent_at = now() where order_id = $1 and kind = $2",
            command.order_id,
            command.kind.as_str(),
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
