//! `ticketctl seed`, `ticketctl demo` and `ticketctl trace`: the story a
//! newcomer follows against a running system (`docker compose up`).
//!
//! - `seed` creates the demo concerts through inventory's API (fixed ids,
//!   so running it twice changes nothing).
//! - `demo` loads a seat map, holds two seats, creates an order, pays it
//!   and waits until it is `CONFIRMED` (or `REFUNDED`), printing each step.
//!   Every request carries the `traceparent` of one root span, exported as
//!   service `ticketctl` when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, so the
//!   whole story, including the asynchronous part after the payment (relay,
//!   inventory, notification, reporting), is one trace in Jaeger. It prints
//!   the trace id and the Jaeger URL.
//! - `trace <id>` prints that trace as a tree from Jaeger's query API:
//!   service, operation, duration, parent → child.
//!
//! Three commands in one file for now; #12 gives ticketctl a `commands/`
//! folder that mirrors the CLI.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::identity::SigningKey;

/// The demo concert, with a fixed id so seeding is idempotent.
pub(crate) const DEMO_CONCERT: Uuid = Uuid::from_u128(0x0190_a5e4_0000_7000_8000_0000_0000_0001);
/// A second concert whose sale opens later (outside the warmup window).
const LATER_CONCERT: Uuid = Uuid::from_u128(0x0190_a5e4_0000_7000_8000_0000_0000_0002);

/// Where the services are, and the key the demo's customer token is
/// signed with.
#[derive(Debug, Args)]
pub(crate) struct Endpoints {
    /// The orders API.
    #[arg(
        long = "orders-url",
        env = "ORDERS_URL",
        default_value = "http://localhost:8080"
    )]
    orders: String,
    /// The inventory API.
    #[arg(
        long = "inventory-url",
        env = "INVENTORY_URL",
        default_value = "http://localhost:8081"
    )]
    inventory: String,
    /// Jaeger's UI as a browser reaches it (the printed link); inside
    /// compose the services see Jaeger under another name than the host does.
    #[arg(
        long = "jaeger-ui-url",
        env = "JAEGER_UI_URL",
        default_value = "http://localhost:16686"
    )]
    jaeger_ui: String,
    #[command(flatten)]
    key: SigningKey,
}

/// Options of `seed`.
#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// The inventory API.
    #[arg(long, env = "INVENTORY_URL", default_value = "http://localhost:8081")]
    inventory_url: String,
    /// Creating concerts is an operator's call.
    #[command(flatten)]
    key: SigningKey,
}

/// Options of `trace`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The trace id (32 hex digits), as `demo` prints it.
    trace_id: String,
    /// Jaeger's UI and query API.
    #[arg(long, env = "JAEGER_URL", default_value = "http://localhost:16686")]
    jaeger_url: String,
}

/// Creates the demo concerts (idempotent).
pub(crate) async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let operator = args.key.operator_token()?;
    let now = chrono::Utc::now();
    let rows = ["A", "B", "C", "D"];
    let seats: Vec<Value> = rows
        .iter()
        .enumerate()
        .flat_map(|(r, row)| {
            (1..=10).map(move |n| {
                json!({ "seat_id": format!("{row}-{n}"), "price_cents": 6500 - 1000 * i64::try_from(r).unwrap_or(0) })
            })
        })
        .collect();
    let concerts = [
        json!({
            "id": DEMO_CONCERT, "name": "The Outbox Pattern, live", "venue": "Hall 1",
            "starts_at": now + chrono::Duration::days(30), "sale_opens_at": now - chrono::Duration::hours(1),
            "seats": seats,
        }),
        json!({
            "id": LATER_CONCERT, "name": "Cache Invalidation (unplugged)", "venue": "Hall 2",
            "starts_at": now + chrono::Duration::days(90), "sale_opens_at": now + chrono::Duration::days(60),
            "seats": seats,
        }),
    ];
    for concert in concerts {
        let response = http
            .post(format!("{}/events", args.inventory_url))
            .bearer_auth(&operator)
            .json(&concert)
            .send()
            .await
            .with_context(|| format!("inventory is not reachable at {}", args.inventory_url))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            201 => println!("created  {} {}", body["id"], body["name"]),
            200 => println!("exists   {} {}", body["id"], body["name"]),
            // Seeded before, at another time: its dates were relative to
            // that run's clock. The concert is there; keep it.
            409 if body["type"] == "/problems/event-exists" => {
                println!("exists   {} (seeded earlier, kept as it is)", concert["id"]);
            }
            _ => bail!("inventory answered {status}: {body}"),
        }
    }
    Ok(())
}

/// Runs the story; see the module docs.
pub(crate) async fn demo(endpoints: Endpoints) -> anyhow::Result<()> {
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
    let mut headers = reqwest::header::HeaderMap::new();
    let mut authorization: reqwest::header::HeaderValue =
        format!("Bearer {}", endpoints.key.customer_token(customer)?).parse()?;
    authorization.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, authorization);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()?;
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

/// Jaeger's `GET /api/traces/{id}` answer (the parts we print).
#[derive(Debug, Deserialize)]
struct JaegerAnswer {
    data: Vec<JaegerTrace>,
}

#[derive(Debug, Deserialize)]
struct JaegerTrace {
    spans: Vec<JaegerSpan>,
    processes: HashMap<String, JaegerProcess>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerSpan {
    #[serde(rename = "spanID")]
    span_id: String,
    operation_name: String,
    #[serde(default)]
    references: Vec<JaegerReference>,
    start_time: u64,
    duration: u64,
    #[serde(rename = "processID")]
    process_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerReference {
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerProcess {
    service_name: String,
}

/// Prints a trace as a tree.
pub(crate) async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/traces/{}", args.jaeger_url, args.trace_id);
    let response = reqwest::get(&url)
        .await
        .with_context(|| format!("Jaeger is not reachable at {}", args.jaeger_url))?;
    if !response.status().is_success() {
        bail!(
            "Jaeger answered {} for trace {} (spans arrive a few seconds after the request)",
            response.status(),
            args.trace_id
        );
    }
    let answer: JaegerAnswer = response.json().await.context("unexpected Jaeger answer")?;
    let trace = answer.data.into_iter().next().context("no such trace")?;
    print!("{}", render_tree(&trace));
    Ok(())
}

/// The tree, children in start order; spans whose parent is not in the
/// trace (not exported, or still in flight) are shown as roots.
fn render_tree<'a>(trace: &'a JaegerTrace) -> String {
    let ids: std::collections::HashSet<&str> =
        trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let parent_of = |span: &'a JaegerSpan| -> Option<&'a str> {
        span.references
            .iter()
            .find(|r| r.ref_type == "CHILD_OF" && ids.contains(r.span_id.as_str()))
            .map(|r| r.span_id.as_str())
    };
    let mut children: HashMap<Option<&str>, Vec<&JaegerSpan>> = HashMap::new();
    for span in &trace.spans {
        children.entry(parent_of(span)).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_time);
    }
    let mut services: Vec<&str> = trace
        .processes
        .values()
        .map(|p| p.service_name.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    let mut out = format!(
        "{} spans from {} services: {}\n",
        trace.spans.len(),
        services.len(),
        services.join(", ")
    );
    let mut stack: Vec<(&JaegerSpan, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|s| (*s, 0)).collect())
        .unwrap_or_default();
    while let Some((span, depth)) = stack.pop() {
        let service = trace
            .processes
            .get(&span.process_id)
            .map_or("?", |p| p.service_name.as_str());
        #[allow(clippy::cast_precision_loss)] // microseconds, far below 2^52
        let millis = span.duration as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:indent$}{service:<13} {:<40} {millis:>9.2} ms",
            "",
            span.operation_name,
            indent = depth * 2
        );
        if let Some(kids) = children.get(&Some(span.span_id.as_str())) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_prints_as_a_tree_in_start_order() {
        let answer: JaegerAnswer = serde_json::from_value(json!({ "data": [{
            "spans": [
                { "spanID": "b", "operationName": "POST /orders/{id}/pay", "references": [{ "refType": "CHILD_OF", "spanID": "a" }], "startTime": 2, "duration": 1500, "processID": "p2" },
                { "spanID": "a", "operationName": "ticketctl.demo", "references": [], "startTime": 1, "duration": 90000, "processID": "p1" },
                { "spanID": "c", "operationName": "relay.publish", "references": [{ "refType": "CHILD_OF", "spanID": "b" }], "startTime": 3, "duration": 800, "processID": "p3" },
                { "spanID": "d", "operationName": "orphan", "references": [{ "refType": "CHILD_OF", "spanID": "zz" }], "startTime": 4, "duration": 10, "processID": "p3" }
            ],
            "processes": { "p1": { "serviceName": "ticketctl" }, "p2": { "serviceName": "orders" }, "p3": { "serviceName": "relay" } }
        }]}))
        .unwrap();
        let tree = render_tree(&answer.data[0]);
        let lines: Vec<&str> = tree.lines().collect();
        assert_eq!(
            lines[0],
            "4 spans from 3 services: orders, relay, ticketctl"
        );
        assert!(lines[1].starts_with("ticketctl     ticketctl.demo"));
        assert!(lines[2].starts_with("  orders        POST /orders/{id}/pay"));
        assert!(lines[3].starts_with("    relay         relay.publish"));
        assert!(lines[4].starts_with("relay         orphan"), "{tree}");
    }
}
