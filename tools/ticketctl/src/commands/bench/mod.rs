//! `ticketctl bench`: throughput figures measured against the raw limit of
//! the server underneath, in the same run, with the ratio printed.
//!
//! - `bench relay` ([`relay`]): the relay against raw JetStream publish,
//!   and the pay path with and without `NOTIFY`, against pgbench of the
//!   pay transaction ([`pay`]);
//! - `bench seatmap` ([`seatmap`]): the seat-map cache against Redis's own
//!   limit, and a stampede with and without coalescing;
//! - `bench orders` ([`orders`]): `GET /orders/{id}` against pgbench of
//!   its statement.
//!
//! Figures are printed, never asserted: the machine they run on decides
//! them. Every run works in scratch databases, stream prefixes and key
//! prefixes of its own and removes them at the end. This file holds what
//! both benchmarks need: in-process services with throwaway keys, scratch
//! database names, medians and rates.

mod orders;
mod pay;
mod relay;
mod seatmap;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use futures::future::join_all;
use httpkit::auth::dev::{TempKeys, TokenRequest};
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// Relay throughput against raw JetStream publish, and the pay path with and without NOTIFY.
    Relay(relay::RelayArgs),
    /// Seat-map cache: stampede with and without coalescing, cached throughput against redis-benchmark.
    Seatmap(seatmap::SeatMapArgs),
    /// `GET /orders/{id}` against pgbench running the same statement.
    Orders(orders::OrdersArgs),
}

/// Runs a benchmark.
pub(crate) async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Relay(args) => relay::run(args).await,
        Bench::Seatmap(args) => seatmap::run(args).await,
        Bench::Orders(args) => orders::run(args).await,
    }
}

/// How hard and how long the throughput runs of a benchmark go.
#[derive(Debug, clap::Args)]
struct Load {
    /// Requests in each run.
    #[arg(long, default_value_t = 50_000)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A throwaway key pair for the benchmarks' in-process services: they
/// trust it, and the benchmark signs its callers' tokens with it.
struct ScratchKeys(TempKeys);

impl ScratchKeys {
    fn new() -> anyhow::Result<Self> {
        Ok(Self(TempKeys::new()?))
    }

    /// `AUTH_JWKS_PATH` for a service that trusts these keys.
    fn jwks_path(&self) -> String {
        self.0.jwks_path().display().to_string()
    }

    fn operator_token(&self) -> anyhow::Result<String> {
        Ok(self.0.issuer().mint(&TokenRequest::operator("bench"))?)
    }

    fn customer_token(&self, customer: Uuid) -> anyhow::Result<String> {
        Ok(self.0.issuer().mint(&TokenRequest::customer(customer))?)
    }
}

/// A service's settings for a benchmark: `own`, after what every
/// in-process service gets: an ephemeral port, trust in `keys`, and
/// admission control out of the way (a benchmark
/// measures the path behind the limits, not the limits).
fn service_env<V: Into<String>>(
    keys: &ScratchKeys,
    own: impl IntoIterator<Item = (&'static str, V)>,
) -> settings::Env {
    let common = [
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_JWKS_PATH", keys.jwks_path()),
        ("RATE_LIMIT_PER_SECOND", "1000000000".to_owned()),
        ("RATE_LIMIT_BURST", "1000000000".to_owned()),
        ("MAX_IN_FLIGHT", "100000".to_owned()),
    ];
    settings::Env::from_pairs(
        common
            .into_iter()
            .chain(own.into_iter().map(|(name, value)| (name, value.into()))),
    )
}

/// A service (`orders`, `inventory`) running in this process until
/// [`Served::stop`].
struct Served {
    /// `http://127.0.0.1:<port>`.
    base: String,
    serving: service::Serving,
}

impl Served {
    /// Runs a built service (take what it lends first).
    fn start(app: service::App) -> Self {
        Self {
            base: format!("http://127.0.0.1:{}", app.port()),
            serving: app.spawn(),
        }
    }

    /// Stops the service and waits until it has; its error, if it failed.
    async fn stop(mut self) -> anyhow::Result<()> {
        Ok(self.serving.stop().await?)
    }
}

/// A name no other run uses, for a scratch database, stream prefix or key
/// prefix: runs on one server never see each other's data.
fn scratch_name(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// The URL of database `name` on the server `admin_url` points at.
fn database_url(admin_url: &str, name: &str) -> String {
    let server = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(server, _)| server);
    format!("{server}/{name}")
}

/// Drops database `name` on the server `admin_url` points at, whoever is
/// still connected to it.
async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}

/// The median; the shared machine is noisy, so every figure is the median
/// of interleaved rounds. NaN for no rounds.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `count` per second.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// `requests` calls of `call` from `concurrency` tasks, each taking the
/// next call until none is left; calls per second. Tasks, not futures on
/// one task, so that the clients run on every core as real ones would.
async fn throughput<C, F>(requests: usize, concurrency: usize, call: C) -> anyhow::Result<f64>
where
    C: Fn() -> F + Clone + Send + 'static,
    F: Future<Output = anyhow::Result<()>> + Send,
{
    let left = Arc::new(AtomicUsize::new(requests));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let left = Arc::clone(&left);
        let call = call.clone();
        tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                call().await?;
            }
            anyhow::Ok(())
        })
    });
    for worker in join_all(workers).await {
        worker??;
    }
    Ok(rate(requests, started.elapsed()))
}

/// A scratch database with the orders schema, dropped by [`Scratch::drop`].
struct Scratch {
    admin_url: String,
    name: String,
    url: String,
    pool: PgPool,
}

impl Scratch {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = scratch_name("bench");
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await?;
        let url = database_url(admin_url, &name);
        let pool = PgPool::connect(&url).await?;
        ::orders::MIGRATOR.run(&pool).await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
            pool,
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        drop_database(&self.admin_url, &self.name).await
    }
}

/// The statement of `orders::store::find` (change them together) for the
/// order `id` (an SQL expression) of `customer`, for a pgbench script.
fn find_statement(id: &str, customer: Uuid) -> String {
    format!(
        "select o.id, o.event_id, o.customer_id, o.customer_email, o.status, o.version,
       o.created_at, o.updated_at, l.seat_ids, l.fencing_tokens
from orders o
cross join lateral (
    select coalesce(array_agg(seat_id order by position), '{{}}') as seat_ids,
           coalesce(array_agg(fencing_token order by position), '{{}}') as fencing_tokens
    from order_lines where order_id = o.id
) l
where o.id = {id} and ('{customer}'::uuid is null or o.customer_id = '{customer}'::uuid)"
    )
}

/// pgbench running `script` on `url` with `clients` clients for
/// `transactions` transactions in all (`-M prepared`, as the services'
/// statements are), with variables `defines` (`-D NAME=VALUE`);
/// transactions per second.
fn pgbench(
    url: &str,
    script: &std::path::Path,
    clients: usize,
    transactions: usize,
    defines: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let per_client = (transactions / clients).max(1);
    let mut command = std::process::Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-j", "2"])
        .args(["-c", &clients.to_string()])
        .args(["-t", &per_client.to_string()]);
    for (name, value) in defines {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let output = command
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .context("cannot run pgbench (Debian package postgresql-client)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{text}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // "tps = 12345.678901 (without initial connection time)"
    let tps = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("unexpected pgbench output: {text}"))?;
    Ok(tps.parse()?)
}
