//! `ticketctl bench relay`: the relay's throughput against raw JetStream
//! publish, and the pay path that feeds it.
//!
//! It measures, against one Postgres and one NATS server:
//! - (a) raw JetStream publish: the same envelope bytes and headers the
//!   relay sends (a unique `Nats-Msg-Id` each), in windows of one relay
//!   batch, every PubAck awaited;
//! - (b) the relay: rows already committed to an outbox, claimed,
//!   published, acked and deleted (or marked) by the relay's own `Publisher`;
//! - (c) the order pay path over HTTP (idempotency key + conditional
//!   update + outbox row in one transaction), with `NOTIFY` on and off,
//!   against pgbench running the same transaction ([`super::pay`]).
//!
//! The `query!` texts below are the keys of the committed query data
//! (`.sqlx/`): a changed one needs `scripts/sqlx-prepare` before it builds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use futures::future::try_join_all;
use messaging::{StreamKind, Topology};
use relay::store::AfterPublish;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use super::pay::pgbench_pays;
use super::{Scratch, ScratchKeys, Served, median, rate, scratch_name, service_env};
use crate::commands::support::{defaults, signed_in_client};

/// Options of `bench relay`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// A Postgres server where scratch databases may be created.
    #[arg(long, env = "DATABASE_URL", default_value = defaults::POSTGRES)]
    database_url: String,
    /// NATS with JetStream.
    #[arg(long, env = "NATS_URL", default_value = defaults::NATS)]
    nats_url: String,
    /// Events for (a) and (b).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Relay batch size (rows per pass) for (b); also the ack window of (a).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Concurrent passes of the relay in (b) (`RELAY_CONCURRENCY`).
    #[arg(long, default_value_t = 2)]
    lanes: usize,
    /// Rounds of (a) and (b), interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Orders paid per run of (c).
    #[arg(long, default_value_t = 3_000)]
    pays: usize,
    /// Concurrent HTTP clients in (c).
    #[arg(long, default_value_t = 16)]
    writers: usize,
}

/// Runs the benchmark.
pub(super) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let nats = async_nats::connect(&args.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", args.nats_url))?;
    let mut admin = PgConnection::connect(&args.database_url)
        .await
        .with_context(|| format!("cannot connect to Postgres at {}", args.database_url))?;
    let pg_version: String =
        sqlx::query_scalar!(r#"select current_setting('server_version') as "v!""#)
            .fetch_one(&mut admin)
            .await?;
    let payload = sample_envelope();
    println!(
        "relay benchmark: {} cores, PostgreSQL {pg_version}, nats-server {}, envelope {} bytes, batch {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        nats.server_info().version,
        payload.len(),
        args.batch,
    );

    // The shared machine is noisy: interleave the raw and relay runs and
    // report medians, so both see the same conditions.
    let (mut raw_runs, mut delete_runs, mut mark_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        raw_runs.push(raw_publish(&nats, &payload, &args).await?);
        delete_runs.push(relay_publish(&args, &nats, &payload, AfterPublish::Delete).await?);
        mark_runs.push(relay_publish(&args, &nats, &payload, AfterPublish::Mark).await?);
    }
    let (raw, deleted, marked) = (
        median(&mut raw_runs),
        median(&mut delete_runs),
        median(&mut mark_runs),
    );
    println!("medians of {} rounds:", args.rounds);
    println!(
        "(a) raw JetStream publish, acks awaited   {:>7} msgs  {:>9.0} msg/s",
        args.events, raw
    );
    println!(
        "(b) relay, rows deleted once acked        {:>7} rows  {:>9.0} ev/s   b/a = {:.2}",
        args.events,
        deleted,
        deleted / raw
    );
    println!(
        "    relay, rows marked (RELAY_RETENTION>0) {:>6} rows  {:>9.0} ev/s   b/a = {:.2}",
        args.events,
        marked,
        marked / raw
    );

    let (mut ons, mut offs, mut raw_pays) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        raw_pays
            .push(pgbench_pays(&args.database_url, args.pays, args.writers, true, &payload).await?);
        ons.push(pay_path(&args, true).await?);
        offs.push(pay_path(&args, false).await?);
    }
    let (with_notify, without, raw_pay) =
        (median(&mut ons), median(&mut offs), median(&mut raw_pays));
    println!(
        "(c) pay path over HTTP, NOTIFY on         {:>7} pays  {:>9.0} pay/s   of pgbench = {:.2}",
        args.pays,
        with_notify,
        with_notify / raw_pay
    );
    println!(
        "    pay path over HTTP, NOTIFY off        {:>7} pays  {:>9.0} pay/s   on/off = {:.2}",
        args.pays,
        without,
        with_notify / without
    );
    println!(
        "    pgbench, the same transaction (NOTIFY)  {:>7} pays  {:>9.0} tx/s",
        args.pays, raw_pay
    );
    Ok(())
}

/// (a): publishes `events` messages in windows of `batch`, awaiting acks.
async fn raw_publish(
    nats: &async_nats::Client,
    payload: &[u8],
    args: &RelayArgs,
) -> anyhow::Result<f64> {
    let topology = scratch_topology()?;
    let js = context(nats, args.batch);
    messaging::provision(&js, &topology, Duration::from_mins(10)).await?;
    let subject = topology.subject("orders.events.order_paid");
    let started = Instant::now();
    for window in (0..args.events).collect::<Vec<_>>().chunks(args.batch) {
        let mut acks = Vec::with_capacity(window.len());
        for _ in window {
            // The same headers the relay sends, so the two publish the same bytes.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                messaging::headers::MSG_ID,
                Uuid::new_v4().to_string().as_str(),
            );
            headers.insert(messaging::headers::EVENT_TYPE, "OrderPaid");
            headers.insert(messaging::headers::SCHEMA_VERSION, "1");
            headers.insert(messaging::headers::CONTENT_TYPE, "application/json");
            let message = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.to_vec().into())
                .headers(headers);
            acks.push(js.send_publish(subject.clone(), message).await?);
        }
        try_join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await?;
    }
    let rate = rate(args.events, started.elapsed());
    delete_streams(&js, &topology).await;
    Ok(rate)
}

/// (b): commits `events` outbox rows, then times the relay draining them.
async fn relay_publish(
    args: &RelayArgs,
    nats: &async_nats::Client,
    payload: &[u8],
    after: AfterPublish,
) -> anyhow::Result<f64> {
    let scratch = Scratch::create(&args.database_url).await?;
    let envelope: serde_json::Value = serde_json::from_slice(payload)?;
    sqlx::query!(
        r#"
        insert into outbox (event_id, event_type, schema_version, aggregate_type, aggregate_id,
                            aggregate_version, subject, payload)
        select gen_random_uuid(), 'OrderPaid', 1, 'order', gen_random_uuid(), 2,
               'orders.events.order_paid', $1
        from generate_series(1, $2)
        "#,
        envelope,
        i32::try_from(args.events)?,
    )
    .execute(&scratch.pool)
    .await?;
    sqlx::query!("vacuum analyze outbox")
        .execute(&scratch.pool)
        .await?;

    let topology = scratch_topology()?;
    let js = context(nats, args.batch * args.lanes);
    messaging::provision(&js, &topology, Duration::from_mins(10)).await?;
    let publisher = relay::publisher::Publisher::new(
        scratch.pool.clone(),
        nats.clone(),
        js.clone(),
        relay::publisher::PublisherSettings {
            topology: topology.clone(),
            batch_size: i64::try_from(args.batch)?,
            max_attempts: 10,
            after_publish: after,
        },
        Arc::default(),
    );
    let started = Instant::now();
    let lanes = (0..args.lanes).map(|_| {
        let publisher = publisher.clone();
        async move {
            let mut relayed = 0;
            loop {
                let pass = publisher.run_pass().await?;
                if let Some(error) = pass.transient_error {
                    bail!("publishing failed during the benchmark: {error}");
                }
                if pass.claimed == 0 {
                    return Ok(relayed);
                }
                relayed += pass.published;
            }
        }
    });
    let relayed: usize = try_join_all(lanes).await?.into_iter().sum();
    let rate = rate(relayed, started.elapsed());
    let stored = js
        .get_stream(topology.stream(StreamKind::OrderEvents))
        .await?
        .get_info()
        .await?
        .state
        .messages;
    if relayed != args.events || stored != args.events as u64 {
        bail!(
            "relay published {relayed} and the stream holds {stored}, expected {}",
            args.events
        );
    }
    delete_streams(&js, &topology).await;
    scratch.drop().await?;
    Ok(rate)
}

/// (c): pays `pays` pending orders over HTTP with `writers` clients.
async fn pay_path(args: &RelayArgs, notify: bool) -> anyhow::Result<f64> {
    let scratch = Scratch::create(&args.database_url).await?;
    let keys = ScratchKeys::new()?;
    let env = service_env(
        &keys,
        [
            ("DATABASE_URL", scratch.url.clone()),
            ("DB_MAX_CONNECTIONS", args.writers.to_string()),
            ("OUTBOX_NOTIFY", notify.to_string()),
            ("CONSUME_INVENTORY_EVENTS", "false".to_owned()),
        ],
    );
    let app = service::build::<orders::Orders>(&env).await?;
    let server = Served::start(app);

    // One customer owns every order, and pays with their token: the
    // measured path includes verifying it, as every real payment does.
    let customer = Uuid::new_v4();
    let ids: Vec<Uuid> = sqlx::query_scalar!(
        r#"
        insert into orders (id, event_id, customer_id, customer_email, status)
        select gen_random_uuid(), gen_random_uuid(), $2, 'bench@example.com', 'PENDING'
        from generate_series(1, $1)
        returning id
        "#,
        i32::try_from(args.pays)?,
        customer,
    )
    .fetch_all(&scratch.pool)
    .await?;
    let queue = Arc::new(tokio::sync::Mutex::new(ids));
    let http = signed_in_client(&keys.customer_token(customer)?, reqwest::Client::builder())?;
    let started = Instant::now();
    let clients = (0..args.writers).map(|_| {
        let (queue, http, base) = (queue.clone(), http.clone(), server.base.clone());
        async move {
            loop {
                let Some(id) = queue.lock().await.pop() else {
                    return anyhow::Ok(());
                };
                let response = http
                    .post(format!("{base}/orders/{id}/pay"))
                    .header("idempotency-key", Uuid::new_v4().to_string())
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("pay answered {}", response.status());
                }
            }
        }
    });
    try_join_all(clients).await?;
    let rate = rate(args.pays, started.elapsed());
    server.stop().await?;
    scratch.drop().await?;
    Ok(rate)
}

/// A JetStream context that lets `batch` publishes wait for their acks at
/// once (twice that in flight), and holds further publishes back beyond.
fn context(nats: &async_nats::Client, batch: usize) -> async_nats::jetstream::Context {
    async_nats::jetstream::context::ContextBuilder::new()
        .max_ack_inflight(batch * 2)
        .backpressure_on_inflight(true)
        .build(nats.clone())
}

fn scratch_topology() -> anyhow::Result<Topology> {
    Topology::new(&scratch_name("bench")).map_err(anyhow::Error::msg)
}

async fn delete_streams(js: &async_nats::jetstream::Context, topology: &Topology) {
    for kind in StreamKind::ALL {
        let _ = js.delete_stream(topology.stream(kind)).await;
    }
}

/// An `OrderPaid` envelope like the ones the orders service writes.
fn sample_envelope() -> Vec<u8> {
    let paid = contracts::orders::OrderPaid {
        order_id: Uuid::new_v4(),
        concert_id: Uuid::new_v4(),
        customer_email: "ada.lovelace@example.com".into(),
        seats: vec![
            contracts::orders::OrderSeat {
                seat_id: "A-12".into(),
                fencing_token: None,
            },
            contracts::orders::OrderSeat {
                seat_id: "A-13".into(),
                fencing_token: None,
            },
        ],
        paid_at: chrono::Utc::now(),
    };
    let envelope = contracts::Envelope::new("orders", paid.order_id, 2, chrono::Utc::now(), paid);
    serde_json::to_vec(&envelope).unwrap_or_default()
}
