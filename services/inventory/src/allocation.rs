//! Confirming a paid order's seats: all of them, or none.

use consumer::{Delivery, Handler, HandlerError};
use contracts::inventory::{SeatAllocationRejected, SeatsConfirmed};
use contracts::orders::OrderPaid;
use contracts::{Envelope, Event};
use sqlx::{Acquire as _, PgConnection};

/// The durable consumer name (and inbox key).
pub const CONSUMER: &str = "inventory";

/// Applies `OrderPaid` to the seats.
#[derive(Debug, Clone, Copy)]
pub struct SeatAllocation {
    /// Writes the answer.
    pub outbox: outbox::Writer,
}

impl Handler for SeatAllocation {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = &delivery.envelope;
        match (envelope.event_type.as_str(), envelope.schema_version) {
            (OrderPaid::EVENT_TYPE, 1) => {
                let paid: OrderPaid = serde_json::from_value(envelope.data.clone())
                    .map_err(|e| HandlerError::Poison(format!("invalid OrderPaid data: {e}")))?;
                self.allocate(tx, &paid).await
            }
            (OrderPaid::EVENT_TYPE, version) => Err(HandlerError::Poison(format!(
                "unknown schema_version {version} of OrderPaid"
            ))),
            // Created, cancelled, confirmed, refunded: nothing to do here
            // (holds expire by themselves); the position still advances.
            _ => Ok(()),
        }
    }
}

impl SeatAllocation {
    #[tracing::instrument(name = "inventory.allocate", skip_all, fields(order_id = %paid.order_id))]
    async fn allocate(&self, tx: &mut PgConnection, paid: &OrderPaid) -> Result<(), HandlerError> {
        let wanted: Vec<String> = paid.seats.iter().map(|s| s.seat_id.clone()).collect();
        // A savepoint: if not every seat can be sold, none is.
        let mut attempt = tx.begin().await?;
        // The decision. A seat sold to this same order already counts (a
        // re-run after the inbox was swept must not reject its own seats).
        let sold = sqlx::query!(
            r#"
            update seats
            set status = 'SOLD', order_id = $1, sold_at = coalesce(sold_at, now())
            where event_id = $2
              and seat_id = any($3)
              and (status = 'AVAILABLE' or order_id = $1)
            returning seat_id, price_cents
            "#,
            paid.order_id,
            paid.event_id,
            &wanted,
        )
        .fetch_all(&mut *attempt)
        .await?;

        let amount_cents: i64 = sold.iter().map(|s| i64::from(s.price_cents)).sum();
        let sold: Vec<String> = sold.into_iter().map(|s| s.seat_id).collect();
        if sold.len() == wanted.len() {
            sqlx::query!(
                "update events set version = version + 1, updated_at = now() where id = $1",
                paid.event_id
            )
            .execute(&mut *attempt)
            .await?;
            attempt.commit().await?;
            let confirmed = SeatsConfirmed {
                order_id: paid.order_id,
                event_id: paid.event_id,
                seat_ids: wanted,
                amount_cents,
            };
            self.answer(tx, paid, confirmed).await
        } else {
            attempt.rollback().await?;
            let unavailable: Vec<String> =
                wanted.into_iter().filter(|s| !sold.contains(s)).collect();
            tracing::info!(
                ?unavailable,
                "seats not available; rejecting the allocation"
            );
            let rejected = SeatAllocationRejected {
                order_id: paid.order_id,
                event_id: paid.event_id,
                reason: format!("seats no longer available: {}", unavailable.join(", ")),
                unavailable_seat_ids: unavailable,
            };
            self.answer(tx, paid, rejected).await
        }
    }

    /// Writes the answer: version 1 of the order's `seat_allocation`
    /// aggregate (one answer per order, keyed by the order id).
    async fn answer<T: Event>(
        &self,
        tx: &mut PgConnection,
        paid: &OrderPaid,
        event: T,
    ) -> Result<(), HandlerError> {
        let envelope = Envelope::new("inventory", paid.order_id, 1, chrono::Utc::now(), event);
        self.outbox
            .enqueue(tx, &envelope)
            .await
            .map_err(|e| HandlerError::Transient(e.into()))
    }
}
