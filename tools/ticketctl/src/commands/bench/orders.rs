//! `ticketctl bench orders`: `GET /orders/{id}` against pgbench running the
//! statement behind it on the same server, in the same run.
//!
//! Orders of two seats each are seeded in a scratch database and an orders
//! instance runs in-process on it. `--concurrency` keep-alive clients read
//! random orders as their owner (so every request verifies a token, as in
//! production); then pgbench runs the statement of `orders::store::find`
//! with as many clients, as many times. The ratio is what HTTP, the token,
//! the pool and the JSON cost on top of Postgres. `GET /healthz` with the
//! same clients (no token, no database) measures HTTP and the client alone,
//! so the cost of a read can be split: with both cores busy throughout, a
//! run's time per request is what a request costs the machine, and the
//! difference between the three runs is what each layer adds.
//!
//! The statement is `store::find`'s ([`super::find_statement`]), with the
//! order picked by pgbench (`md5` of its number, as the orders were
//! seeded).

use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use rand::Rng as _;
use uuid::Uuid;

use super::{
    Load, Scratch, ScratchKeys, Served, find_statement, median, pgbench, service_env, throughput,
};
use crate::commands::support::{defaults, signed_in_client};

/// Options of `bench orders`.
#[derive(Debug, Args)]
pub(crate) struct OrdersArgs {
    /// A Postgres server where a scratch database may be created.
    #[arg(long, env = "DATABASE_URL", default_value = defaults::POSTGRES)]
    database_url: String,
    /// Orders seeded (two seats each).
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// Reads per run, clients (HTTP, and pgbench's) and rounds.
    #[command(flatten)]
    load: Load,
}

/// The statement of `store::find` for seeded order `:n` of `customer`.
fn pgbench_script(orders: usize, customer: Uuid) -> String {
    format!(
        "\\set n random(1, {orders})\n{};\n",
        find_statement("md5('bench' || :n)::uuid", customer)
    )
}

/// Runs the benchmark.
pub(super) async fn run(args: OrdersArgs) -> anyhow::Result<()> {
    let scratch = Scratch::create(&args.database_url).await?;
    let result = measure(&args, &scratch).await;
    scratch.drop().await?;
    result
}

async fn measure(args: &OrdersArgs, scratch: &Scratch) -> anyhow::Result<()> {
    let customer = Uuid::new_v4();
    let ids = seed(scratch, args.orders, customer).await?;
    let keys = ScratchKeys::new()?;
    let env = service_env(
        &keys,
        [
            ("DATABASE_URL", scratch.url.clone()),
            ("DB_MAX_CONNECTIONS", args.load.concurrency.to_string()),
            ("CONSUME_INVENTORY_EVENTS", "false".to_owned()),
        ],
    );
    let server = Served::start(service::build::<orders::Orders>(&env).await?);
    let http = signed_in_client(
        &keys.customer_token(customer)?,
        reqwest::Client::builder().pool_max_idle_per_host(args.load.concurrency),
    )?;
    let script = std::env::temp_dir().join(format!("bench-orders-{}.sql", Uuid::new_v4()));
    std::fs::write(&script, pgbench_script(args.orders, customer))?;

    println!(
        "GET /orders/{{id}} of {} orders (two seats each); {} reads x {} clients per run, medians of {} rounds, per second:",
        args.orders, args.load.requests, args.load.concurrency, args.load.rounds
    );
    let (mut ours, mut raw, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let measured = async {
        for _ in 0..args.load.rounds {
            raw.push(pgbench(
                &scratch.url,
                &script,
                args.load.concurrency,
                args.load.requests,
                &[],
            )?);
            ours.push(http_reads(args, &http, &server.base, &ids).await?);
            bare.push(http_healthz(args, &http, &server.base).await?);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&script);
    server.stop().await?;
    measured?;
    let (ours, raw, bare) = (median(&mut ours), median(&mut raw), median(&mut bare));
    println!(
        "  {:<44} {raw:>10.0}",
        "pgbench, the same statement (-M prepared)"
    );
    println!(
        "  {:<44} {ours:>10.0}   {:.2} of pgbench",
        "GET /orders/{id} over HTTP",
        ours / raw
    );
    println!(
        "  {:<44} {bare:>10.0}   {:.2} of pgbench",
        "GET /healthz over HTTP (no token, no query)",
        bare / raw
    );
    let micros = |rate: f64| 1e6 / rate;
    println!(
        "a read costs the machine {:.0} µs: HTTP and the client {:.0}, the query with its client (pgbench) {:.0}, the rest (token, pool, JSON) {:.0}",
        micros(ours),
        micros(bare),
        micros(raw),
        micros(ours) - micros(bare) - micros(raw)
    );
    Ok(())
}

/// `GET /healthz` per second with the same clients: HTTP and the client
/// without the token check, the query or the JSON.
async fn http_healthz(
    args: &OrdersArgs,
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<f64> {
    let (http, url) = (http.clone(), Arc::<str>::from(format!("{base}/healthz")));
    throughput(args.load.requests, args.load.concurrency, move || {
        let (http, url) = (http.clone(), Arc::clone(&url));
        async move {
            let response = http.get(&*url).send().await?;
            if !response.status().is_success() {
                bail!("GET /healthz answered {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

/// Seeds `n` orders of `customer`, ids `md5('bench' || i)`, with two
/// seats each; returns the ids.
async fn seed(scratch: &Scratch, n: usize, customer: Uuid) -> anyhow::Result<Vec<Uuid>> {
    let n = i32::try_from(n)?;
    let ids = sqlx::query_scalar(
        "insert into orders (id, event_id, customer_id, customer_email, status)
         select md5('bench' || i)::uuid, gen_random_uuid(), $2, 'bench@example.com', 'PENDING'
         from generate_series(1, $1) i
         returning id",
    )
    .bind(n)
    .bind(customer)
    .fetch_all(&scratch.pool)
    .await?;
    sqlx::query(
        "insert into order_lines (order_id, seat_id, hold_token, position, fencing_token)
         select o.id, 'A-' || p, gen_random_uuid(), p, p from orders o, generate_series(1, 2) p",
    )
    .execute(&scratch.pool)
    .await?;
    sqlx::query("analyze").execute(&scratch.pool).await?;
    Ok(ids)
}

/// Reads per second over HTTP, each of a random seeded order.
async fn http_reads(
    args: &OrdersArgs,
    http: &reqwest::Client,
    base: &str,
    ids: &[Uuid],
) -> anyhow::Result<f64> {
    let (http, base, ids) = (
        http.clone(),
        Arc::<str>::from(base),
        Arc::<[Uuid]>::from(ids),
    );
    throughput(args.load.requests, args.load.concurrency, move || {
        let (http, base, ids) = (http.clone(), Arc::clone(&base), Arc::clone(&ids));
        async move {
            let id = ids[rand::rng().random_range(0..ids.len())];
            let response = http.get(format!("{base}/orders/{id}")).send().await?;
            if !response.status().is_success() {
                bail!("GET /orders/{id} answered {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}
