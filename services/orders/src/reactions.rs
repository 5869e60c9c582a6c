//! Orders reacting to inventory's answer to a payment (the saga's second
//! half).
//!
//! - `SeatsConfirmed` → `PAID → CONFIRMED` and `OrderConfirmed`;
//! - `SeatAllocationRejected` → `PAID → REFUNDED` and `OrderRefunded`:
//!   compensation. `OrderPaid` was a fact and stays one; the refund is a
//!   new fact that answers it.
//!
//! Each runs in the consumer runtime's transaction, so the status change,
//! its outbox event, the inbox row and the consumer position commit
//! together.

use consumer::{Delivery, Handler, HandlerError};
use contracts::inventory::{SeatAllocationRejected, SeatsConfirmed};
use contracts::{Envelope, Event};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Order, Transition};
use crate::store::{self, Refusal};

/// The durable consumer name (and inbox key) of this reaction.
pub const CONSUMER: &str = "orders";

/// Applies inventory events to orders.
#[derive(Debug, Clone, Copy)]
pub struct InventoryReactions {
    /// Writes the resulting events.
    pub outbox: outbox::Writer,
}

impl Handler for InventoryReactions {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        match delivery.event_type() {
            SeatsConfirmed::EVENT_TYPE => {
                let confirmed: SeatsConfirmed = delivery.decode()?;
                let order = transition(tx, confirmed.order_id, Transition::Confirm).await?;
                self.write(tx, &order.confirmed(confirmed.amount_cents))
                    .await
            }
            SeatAllocationRejected::EVENT_TYPE => {
                let rejected: SeatAllocationRejected = delivery.decode()?;
                let order = transition(tx, rejected.order_id, Transition::Refund).await?;
                self.write(tx, &order.refunded(rejected.reason)).await
            }
            // Other inventory facts are not the orders service's business.
            _ => Ok(()),
        }
    }
}

impl InventoryReactions {
    async fn write<T: Event>(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope<T>,
    ) -> Result<(), HandlerError> {
        self.outbox
            .enqueue(tx, envelope)
            .await
            .map_err(|e| HandlerError::Transient(e.into()))
    }
}

/// A transition the saga requires; an order that is not `PAID` (or does
/// not exist) means the two services disagree, which a human must look at:
/// the message is poison.
async fn transition(
    tx: &mut PgConnection,
    order_id: Uuid,
    transition: Transition,
) -> Result<Order, HandlerError> {
    match store::transition(tx, order_id, store::Owner::System, transition).await? {
        Ok(order) => Ok(order),
        Err(Refusal::NotFound) => Err(HandlerError::Poison(format!(
            "order {order_id} does not exist"
        ))),
        Err(Refusal::WrongStatus(status)) => Err(HandlerError::Poison(format!(
            "cannot {} order {order_id}: it is {status}",
            transition.verb()
        ))),
        // Only payments check the sale window; confirm and refund never do.
        Err(Refusal::SaleClosed(_)) => Err(HandlerError::Poison(format!(
            "cannot {} order {order_id}: refused as after the sale",
            transition.verb()
        ))),
    }
}
