//! SQL for the `orders` and `order_lines` tables.
//!
//! Every function takes the connection of a transaction the caller owns:
//! the transaction boundary stays visible in one place
//! ([`crate::idempotency::execute`]), and the order row, its outbox event
//! and its idempotency key commit together.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{CreateOrder, Order, OrderSeat, OrderStatus, Transition};
use crate::inventory_client::Verified;

/// Why a state change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No order has that id.
    NotFound,
    /// The order is in a status the transition does not start from.
    WrongStatus(OrderStatus),
    /// A payment after the concert's sale closed (at this time).
    SaleClosed(chrono::DateTime<chrono::Utc>),
}

/// Who may see and change an order: its customer, or the system itself
/// (inventory's answers, which change orders no customer is calling about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Only the order of this customer (the verified token's `sub`);
    /// anyone else's order is "not found".
    Customer(Uuid),
    /// Any order.
    System,
}

impl Owner {
    /// The customer to filter on, `None` for the system.
    fn customer(self) -> Option<Uuid> {
        match self {
            Self::Customer(id) => Some(id),
            Self::System => None,
        }
    }
}

/// Inserts a new `PENDING` order (version 1) of `customer` with its lines,
/// each with the fencing token inventory reported for its hold
/// (`verified`, in the order of the request's seats), and the time the
/// concert's sale closes.
pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    customer: Uuid,
    request: &CreateOrder,
    verified: &Verified,
) -> sqlx::Result<Order> {
    let holds = &verified.holds;
    if holds.len() != request.seats.seats().len() {
        // The client checks this; a line without its token must never be
        // written, as it could only buy a seat that was never held.
        return Err(sqlx::Error::Protocol(
            "a fencing token for every seat is required".into(),
        ));
    }
    let row = sqlx::query!(
        r#"
        insert into orders (id, event_id, customer_id, customer_email, status, sale_closes_at)
        values ($1, $2, $3, $4, 'PENDING', $5)
        returning version, created_at, updated_at
        "#,
        id,
        request.event_id,
        customer,
        request.customer_email.as_str(),
        verified.sale_closes_at,
    )
    .fetch_one(&mut *tx)
    .await?;

    let seats: Vec<OrderSeat> = request
        .seats
        .seats()
        .iter()
        .zip(holds)
        .map(|(seat, hold)| OrderSeat {
            seat_id: seat.seat_id.as_str().to_owned(),
            fencing_token: Some(hold.fencing_token),
        })
        .collect();
    let seat_ids: Vec<String> = seats.iter().map(|s| s.seat_id.clone()).collect();
    let hold_tokens: Vec<Uuid> = request.seats.seats().iter().map(|s| s.hold_token).collect();
    let fencing_tokens: Vec<i64> = holds.iter().map(|h| h.fencing_token).collect();
    // One statement for all lines: `unnest` zips the arrays into rows.
    sqlx::query!(
        r#"
        insert into order_lines (order_id, seat_id, hold_token, fencing_token, position)
        select $1, seat_id, hold_token, fencing_token, position::integer
        from unnest($2::text[], $3::uuid[], $4::bigint[])
            with ordinality as l(seat_id, hold_token, fencing_token, position)
        "#,
        id,
        &seat_ids,
        &hold_tokens,
        &fencing_tokens,
    )
    .execute(&mut *tx)
    .await?;

    Ok(Order {
        id,
        event_id: request.event_id,
        customer_id: Some(customer),
        customer_email: request.customer_email.as_str().to_owned(),
        status: OrderStatus::Pending,
        version: row.version,
        seats,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Applies `transition` to order `id` of `owner` if, and only if, the
/// order is in the status the transition starts from.
///
/// The check and the change are one conditional `UPDATE`: of two concurrent
/// transitions on one order, the second waits for the first's row lock,
/// then finds the status changed and updates nothing. Another customer's
/// order is [`Refusal::NotFound`], exactly like an id that does not exist.
/// A payment is also refused once the concert's sale has closed
/// ([`Refusal::SaleClosed`]), by the same statement, and records when the
/// order was paid (`paid_at`: the saga's wait for inventory starts then,
/// see [`crate::stuck`]).
pub async fn transition(
    tx: &mut PgConnection,
    id: Uuid,
    owner: Owner,
    transition: Transition,
) -> sqlx::Result<Result<Order, Refusal>> {
    let customer = owner.customer();
    let updated = sqlx::query!(
        r#"
        update orders
        set status = $2, version = version + 1, updated_at = now(),
            paid_at = case when $5 then now() else paid_at end
        where id = $1 and status = $3 and ($4::uuid is null or customer_id = $4)
            and (not $5 or sale_closes_at is null or now() < sale_closes_at)
        returning id
        "#,
        id,
        transition.to().as_str(),
        transition.from().as_str(),
        customer,
        transition == Transition::Pay,
    )
    .fetch_optional(&mut *tx)
    .await?;

    if updated.is_some() {
        let order = find(tx, id, owner).await?.ok_or(sqlx::Error::RowNotFound)?;
        return Ok(Ok(order));
    }
    let current = sqlx::query!(
        r#"
        select status, sale_closes_at, now() >= sale_closes_at as "closed"
        from orders where id = $1 and ($2::uuid is null or customer_id = $2)
        "#,
        id,
        customer,
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(Err(match current {
        None => Refusal::NotFound,
        Some(row) => match parse_status(&row.status)? {
            status if status != transition.from() => Refusal::WrongStatus(status),
            status => match row.sale_closes_at {
                Some(closed_at) if row.closed == Some(true) => Refusal::SaleClosed(closed_at),
                // In the right status and not closed: it changed between
                // the two statements (a concurrent transition); report what
                // it was.
                _ => Refusal::WrongStatus(status),
            },
        },
    }))
}

/// Loads order `id` of `owner` with its seats (`None` for another
/// customer's order, as for one that does not exist).
///
/// One statement, one round trip: the seats come as two arrays in line
/// order from a lateral aggregate, where two selects cost every
/// `GET /orders/{id}` and every transition a second round trip.
pub async fn find(conn: &mut PgConnection, id: Uuid, owner: Owner) -> sqlx::Result<Option<Order>> {
    let Some(row) = sqlx::query!(
        r#"
        select o.id, o.event_id, o.customer_id, o.customer_email, o.status, o.version,
               o.created_at, o.updated_at,
               l.seat_ids as "seat_ids!", l.fencing_tokens as "fencing_tokens!: Vec<Option<i64>>"
        from orders o
        cross join lateral (
            select coalesce(array_agg(seat_id order by position), '{}') as seat_ids,
                   coalesce(array_agg(fencing_token order by position), '{}') as fencing_tokens
            from order_lines where order_id = o.id
        ) l
        where o.id = $1 and ($2::uuid is null or o.customer_id = $2)
        "#,
        id,
        owner.customer(),
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let seats = row
        .seat_ids
        .into_iter()
        .zip(row.fencing_tokens)
        .map(|(seat_id, fencing_token)| OrderSeat {
            seat_id,
            fencing_token,
        })
        .collect();
    Ok(Some(Order {
        id: row.id,
        event_id: row.event_id,
        customer_id: row.customer_id,
        customer_email: row.customer_email,
        status: parse_status(&row.status)?,
        version: row.version,
        seats,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

fn parse_status(value: &str) -> sqlx::Result<OrderStatus> {
    // The check constraint `orders_status_check` makes this unreachable
    // unless the schema and the code disagree.
    value
        .parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}
