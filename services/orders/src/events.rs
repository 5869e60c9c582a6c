//! The fact each change of an order produces, built here rather than in
//! the handlers or the reactions: one place says what `OrderPaid` carries,
//! whoever pays, and which fact a customer's command produces
//! ([`Order::record`]). Each envelope carries the order's version after
//! the change, and the time of the change.
//!
//! The events write the current version of each payload (`contracts`),
//! which calls the concert `concert_id`; the order's row and the HTTP API
//! still call it `event_id`, a name the events gave up because the
//! envelope's `event_id` is the message's id.

use chrono::{DateTime, Utc};
use contracts::orders::{OrderCancelled, OrderConfirmed, OrderCreated, OrderPaid, OrderRefunded};
use contracts::{Envelope, Event};
use sqlx::PgConnection;

use crate::domain::{Command, Order};

/// `producer` in every envelope this service writes.
pub const PRODUCER: &str = "orders";

impl Order {
    fn envelope<T: Event>(&self, at: DateTime<Utc>, data: T) -> Envelope<T> {
        Envelope::new(PRODUCER, self.id, self.version, at, data)
    }

    /// `OrderCreated`, for a new `PENDING` order.
    pub fn created(&self) -> Envelope<OrderCreated> {
        self.envelope(
            self.created_at,
            OrderCreated {
                order_id: self.id,
                concert_id: self.event_id,
                customer_email: self.customer_email.clone(),
                seats: self.event_seats(),
            },
        )
    }

    /// Writes the event of `command`, which this order has just undergone,
    /// into the outbox inside the caller's transaction `tx`.
    pub async fn record(
        &self,
        command: Command,
        outbox: outbox::Writer,
        tx: &mut PgConnection,
    ) -> Result<(), outbox::OutboxError> {
        match command {
            Command::Pay => outbox.enqueue(tx, &self.paid()).await,
            Command::Cancel => outbox.enqueue(tx, &self.cancelled()).await,
        }
    }

    /// `OrderPaid`, after `PENDING → PAID`.
    pub fn paid(&self) -> Envelope<OrderPaid> {
        self.envelope(
            self.updated_at,
            OrderPaid {
                order_id: self.id,
                concert_id: self.event_id,
                customer_email: self.customer_email.clone(),
                seats: self.event_seats(),
                paid_at: self.updated_at,
            },
        )
    }

    /// `OrderCancelled`, after `PENDING → CANCELLED`.
    pub fn cancelled(&self) -> Envelope<OrderCancelled> {
        self.envelope(
            self.updated_at,
            OrderCancelled {
                order_id: self.id,
                concert_id: self.event_id,
                cancelled_at: self.updated_at,
            },
        )
    }

    /// `OrderConfirmed`, after `PAID → CONFIRMED`: inventory sold the seats
    /// for `amount_cents`.
    pub fn confirmed(&self, amount_cents: i64) -> Envelope<OrderConfirmed> {
        self.envelope(
            self.updated_at,
            OrderConfirmed {
                order_id: self.id,
                concert_id: self.event_id,
                customer_email: self.customer_email.clone(),
                seats: self.event_seats(),
                amount_cents,
                confirmed_at: self.updated_at,
            },
        )
    }

    /// `OrderRefunded`, after `PAID → REFUNDED`: the compensation for a
    /// payment inventory could not honour, for `reason`.
    pub fn refunded(&self, reason: String) -> Envelope<OrderRefunded> {
        self.envelope(
            self.updated_at,
            OrderRefunded {
                order_id: self.id,
                concert_id: self.event_id,
                customer_email: self.customer_email.clone(),
                reason,
                refunded_at: self.updated_at,
            },
        )
    }
}
