//! From events to commands: `OrderPaid`, `OrderConfirmed` and
//! `OrderRefunded` each owe the customer one e-mail.

use consumer::{Delivery, Handler, HandlerError};
use contracts::notifications::{EmailKind, SendEmail};
use contracts::orders::{OrderConfirmed, OrderPaid, OrderRefunded};
use contracts::{Envelope, Event as _};
use sqlx::PgConnection;
use uuid::Uuid;

/// The durable consumer name (and inbox key) of the translator.
pub const CONSUMER: &str = "notification";

/// Writes a `notifications` row and its `SendEmail` command per event.
#[derive(Debug, Clone, Copy)]
pub struct EmailRequests {
    /// Writes the commands.
    pub outbox: outbox::Writer,
}

impl Handler for EmailRequests {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        // Any version of each payload: `decode` upcasts it to the current one.
        let command = match delivery.event_type() {
            OrderPaid::EVENT_TYPE => {
                let paid: OrderPaid = delivery.decode()?;
                email(
                    paid.order_id,
                    EmailKind::PaymentReceived,
                    &paid.customer_email,
                    "We received your payment",
                    &format!(
                        "Thank you. We are confirming your seats ({}).",
                        seat_list(&paid.seats)
                    ),
                )
            }
            OrderConfirmed::EVENT_TYPE => {
                let confirmed: OrderConfirmed = delivery.decode()?;
                email(
                    confirmed.order_id,
                    EmailKind::OrderConfirmed,
                    &confirmed.customer_email,
                    "Your tickets are confirmed",
                    &format!("Your seats are yours: {}.", seat_list(&confirmed.seats)),
                )
            }
            OrderRefunded::EVENT_TYPE => {
                let refunded: OrderRefunded = delivery.decode()?;
                email(
                    refunded.order_id,
                    EmailKind::OrderRefunded,
                    &refunded.customer_email,
                    "Your payment was refunded",
                    &format!(
                        "We are sorry: {}. Your payment has been refunded.",
                        refunded.reason
                    ),
                )
            }
            _ => return Ok(()),
        };
        self.request(tx, command).await
    }
}

impl EmailRequests {
    /// Records the e-mail as owed and writes its command, unless it was
    /// requested before: at most one e-mail per (order, kind).
    async fn request(&self, tx: &mut PgConnection, command: SendEmail) -> Result<(), HandlerError> {
        let first = sqlx::query!(
            r#"
            insert into notifications (order_id, kind, recipient, subject, body)
            values ($1, $2, $3, $4, $5)
            on conflict on constraint notifications_pkey do nothing
            "#,
            command.order_id,
            command.kind.as_str(),
            command.to,
            command.subject,
            command.body,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !first {
            return Ok(());
        }
        // Each e-mail is its own aggregate (order × kind), version 1.
        let aggregate = Uuid::new_v5(&command.order_id, command.kind.as_str().as_bytes());
        let envelope = Envelope::new("notification", aggregate, 1, chrono::Utc::now(), command);
        self.outbox
            .enqueue(tx, &envelope)
            .await
            .map_err(|e| HandlerError::Transient(e.into()))
    }
}

fn email(order_id: Uuid, kind: EmailKind, to: &str, subject: &str, body: &str) -> SendEmail {
    SendEmail {
        order_id,
        kind,
        to: to.to_owned(),
        subject: subject.to_owned(),
        body: body.to_owned(),
    }
}

fn seat_list(seats: &[contracts::orders::OrderSeat]) -> String {
    seats
        .iter()
        .map(|s| s.seat_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
