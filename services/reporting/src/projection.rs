//! Counting order events into a generation of the `sales` table.
//!
//! The same [`count`] serves the live consumer (into the active
//! generation) and a rebuild (into the new one); `counted` makes it
//! idempotent per generation, so an event seen by both is counted once.

use consumer::{Delivery, Handler, HandlerError};
use contracts::Event as _;
use contracts::orders::{OrderConfirmed, OrderRefunded};
use sqlx::PgConnection;

/// The durable consumer name (and inbox key) of the live projection.
pub const CONSUMER: &str = "reporting";

/// Counts `envelope` into `generation`, unless it was counted there before.
pub async fn count(
    tx: &mut PgConnection,
    generation: i32,
    envelope: &contracts::Envelope<serde_json::Value>,
) -> Result<(), HandlerError> {
    let first_time = sqlx::query!(
        "insert into counted (generation, message_id) values ($1, $2) on conflict do nothing",
        generation,
        envelope.event_id.0,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        return Ok(());
    }
    // Any version of each payload: `decode` upcasts it to the current one,
    // so the live count and a replay of a log that holds several versions
    // read the same facts.
    match envelope.event_type.as_str() {
        OrderConfirmed::EVENT_TYPE => {
            let confirmed: OrderConfirmed = envelope.decode()?;
            let tickets = i64::try_from(confirmed.seats.len()).unwrap_or(i64::MAX);
            sqlx::query!(
                r#"
                insert into sales (generation, event_id, tickets_sold, revenue_cents)
                values ($1, $2, $3, $4)
                on conflict on constraint sales_pkey do update
                set tickets_sold = sales.tickets_sold + excluded.tickets_sold,
                    revenue_cents = sales.revenue_cents + excluded.revenue_cents,
                    updated_at = now()
                "#,
                generation,
                confirmed.concert_id,
                tickets,
                confirmed.amount_cents,
            )
            .execute(&mut *tx)
            .await?;
        }
        OrderRefunded::EVENT_TYPE => {
            let refunded: OrderRefunded = envelope.decode()?;
            sqlx::query!(
                r#"
                insert into sales (generation, event_id, refunds) values ($1, $2, 1)
                on conflict on constraint sales_pkey do update
                set refunds = sales.refunds + 1, updated_at = now()
                "#,
                generation,
                refunded.concert_id,
            )
            .execute(&mut *tx)
            .await?;
        }
        // Created, paid, cancelled: no effect on sales totals.
        _ => {}
    }
    Ok(())
}

/// The live projection: counts into whichever generation is active.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveProjection;

impl Handler for LiveProjection {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        // `for share` holds off a rebuild's swap until this transaction
        // ends, so nothing is counted into a generation after it retired.
        let generation =
            sqlx::query_scalar!("select active_generation from projection_state for share")
                .fetch_one(&mut *tx)
                .await?;
        count(tx, generation, &delivery.envelope).await
    }
}
