//! pgbench running the pay transaction of `POST /orders/{id}/pay`, for
//! `bench relay`'s (c): the same statements, in the same order, on orders
//! seeded the same way, so the ratio is what HTTP, the token, the pool
//! and the JSON cost on top of the transaction itself.
//!
//! The statements are those of `orders::idempotency::execute` (lock
//! timeout, claim the key, store the response), `orders::store::transition`
//! (update, then `find`) and `outbox::Writer::enqueue` (insert, and
//! `pg_notify` when `NOTIFY` is on): change them together. Each pgbench
//! client pays its own orders in turn (`:i`, counted per client), so every
//! transaction pays a `PENDING` order, as every measured request does.

use uuid::Uuid;

use super::{Scratch, find_statement, pgbench};

/// pgbench's transactions per second for `pays` pays by `clients` clients,
/// `notify` as `OUTBOX_NOTIFY`, in a scratch database of its own.
pub(super) async fn pgbench_pays(
    admin_url: &str,
    pays: usize,
    clients: usize,
    notify: bool,
    envelope: &[u8],
) -> anyhow::Result<f64> {
    let scratch = Scratch::create(admin_url).await?;
    let result = async {
        let customer = Uuid::new_v4();
        let per_client = (pays / clients).max(1);
        sqlx::query(
            "insert into orders (id, event_id, customer_id, customer_email, status)
             select md5('pay-' || c || '-' || i)::uuid, gen_random_uuid(), $3, 'bench@example.com', 'PENDING'
             from generate_series(1, $1) c, generate_series(1, $2) i",
        )
        .bind(i32::try_from(clients)?)
        .bind(i32::try_from(per_client)?)
        .bind(customer)
        .execute(&scratch.pool)
        .await?;
        sqlx::query("analyze").execute(&scratch.pool).await?;
        let script = std::env::temp_dir().join(format!("bench-pay-{}.sql", Uuid::new_v4()));
        std::fs::write(&script, script_text(customer, notify, envelope))?;
        // pgbench numbers its clients from 0; the seeded orders from 1.
        let tps = pgbench(
            &scratch.url,
            &script,
            clients,
            per_client * clients,
            &[("i", "0")],
        );
        let _ = std::fs::remove_file(&script);
        let tps = tps?;
        // A transaction that paid nothing would be a cheaper one: check
        // that every seeded order was paid, each with its outbox row.
        let (paid, events): (i64, i64) = sqlx::query_as(
            "select (select count(*) from orders where status = 'PAID'),
                    (select count(*) from outbox)",
        )
        .fetch_one(&scratch.pool)
        .await?;
        let expected = i64::try_from(per_client * clients)?;
        anyhow::ensure!(
            paid == expected && events == expected,
            "pgbench paid {paid} of {expected} orders and wrote {events} events: the script is wrong"
        );
        Ok(tps)
    }
    .await;
    scratch.drop().await?;
    result
}

/// The transaction, for client `:client_id`'s `:i`-th order.
fn script_text(customer: Uuid, notify: bool, envelope: &[u8]) -> String {
    let quoted = |text: &str| text.replace('\'', "''");
    let payload = quoted(&String::from_utf8_lossy(envelope));
    // The stored response: an order as the route answers it.
    let body = quoted(
        &serde_json::json!({
            "id": Uuid::new_v4(), "event_id": Uuid::new_v4(), "customer_id": customer,
            "customer_email": "bench@example.com", "status": "PAID", "version": 2,
            "created_at": chrono::Utc::now(), "updated_at": chrono::Utc::now(), "seats": [],
        })
        .to_string(),
    );
    let hash = "ab".repeat(32);
    let find = find_statement("md5('pay-' || :c::text || '-' || :i::text)::uuid", customer);
    let notify = if notify {
        "select pg_notify('outbox', '');\n"
    } else {
        ""
    };
    format!(
        r"\set i :i + 1
\set c :client_id + 1
begin;
set local lock_timeout = '2s';
insert into idempotency_keys (customer_id, key, request_hash, expires_at)
values ('{customer}', :c::text || '-' || :i::text, '\x{hash}', now() + make_interval(secs => 86400))
on conflict on constraint idempotency_keys_pkey do update
    set request_hash = excluded.request_hash, response_status = null, response_body = null,
        created_at = now(), expires_at = excluded.expires_at
    where idempotency_keys.expires_at <= now()
returning key;
update orders
set status = 'PAID', version = version + 1, updated_at = now(), paid_at = now()
where id = md5('pay-' || :c::text || '-' || :i::text)::uuid and status = 'PENDING'
    and customer_id = '{customer}' and (sale_closes_at is null or now() < sale_closes_at)
returning id;
{find};
insert into outbox (event_id, event_type, schema_version, aggregate_type, aggregate_id,
                    aggregate_version, subject, payload, traceparent, tracestate)
values (gen_random_uuid(), 'OrderPaid', 1, 'order', md5('pay-' || :c::text || '-' || :i::text)::uuid,
        2, 'orders.events.order_paid', '{payload}'::jsonb, null, null);
{notify}update idempotency_keys set response_status = 200, response_body = '{body}'::jsonb
where customer_id = '{customer}' and key = :c::text || '-' || :i::text;
commit;
"
    )
}
