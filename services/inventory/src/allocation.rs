//! Confirming a paid order's seats: all of them, or none, and only to the
//! current holder of each seat.
//!
//! This is where fencing tokens decide (see [`crate::holds`]): a seat is
//! sold to an order only if the order's fencing token for it equals
//! `seats.hold_fence`, the token of the latest hold granted on the seat. A
//! customer whose hold lapsed and was re-issued to someone else holds an
//! older token, so their order loses the seat even if it was created (or
//! paid) first. A seat never held has no token and can be sold to an
//! order without one.

use consumer::{Delivery, Handler, HandlerError};
use contracts::inventory::{SeatAllocationRejected, SeatsConfirmed};
use contracts::orders::OrderPaid;
use contracts::{Envelope, Event};
use sqlx::{Acquire as _, PgConnection};

/// The durable consumer name (and inbox key).
pub const CONSUMER: &str = "inventory";

/// Applies `OrderPaid` to the seats.
#[derive(Clone)]
pub struct SeatAllocation {
    /// Writes the answer.
    pub outbox: outbox::Writer,
    /// Told the new version after a sale commits, so cached seat maps stop
    /// showing the seats as available (`None` in tests without Redis).
    pub seat_maps: Option<crate::seat_map::SeatMaps>,
}

impl Handler for SeatAllocation {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        match delivery.event_type() {
            OrderPaid::EVENT_TYPE => {
                // Any version: `decode` upcasts it to the current one.
                let paid: OrderPaid = delivery.decode()?;
                self.allocate(tx, &paid).await
            }
            // The consumer reads only `OrderPaid` (`startup.rs`); a durable
            // created before that filter still delivers the order's other
            // events, which need nothing here (holds expire by themselves).
            _ => Ok(()),
        }
    }

    async fn after_commit(&self, delivery: &Delivery) {
        let Some(seat_maps) = &self.seat_maps else {
            return;
        };
        // Decoded again, through the same upcasters as in `handle`, so the
        // concert is found whichever version named its field. Any other
        // event sold nothing.
        let Ok(paid) = delivery.decode::<OrderPaid>() else {
            return;
        };
        match crate::current_version(seat_maps.db(), paid.concert_id).await {
            Ok(Some(version)) => seat_maps.version_changed(paid.concert_id, version).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "seat-map version not bumped after a sale"),
        }
    }
}

impl SeatAllocation {
    #[tracing::instrument(name = "inventory.allocate", skip_all, fields(order_id = %paid.order_id))]
    async fn allocate(&self, tx: &mut PgConnection, paid: &OrderPaid) -> Result<(), HandlerError> {
        let wanted: Vec<String> = paid.seats.iter().map(|s| s.seat_id.clone()).collect();
        let fences: Vec<Option<i64>> = paid.seats.iter().map(|s| s.fencing_token).collect();
        // A savepoint: if not every seat can be sold, none is.
        let mut attempt = tx.begin().await?;
        // The decision. A seat sold to this same order already counts, so
        // applying this order's OrderPaid again never rejects its own seats.
        // The runtime makes a re-run rare (the inbox skips it for 14 days,
        // the order's position for 90: `consumer::sweeper`), but a hand
        // repair after that (a position restored, a letter redriven) re-runs it.
        // `is not distinct from` matches null with null: an unheld seat
        // sells to an order that carries no token for it.
        let sold = sqlx::query!(
            r#"
            update seats s
            set status = 'SOLD', order_id = $1, sold_at = coalesce(s.sold_at, now())
            from unnest($3::text[], $4::bigint[]) as w(seat_id, fence)
            where s.event_id = $2
              and s.seat_id = w.seat_id
              and (s.order_id = $1
                   or (s.status = 'AVAILABLE' and s.hold_fence is not distinct from w.fence))
            returning s.seat_id, s.price_cents
            "#,
            paid.order_id,
            paid.concert_id,
            &wanted,
            &fences as &[Option<i64>],
        )
        .fetch_all(&mut *attempt)
        .await?;

        let amount_cents: i64 = sold.iter().map(|s| i64::from(s.price_cents)).sum();
        let sold: Vec<String> = sold.into_iter().map(|s| s.seat_id).collect();
        if sold.len() == wanted.len() {
            sqlx::query!(
                "update events set version = version + 1, updated_at = now() where id = $1",
                paid.concert_id
            )
            .execute(&mut *attempt)
            .await?;
            attempt.commit().await?;
            let confirmed = SeatsConfirmed {
                order_id: paid.order_id,
                concert_id: paid.concert_id,
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
                "seats not available to this order; rejecting the allocation"
            );
            let rejected = SeatAllocationRejected {
                order_id: paid.order_id,
                concert_id: paid.concert_id,
                reason: format!(
                    "seats sold or held by another customer: {}",
                    unavailable.join(", ")
                ),
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
