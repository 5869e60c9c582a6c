//! `ticketctl demo`: the story a newcomer follows against a running
//! system (`docker compose up`, then `ticketctl seed`).
//!
//! It loads a seat map, holds two seats, creates an order, pays it and
//! waits until it is `CONFIRMED` (or `REFUNDED`), printing each step.
//! Every request carries the `traceparent` of one root span, exported as
//! service `ticketctl` when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, so the
//! whole story, including the asynchronous part after the payment (relay,
//! inventory, notification, reporting), is one trace in Jaeger. It prints
//! the trace id and the Jaeger URL; `ticketctl trace` prints the tree.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use tracing::Instrument as _;
use uuid::Uuid;

use super::seed::DEMO_CONCERT;
use super::support::{SigningKey, defaults, signed_in_client};

/// Where the services are, and the key the demo's customer token is
/// signed with.
#[derive(Debug, Args)]
pub(crate) struct Endpoints {
    /// The orders API.
    #[arg(long = "orders-url", env = "ORDERS_URL", default_value = defaults::ORDERS_API)]
    orders: String,
    /// The inventory API.
    #[arg(long = "inventory-url", env = "INVENTORY_URL", default_value = defaults::INVENTORY_API)]
    inventory: String,
    /// Jaeger's UI as a browser reaches it (the printed link); inside
    /// compose the services see Jaeger under another name than the host does.
    #[arg(long = "jaeger-ui-url", env = "JAEGER_UI_URL", default_value = defaults::JAEGER)]
    jaeger_ui: String,
    #[command(flatten)]
    key: SigningKey,
}

/// Runs the story; see the module docs.
pub(crate) async fn run(endpoints: Endpoints) -> anyhow::Result<()> {
    let env = settings::Env::from_process();
    let mut config = telemetry::TelemetryConfig::from_env("ticketctl", &env)?;
    if env.get("RUST_LOG").is_none() {
        // The demo prints its own story; log lines only for problems.
        config.log_filter = "warn".into();
    }
    let telemetry = telemetry::init(&config)?;
    let root = tracing::info_span!("ticketctl.demo");
    let result = story(&endpoints, config.otlp_endpoint.is_some())
        .instrument(root)
        .await;
    // Flush our spans before printing where to find them.
    telemetry.shutdown();
    result
}

async fn story(endpoints: &Endpoints, exporting: bool) -> anyhow::Result<()> {
    // One new customer, signed in for the whole story: every call carries
    // their token (the seat map would also answer without one).
    let customer = Uuid::new_v4();
    let http = signed_in_client(
        &endpoints.key.customer_token(customer)?,
        reqwest::Client::builder().timeout(Duration::from_secs(10)),
    )?;
    let trace_id = telemetry::propagation::current_trace_id().unwrap_or_default();
    let started = Instant::now();

    println!("1. load the seat map");
    let seats = two_free_seats(&http, endpoints).await?;
    println!(
        "2. hold seats {} and {} as customer {customer}",
        seats[0], seats[1]
    );
    let holds = hold(&http, endpoints, &seats).await?;
    println!("3. create the order");
    let order_id = create_order(&http, endpoints, holds).await?;
    println!("4. pay it");
    let paid = send(
        &http,
        "pay",
        http.post(format!("{}/orders/{order_id}/pay", endpoints.orders))
            .header("idempotency-key", Uuid::new_v4().to_string()),
    )
    .await?;
    println!("   {}", paid["status"]);
    println!("5. wait for inventory's answer (relay → NATS → inventory → relay → NATS → orders)");
    let status = outcome(&http, endpoints, &order_id).await?;
    println!("   {status} after {:.1} s", started.elapsed().as_secs_f64());

    println!("\norder  {order_id}");
    println!("trace  {trace_id}");
    if exporting {
        println!("jaeger {}/trace/{trace_id}", endpoints.jaeger_ui);
        println!(
            "tree   ticketctl trace {trace_id}   (the consumers' spans arrive within seconds)"
        );
    } else {
        println!(
            "(set OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 to export this trace to Jaeger)"
        );
    }
    Ok(())
}

/// The first two available seats of the demo concert.
async fn two_free_seats(
    http: &reqwest::Client,
    endpoints: &Endpoints,
) -> anyhow::Result<Vec<String>> {
    let map = send(
        http,
        "seat map",
        http.get(format!(
            "{}/events/{DEMO_CONCERT}/seats",
            endpoints.inventory
        )),
    )
    .await
    .context("run `ticketctl seed` first")?;
    let seats = map["seats"].as_array().context("a seat map has seats")?;
    let free: Vec<String> = seats
        .iter()
        .filter(|s| s["status"] == "AVAILABLE")
        .filter_map(|s| s["seat_id"].as_str().map(str::to_owned))
        .take(2)
        .collect();
    println!(
        "   version {}, {} seats, holds {}",
        map["version"],
        seats.len(),
        map["holds"]
    );
    if free.len() < 2 {
        bail!("fewer than two seats are available; `docker compose down -v` starts afresh");
    }
    Ok(free)
}

/// Holds `seats` for the signed-in customer; the `{seat_id, hold_token}`
/// lines of an order.
async fn hold(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    seats: &[String],
) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    for seat in seats {
        let hold = send(
            http,
            "hold",
            http.post(format!(
                "{}/events/{DEMO_CONCERT}/seats/{seat}/hold",
                endpoints.inventory
            )),
        )
        .await?;
        println!(
            "   {seat}: hold_token {} fencing_token {} until {}",
            hold["hold_token"], hold["fencing_token"], hold["expires_at"]
        );
        lines.push(json!({ "seat_id": seat, "hold_token": hold["hold_token"] }));
    }
    Ok(lines)
}

async fn create_order(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    lines: Vec<Value>,
) -> anyhow::Result<String> {
    let order = send(
        http,
        "create order",
        http.post(format!("{}/orders", endpoints.orders))
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({
                "event_id": DEMO_CONCERT,
                "customer_email": "ada@example.com",
                "seats": lines,
            })),
    )
    .await?;
    let order_id = order["id"]
        .as_str()
        .context("an order has an id")?
        .to_owned();
    println!("   order {order_id}: {}", order["status"]);
    Ok(order_id)
}

/// Polls the order until inventory's answer has been applied.
async fn outcome(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    order_id: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let order = send(
            http,
            "read order",
            http.get(format!("{}/orders/{order_id}", endpoints.orders)),
        )
        .await?;
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        if status == "CONFIRMED" || status == "REFUNDED" {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("order {order_id} still {status} after 30 s: check `ticketctl consumers lag`");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `request` inside a client span whose context goes out as
/// `traceparent`; the answer's JSON, or an error with inventory's or
/// orders' problem+json.
async fn send(
    http: &reqwest::Client,
    what: &'static str,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<Value> {
    let span = tracing::info_span!("ticketctl.request", otel.kind = "client", request = what);
    async {
        let mut request = request.build()?;
        telemetry::propagation::inject_into_http(request.headers_mut());
        let url = request.url().clone();
        let response = http
            .execute(request)
            .await
            .with_context(|| format!("{what}: cannot reach {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{what}: {status}: {body}");
        }
        Ok(body)
    }
    .instrument(span)
    .await
}
