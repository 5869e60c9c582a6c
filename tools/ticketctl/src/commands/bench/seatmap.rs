//! `ticketctl bench seatmap`: the seat-map cache measured against Redis's
//! own limit, in the same run.
//!
//! An inventory service runs in-process against the given Postgres, NATS
//! and Redis (a scratch database, a scratch key prefix), and:
//! 1. **Stampede.** `--stampede` concurrent requests for one cold seat map,
//!    with request coalescing on and then off: database loads counted (the
//!    service's own counter) and the time until the last answer.
//! 2. **Cached throughput.** `--requests` seat-map requests over HTTP from
//!    `--concurrency` keep-alive clients against a warm cache; next to it,
//!    the service's seat-map read without HTTP (its Lua script and the
//!    decoding, from the same number of concurrent tasks on the service's
//!    one multiplexed connection), the read the route makes (the version
//!    and the holds from Redis, the body kept in the process:
//!    `seat_map::rendered`), a revalidation with `If-None-Match` (304), and
//!    `redis-benchmark` GET at the same concurrency with a value as large
//!    as the seat map. The ratios say what HTTP, JSON and the hold overlay
//!    cost on top of Redis.
//!
//! Figures are printed, never asserted. Everything scratch (the database,
//! the Redis keys under the prefix) is removed at the end.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use futures::future::join_all;
use inventory::seat_map::SeatMaps;
use uuid::Uuid;

use super::{
    Load, ScratchKeys, Served, database_url, drop_database, median, scratch_name, service_env,
    throughput,
};
use crate::commands::support::defaults;

/// Options of `bench seatmap`.
#[derive(Debug, Args)]
pub(crate) struct SeatMapArgs {
    /// A Postgres server where a scratch database may be created.
    #[arg(long, env = "DATABASE_URL", default_value = defaults::POSTGRES)]
    database_url: String,
    /// NATS (catalog broadcasts).
    #[arg(long, env = "NATS_URL", default_value = defaults::NATS)]
    nats_url: String,
    /// Redis.
    #[arg(long, env = "REDIS_URL", default_value = defaults::REDIS)]
    redis_url: String,
    /// Seats per concert (sets the size of a seat map).
    #[arg(long, default_value_t = 200)]
    seats: usize,
    /// Concurrent cold requests in the stampede.
    #[arg(long, default_value_t = 1_000)]
    stampede: usize,
    /// Requests, clients and rounds of the throughput runs.
    #[command(flatten)]
    load: Load,
}

/// One in-process inventory instance and what it needs.
struct Instance {
    served: Served,
    seat_maps: SeatMaps,
    keys: ScratchKeys,
}

impl Instance {
    async fn start(
        args: &SeatMapArgs,
        db_url: &str,
        scratch: &str,
        coalesce: bool,
    ) -> anyhow::Result<Self> {
        let nats_prefix = format!("{scratch}_");
        let redis_prefix = format!("{scratch}:");
        let keys = ScratchKeys::new()?;
        let env = service_env(
            &keys,
            [
                ("DATABASE_URL", db_url),
                ("NATS_URL", &args.nats_url),
                ("NATS_PREFIX", &nats_prefix),
                ("REDIS_URL", &args.redis_url),
                ("REDIS_PREFIX", &redis_prefix),
                ("SEATMAP_COALESCE", if coalesce { "true" } else { "false" }),
                // Without coalescing, the stampede must reach Postgres rather
                // than queue on the fallback limit.
                ("SEATMAP_DB_CONCURRENCY", "64"),
                // The stampede needs a cold map: no refreshes around the opening.
                ("SEATMAP_OPENING_LEAD", "0s"),
                ("SEATMAP_OPENING_HOT_FOR", "0s"),
                ("DB_MAX_CONNECTIONS", "64"),
                ("REDIS_TIMEOUT", "5s"),
                ("LOG_FORMAT", "pretty"),
            ],
        );
        let app = service::build::<inventory::Inventory>(&env).await?;
        let seat_maps = app
            .lent::<SeatMaps>()
            .cloned()
            .expect("inventory lends its seat maps");
        let served = Served::start(app);
        Ok(Self {
            served,
            seat_maps,
            keys,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.served.stop().await
    }

    fn db_loads(&self) -> u64 {
        self.seat_maps.metrics().db_loads.get()
    }

    async fn concert(&self, http: &reqwest::Client, seats: usize) -> anyhow::Result<Uuid> {
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "name": "Bench", "venue": "Hall",
            "starts_at": now + chrono::Duration::days(30),
            // After the warmup window: the cache starts cold.
            "sale_opens_at": now + chrono::Duration::days(29),
            "seats": (1..=seats).map(|i| serde_json::json!({ "seat_id": format!("S-{i}"), "price_cents": 4500 })).collect::<Vec<_>>(),
        });
        let response = http
            .post(format!("{}/events", self.served.base))
            .bearer_auth(self.keys.operator_token()?)
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("cannot create a concert: {}", response.text().await?);
        }
        let created: serde_json::Value = response.json().await?;
        Ok(created["id"].as_str().context("concert id")?.parse()?)
    }
}

/// Runs the benchmark.
pub(super) async fn run(args: SeatMapArgs) -> anyhow::Result<()> {
    let scratch = scratch_name("bench_inventory");
    let db_url = database_url(&args.database_url, &scratch);
    let result = measure(&args, &db_url, &scratch).await;
    cleanup(&args, &scratch, &format!("{scratch}:")).await?;
    result
}

async fn measure(args: &SeatMapArgs, db_url: &str, scratch: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.stampede.max(args.load.concurrency))
        .build()?;
    println!(
        "seat maps of {} seats; stampede of {} concurrent cold requests; {} requests x {} clients per throughput run",
        args.seats, args.stampede, args.load.requests, args.load.concurrency
    );

    // 1. Stampede, coalescing on and off, over HTTP (requests arrive as
    // fast as the server accepts connections) and in-process (every miss
    // released at once by a barrier: the worst case).
    println!("\nstampede (one cold seat map each time):");
    println!(
        "  {:<16} {:<38} {:>10} {:>13}",
        "", "", "db queries", "last answer"
    );
    for coalesce in [true, false] {
        let mode = if coalesce {
            "coalescing on"
        } else {
            "coalescing off"
        };
        let instance = Instance::start(args, db_url, scratch, coalesce).await?;
        let concert = instance.concert(&http, args.seats).await?;
        let (queries, took) = http_stampede(&http, &instance, concert, args.stampede).await?;
        println!(
            "  {mode:<16} {:<38} {queries:>10} {:>10.1} ms",
            format!("{} HTTP requests", args.stampede),
            took.as_secs_f64() * 1000.0
        );
        let concert = instance.concert(&http, args.seats).await?;
        let (queries, took) = task_stampede(&instance, concert, args.stampede).await?;
        println!(
            "  {mode:<16} {:<38} {queries:>10} {:>10.1} ms",
            format!("{} in-process calls, released at once", args.stampede),
            took.as_secs_f64() * 1000.0
        );
        instance.stop().await?;
    }

    // 2. Cached throughput against Redis's own limit.
    let instance = Instance::start(args, db_url, scratch, true).await?;
    let concert = instance.concert(&http, args.seats).await?;
    let url = format!("{}/events/{concert}/seats", instance.served.base);
    let first = http.get(&url).send().await?;
    let etag = first
        .headers()
        .get(reqwest::header::ETAG)
        .context("the seat map has an ETag")?
        .to_str()?
        .to_owned();
    let sample = first.bytes().await?;
    let mut runs = [(); 5].map(|()| Vec::new());
    for _ in 0..args.load.rounds {
        runs[0].push(redis_benchmark(args, sample.len())?);
        runs[1].push(in_process_read(&instance, concert, false, args).await?);
        runs[2].push(in_process_read(&instance, concert, true, args).await?);
        runs[3].push(http_read(&http, &url, None, args).await?);
        runs[4].push(http_read(&http, &url, Some(&etag), args).await?);
    }
    let [raw, script, rendered, ours, revalidated] = runs.map(|mut run| median(&mut run));
    println!(
        "\ncached seat map ({} B of JSON), medians of {} rounds, requests/s:",
        sample.len(),
        args.load.rounds
    );
    println!(
        "  {:<52} {:>10.0}",
        "redis-benchmark GET (same size, same concurrency)", raw
    );
    for (what, figure) in [
        ("seat-map read without HTTP (full script + decode)", script),
        (
            "rendered read without HTTP (version + holds, kept)",
            rendered,
        ),
        ("GET /events/{id}/seats over HTTP", ours),
        ("GET with If-None-Match (304) over HTTP", revalidated),
    ] {
        println!(
            "  {what:<52} {figure:>10.0}   {:.2} of redis-benchmark",
            figure / raw
        );
    }
    instance.stop().await?;
    Ok(())
}

/// `n` concurrent HTTP requests for a cold map: database loads and time.
async fn http_stampede(
    http: &reqwest::Client,
    instance: &Instance,
    concert: Uuid,
    n: usize,
) -> anyhow::Result<(u64, Duration)> {
    let url = format!("{}/events/{concert}/seats", instance.served.base);
    let before = instance.db_loads();
    let started = Instant::now();
    let answers = join_all((0..n).map(|_| http.get(&url).send())).await;
    let took = started.elapsed();
    let failed = answers
        .iter()
        .filter(|r| !r.as_ref().is_ok_and(|r| r.status().is_success()))
        .count();
    if failed > 0 {
        bail!("{failed} stampede requests failed");
    }
    Ok((instance.db_loads() - before, took))
}

/// `n` tasks missing the cold map at the same instant.
async fn task_stampede(
    instance: &Instance,
    concert: Uuid,
    n: usize,
) -> anyhow::Result<(u64, Duration)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let before = instance.db_loads();
    let started = Instant::now();
    let tasks = (0..n).map(|_| {
        let barrier = Arc::clone(&barrier);
        let seat_maps = instance.seat_maps.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            seat_maps.get(concert).await
        })
    });
    for task in join_all(tasks).await {
        task?
            .map_err(anyhow::Error::from)?
            .context("the concert exists")?;
    }
    Ok((instance.db_loads() - before, started.elapsed()))
}

/// Requests per second of the full seat-map endpoint; revalidating with
/// `If-None-Match: etag` when given (each answer must then be a 304).
async fn http_read(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    args: &SeatMapArgs,
) -> anyhow::Result<f64> {
    let (http, url) = (http.clone(), Arc::<str>::from(url));
    let etag = etag.map(Arc::<str>::from);
    throughput(args.load.requests, args.load.concurrency, move || {
        let (http, url, etag) = (http.clone(), Arc::clone(&url), etag.clone());
        async move {
            let mut request = http.get(&*url);
            if let Some(etag) = &etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, &**etag);
            }
            let response = request.send().await?;
            let expected = if etag.is_some() {
                reqwest::StatusCode::NOT_MODIFIED
            } else {
                reqwest::StatusCode::OK
            };
            if response.status() != expected {
                bail!("seat map answered {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

/// Requests per second of the service's seat-map read without HTTP: as
/// its route makes it when `rendered` (the version and the holds from
/// Redis, the body kept in the process), else the full read (the map from
/// Redis, decoded, the view built).
async fn in_process_read(
    instance: &Instance,
    concert: Uuid,
    rendered: bool,
    args: &SeatMapArgs,
) -> anyhow::Result<f64> {
    let seat_maps = instance.seat_maps.clone();
    throughput(args.load.requests, args.load.concurrency, move || {
        let seat_maps = seat_maps.clone();
        async move {
            let found = if rendered {
                seat_maps.rendered(concert).await?.is_some()
            } else {
                seat_maps.get(concert).await?.is_some()
            };
            anyhow::ensure!(found, "the concert exists");
            Ok(())
        }
    })
    .await
}

/// `redis-benchmark` GET at the same concurrency and value size.
fn redis_benchmark(args: &SeatMapArgs, size: usize) -> anyhow::Result<f64> {
    let url = url_host_port(&args.redis_url)?;
    let output = Command::new("redis-benchmark")
        .args(["-h", &url.0, "-p", &url.1])
        // SET first, so that GET returns a value of the map's size (a GET
        // of a missing key would answer a tiny nil).
        .args(["-t", "set,get", "-q"])
        .args(["-c", &args.load.concurrency.to_string()])
        .args(["-n", &args.load.requests.to_string()])
        .args(["-d", &size.to_string()])
        .output()
        .context("cannot run redis-benchmark (Debian package redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The last carriage-return-separated segment holds the summary:
    // "GET: 123456.79 requests per second, p50=0.175 msec".
    let summary = text
        .rsplit(['\r', '\n'])
        .find(|s| s.starts_with("GET:"))
        .with_context(|| format!("unexpected redis-benchmark output: {text}"))?;
    // redis-benchmark's own key (without -r it is this literal name).
    Command::new("redis-cli")
        .args(["-h", &url.0, "-p", &url.1, "del", "key:__rand_int__"])
        .output()
        .context("cannot run redis-cli")?;
    let rate = summary
        .trim_start_matches("GET:")
        .split_whitespace()
        .next()
        .context("no rate in the redis-benchmark output")?;
    Ok(rate.parse()?)
}

fn url_host_port(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("redis://")
        .context("REDIS_URL must start with redis://")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split('/').next().unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "6379"));
    Ok((host.to_owned(), port.to_owned()))
}

/// Drops the scratch database and the Redis keys under `prefix`.
async fn cleanup(args: &SeatMapArgs, scratch: &str, prefix: &str) -> anyhow::Result<()> {
    drop_database(&args.database_url, scratch).await?;
    let redis = redis::Client::open(args.redis_url.as_str())?;
    let mut connection = redis.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut connection)
            .await?;
    }
    Ok(())
}
