//! What each service's database says about the run's concerts once the
//! system has settled, read once and judged by the pure checks of [`super::sale`].
//!
//! Each part is read on its own and kept with its error, so one database
//! that is down fails only the checks that need it.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use orders::domain::OrderStatus;
use uuid::Uuid;

use super::Sources;

/// The run's concerts, as the four databases have them.
pub(super) struct Snapshot {
    pub(super) orders: anyhow::Result<Orders>,
    pub(super) seats: anyhow::Result<Seats>,
    pub(super) sales: anyhow::Result<SalesByConcert>,
    pub(super) notifications: anyhow::Result<Vec<Notification>>,
}

impl Snapshot {
    /// Reads every part.
    pub(super) async fn read(sources: &Sources, concerts: &[Uuid]) -> Self {
        let orders = read_orders(sources, concerts).await;
        let notifications = match &orders {
            Ok(orders) => read_notifications(sources, orders).await,
            Err(e) => Err(anyhow::anyhow!(
                "the notifications are read for the concerts' orders, which could not be: {e:#}"
            )),
        };
        Self {
            orders,
            seats: read_seats(sources, concerts).await,
            sales: read_sales(sources, concerts).await,
            notifications,
        }
    }
}

/// The concerts' orders (orders database).
#[derive(Debug, Default)]
pub(super) struct Orders {
    pub(super) by_id: HashMap<Uuid, Order>,
}

impl Orders {
    /// The orders that reached `PAID`: they owe a payment e-mail and must
    /// end confirmed or refunded.
    pub(super) fn paid(&self) -> impl Iterator<Item = (&Uuid, &Order)> {
        self.by_id.iter().filter(|(_, order)| order.reached_paid)
    }

    /// The orders with `status`.
    pub(super) fn with_status(&self, status: OrderStatus) -> impl Iterator<Item = (&Uuid, &Order)> {
        self.by_id
            .iter()
            .filter(move |(_, order)| order.status == status)
    }
}

/// One order and its seats.
#[derive(Debug, Clone)]
pub(super) struct Order {
    pub(super) concert: Uuid,
    pub(super) status: OrderStatus,
    /// Paid at some point (`paid_at` is set, or its status says so for an
    /// order paid before `paid_at` existed).
    pub(super) reached_paid: bool,
    pub(super) seats: Vec<SeatRef>,
}

/// A seat of one of the run's concerts: every concert's seats are labelled
/// `A-1` …, so the label alone is ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SeatRef {
    pub(super) concert: Uuid,
    pub(super) label: String,
}

impl std::fmt::Display for SeatRef {
    /// `<concert>/<label>`, as in the seat's URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.concert, self.label)
    }
}

/// The concerts' seats (inventory database).
pub(super) type Seats = BTreeMap<SeatRef, Seat>;

/// One seat.
#[derive(Debug, Clone)]
pub(super) struct Seat {
    pub(super) price_cents: i64,
    /// The order it is `SOLD` to, if it is sold.
    pub(super) sold_to: Option<Uuid>,
}

/// Reporting's totals per concert in its active generation; every concert
/// of the run is there, with zeros when reporting has no row for it
/// (nothing counted yet).
pub(super) type SalesByConcert = BTreeMap<Uuid, Sales>;

/// One concert's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sales {
    pub(super) tickets_sold: i64,
    pub(super) revenue_cents: i64,
    pub(super) refunds: i64,
}

/// One e-mail owed (notification database).
#[derive(Debug, Clone)]
pub(super) struct Notification {
    pub(super) order_id: Uuid,
    pub(super) kind: String,
    pub(super) sent: bool,
}

async fn read_orders(sources: &Sources, concerts: &[Uuid]) -> anyhow::Result<Orders> {
    let db = sources.orders.pool()?;
    let rows: Vec<(Uuid, Uuid, String, bool)> = sqlx::query_as(
        "select id, event_id, status,
                paid_at is not null or status in ('PAID', 'CONFIRMED', 'REFUNDED')
         from orders where event_id = any($1)",
    )
    .bind(concerts)
    .fetch_all(db)
    .await
    .context("reading the concerts' orders")?;
    let mut by_id = HashMap::with_capacity(rows.len());
    for (id, concert, status, reached_paid) in rows {
        let status = status.parse().map_err(anyhow::Error::msg)?;
        by_id.insert(
            id,
            Order {
                concert,
                status,
                reached_paid,
                seats: Vec::new(),
            },
        );
    }
    let lines: Vec<(Uuid, String)> = sqlx::query_as(
        "select l.order_id, l.seat_id from order_lines l join orders o on o.id = l.order_id
         where o.event_id = any($1) order by l.order_id, l.position",
    )
    .bind(concerts)
    .fetch_all(db)
    .await
    .context("reading the concerts' order lines")?;
    for (order_id, label) in lines {
        if let Some(order) = by_id.get_mut(&order_id) {
            order.seats.push(SeatRef {
                concert: order.concert,
                label,
            });
        }
    }
    Ok(Orders { by_id })
}

async fn read_seats(sources: &Sources, concerts: &[Uuid]) -> anyhow::Result<Seats> {
    let rows: Vec<(Uuid, String, i32, Option<Uuid>)> = sqlx::query_as(
        "select event_id, seat_id, price_cents, case when status = 'SOLD' then order_id end
         from seats where event_id = any($1)",
    )
    .bind(concerts)
    .fetch_all(sources.inventory.pool()?)
    .await
    .context("reading the concerts' seats")?;
    Ok(rows
        .into_iter()
        .map(|(concert, label, price_cents, sold_to)| {
            let seat = Seat {
                price_cents: price_cents.into(),
                sold_to,
            };
            (SeatRef { concert, label }, seat)
        })
        .collect())
}

async fn read_sales(sources: &Sources, concerts: &[Uuid]) -> anyhow::Result<SalesByConcert> {
    let rows: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
        "select s.event_id, s.tickets_sold, s.revenue_cents, s.refunds
         from sales s join projection_state p on p.active_generation = s.generation
         where s.event_id = any($1)",
    )
    .bind(concerts)
    .fetch_all(sources.reporting.pool()?)
    .await
    .context("reading reporting's totals")?;
    let mut sales: SalesByConcert = concerts.iter().map(|&c| (c, Sales::default())).collect();
    for (concert, tickets_sold, revenue_cents, refunds) in rows {
        sales.insert(
            concert,
            Sales {
                tickets_sold,
                revenue_cents,
                refunds,
            },
        );
    }
    Ok(sales)
}

/// The e-mails of the concerts' orders: every order the notification
/// service knows is one that reached `PAID` (its first e-mail answers
/// `OrderPaid`), but all the concerts' orders are asked for, so an e-mail
/// about an order that was never paid would show too.
async fn read_notifications(
    sources: &Sources,
    orders: &Orders,
) -> anyhow::Result<Vec<Notification>> {
    let ids: Vec<Uuid> = orders.by_id.keys().copied().collect();
    let rows: Vec<(Uuid, String, bool)> = sqlx::query_as(
        "select order_id, kind, sent_at is not null from notifications where order_id = any($1)",
    )
    .bind(&ids)
    .fetch_all(sources.notification.pool()?)
    .await
    .context("reading the concerts' e-mails")?;
    Ok(rows
        .into_iter()
        .map(|(order_id, kind, sent)| Notification {
            order_id,
            kind,
            sent,
        })
        .collect())
}
