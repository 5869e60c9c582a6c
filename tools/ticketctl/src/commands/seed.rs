//! `ticketctl seed`: the demo concerts, created through inventory's API as
//! an operator. Fixed ids, so running it twice changes nothing: compose
//! runs it on every start.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::{SigningKey, defaults};

/// The demo concert, with a fixed id so seeding is idempotent.
pub(crate) const DEMO_CONCERT: Uuid = Uuid::from_u128(0x0190_a5e4_0000_7000_8000_0000_0000_0001);
/// A second concert whose sale opens later (outside the warmup window).
const LATER_CONCERT: Uuid = Uuid::from_u128(0x0190_a5e4_0000_7000_8000_0000_0000_0002);

/// Options of `seed`.
#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// The inventory API.
    #[arg(long, env = "INVENTORY_URL", default_value = defaults::INVENTORY_API)]
    inventory_url: String,
    /// Creating concerts is an operator's call.
    #[command(flatten)]
    key: SigningKey,
}

/// Creates the demo concerts (idempotent).
pub(crate) async fn run(args: SeedArgs) -> anyhow::Result<()> {
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
