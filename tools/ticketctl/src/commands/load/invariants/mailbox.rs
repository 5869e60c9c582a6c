//! What the mail provider received: the e-mails that really went out,
//! counted by reference (`<order_id>-<kind>`, the notification worker's
//! stable id), so a duplicate send shows even though the notification
//! database records each e-mail once.
//!
//! Natively the log provider appends one JSON line per e-mail to
//! `EMAIL_LOG_PATH` (with its `reference`); in compose Mailpit keeps each
//! message with the `Message-ID` `<reference>@tickets.example.com`. Only
//! the concerts' orders are counted: the same log or mailbox holds every
//! earlier run's e-mails too.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use uuid::Uuid;

use super::snapshot::Snapshot;
use crate::commands::load::Targets;

/// What could be counted at the provider.
#[derive(Debug)]
pub(super) enum Provider {
    /// Neither `--email-log` nor `--mailpit-url` was given.
    NotChecked,
    /// E-mails received per reference, for the concerts' orders.
    Counted {
        /// Where they were counted (the file, or Mailpit's URL).
        source: String,
        received: HashMap<String, u32>,
    },
}

/// Counts what the provider received for the concerts' orders.
pub(super) async fn read(targets: &Targets, snapshot: &Snapshot) -> anyhow::Result<Provider> {
    if targets.email_log.is_none() && targets.mailpit_url.is_none() {
        return Ok(Provider::NotChecked);
    }
    let orders: HashSet<Uuid> = match &snapshot.orders {
        Ok(orders) => orders.by_id.keys().copied().collect(),
        Err(e) => anyhow::bail!("the concerts' orders could not be read: {e:#}"),
    };
    let (source, references) = if let Some(path) = &targets.email_log {
        (path.display().to_string(), log_references(path).await?)
    } else if let Some(url) = &targets.mailpit_url {
        (url.clone(), mailpit_references(url).await?)
    } else {
        unreachable!("one of the two is set (checked above)")
    };
    Ok(Provider::Counted {
        source,
        received: count_for(&orders, references),
    })
}

/// How many times each reference of one of `orders` occurs.
fn count_for(orders: &HashSet<Uuid>, references: Vec<String>) -> HashMap<String, u32> {
    let mut received = HashMap::new();
    for reference in references {
        let order = reference.get(..36).and_then(|id| id.parse::<Uuid>().ok());
        if order.is_some_and(|order| orders.contains(&order)) {
            *received.entry(reference).or_insert(0) += 1;
        }
    }
    received
}

/// The references in the log provider's file; a file that does not exist
/// (nothing was ever sent) holds none.
async fn log_references(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(parse_log(&text))
}

/// One line of the log provider's file, as far as the count needs it.
#[derive(Deserialize)]
struct LoggedEmail {
    reference: String,
}

/// The `reference` of every line; a line that is not an e-mail (a partial
/// last line while the provider writes) is skipped.
fn parse_log(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<LoggedEmail>(line).ok())
        .map(|email| email.reference)
        .collect()
}

/// A page of Mailpit's `GET /api/v1/messages`.
#[derive(Deserialize)]
struct MailpitPage {
    messages_count: u64,
    messages: Vec<MailpitMessage>,
}

#[derive(Deserialize)]
struct MailpitMessage {
    #[serde(rename = "MessageID")]
    message_id: String,
}

/// The references of every message Mailpit holds, page by page.
async fn mailpit_references(base: &str) -> anyhow::Result<Vec<String>> {
    const PAGE: u64 = 1_000;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut references = Vec::new();
    let mut start = 0;
    let base = base.trim_end_matches('/');
    loop {
        let url = format!("{base}/api/v1/messages?start={start}&limit={PAGE}");
        let page: MailpitPage = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("listing Mailpit's messages at {url}"))?
            .json()
            .await
            .with_context(|| format!("reading Mailpit's messages at {url}"))?;
        let received = page.messages.len() as u64;
        references.extend(
            page.messages
                .iter()
                .map(|m| mailpit_reference(&m.message_id)),
        );
        start += received;
        if received == 0 || start >= page.messages_count {
            return Ok(references);
        }
    }
}

/// `<reference>@tickets.example.com`, with or without the angle brackets
/// (Mailpit shows the id without them), to `reference`.
fn mailpit_reference(message_id: &str) -> String {
    let id = message_id.trim_start_matches('<').trim_end_matches('>');
    id.split_once('@').map_or(id, |(local, _)| local).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_read_line_by_line_and_a_torn_line_is_skipped() {
        let text = "{\"to\":\"a@example.com\",\"reference\":\"r-1\"}\n\
                    {\"reference\":\"r-2\"}\n\
                    {\"reference\":\"r-";
        assert_eq!(parse_log(text), ["r-1", "r-2"]);
    }

    #[test]
    fn a_mailpit_message_id_becomes_the_reference() {
        let order = Uuid::from_u128(7);
        let id = format!("{order}-order_confirmed@tickets.example.com");
        assert_eq!(mailpit_reference(&id), format!("{order}-order_confirmed"));
        assert_eq!(
            mailpit_reference(&format!("<{id}>")),
            format!("{order}-order_confirmed")
        );
    }

    #[test]
    fn only_the_concerts_orders_are_counted_and_duplicates_add_up() {
        let ours = Uuid::from_u128(1);
        let theirs = Uuid::from_u128(2);
        let references = vec![
            format!("{ours}-payment_received"),
            format!("{ours}-payment_received"),
            format!("{theirs}-payment_received"),
            "not-an-order".to_owned(),
        ];
        let counted = count_for(&HashSet::from([ours]), references);
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[&format!("{ours}-payment_received")], 2);
    }
}
