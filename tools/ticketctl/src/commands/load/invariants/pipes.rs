//! The pipes between the services: the outboxes, the durable consumers'
//! backlog and the dead letters. Each is empty when the system has
//! settled; [`super::settle`] waits on the first two, and the checks here
//! say what is left, if anything, and why.

use std::collections::HashSet;

use futures::TryStreamExt as _;
use messaging::StreamKind;
use uuid::Uuid;

use super::snapshot::Snapshot;
use super::{Database, Sources, could_not_look, first_few};
use crate::commands::load::Check;

const OUTBOXES: &str = "the outboxes drain";
const CONSUMERS: &str = "the consumers catch up";
const DEAD_LETTERS: &str = "the dead letters are empty";

/// How many parked rows a failed outbox check names per outbox.
const PARKED_SHOWN: i64 = 3;

/// Rows an outbox has not published: waiting (`published_at` null: the
/// relay deletes a row once published, or marks it when it keeps rows for
/// a retention period), and parked after too many failures.
pub(super) async fn unpublished(database: &Database) -> anyhow::Result<i64> {
    let backlog = relay::store::backlog(database.pool()?).await?;
    Ok(backlog.pending + backlog.parked)
}

/// Every outbox is empty; otherwise what waits, and the parked rows with
/// their last error.
pub(super) async fn outboxes(sources: &Sources) -> Check {
    let mut offenders = Vec::new();
    for database in sources.outboxes() {
        if let Err(e) = outbox_offenders(database, &mut offenders).await {
            offenders.push(format!("{}: could not check: {e:#}", database.name));
        }
    }
    let names = sources.outboxes().map(|d| d.name).join(", ");
    if offenders.is_empty() {
        Check {
            name: OUTBOXES,
            ok: true,
            detail: format!("{names}: nothing waiting, nothing parked"),
        }
    } else {
        Check {
            name: OUTBOXES,
            ok: false,
            detail: first_few(&offenders),
        }
    }
}

async fn outbox_offenders(database: &Database, offenders: &mut Vec<String>) -> anyhow::Result<()> {
    let db = database.pool()?;
    let backlog = relay::store::backlog(db).await?;
    if backlog.pending > 0 {
        offenders.push(format!(
            "{}: {} rows waiting, the oldest for {:.1} s",
            database.name, backlog.pending, backlog.oldest_pending_secs
        ));
    }
    if backlog.parked > 0 {
        offenders.push(format!("{}: {} rows parked", database.name, backlog.parked));
        for row in relay::store::parked(db, PARKED_SHOWN).await? {
            offenders.push(format!(
                "{} parked {} {} of {} after {} attempts: {}",
                database.name,
                row.event_type,
                row.event_id,
                row.aggregate_id,
                row.attempts,
                row.last_error.as_deref().unwrap_or("-"),
            ));
        }
    }
    Ok(())
}

/// One durable consumer's backlog, as JetStream counts it.
#[derive(Debug)]
pub(super) struct Lag {
    stream: String,
    consumer: String,
    /// Stored and not yet delivered.
    pending: u64,
    /// Delivered and not yet acknowledged.
    ack_pending: usize,
}

impl Lag {
    pub(super) fn behind(&self) -> bool {
        self.pending > 0 || self.ack_pending > 0
    }
}

impl std::fmt::Display for Lag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}: {} pending, {} unacknowledged",
            self.stream, self.consumer, self.pending, self.ack_pending
        )
    }
}

/// The backlog of every durable consumer of every stream (what `ticketctl
/// consumers lag` prints). Ephemeral consumers, such as a replay's ordered
/// consumer, are nobody's work and are left out.
pub(super) async fn lags(sources: &Sources) -> anyhow::Result<Vec<Lag>> {
    let (js, topology) = sources.nats()?;
    let mut lags = Vec::new();
    for kind in StreamKind::ALL {
        // A stream not provisioned yet has no consumers to wait for.
        let Ok(stream) = js.get_stream(topology.stream(kind)).await else {
            continue;
        };
        let infos: Vec<_> = stream.consumers().try_collect().await?;
        for info in infos
            .into_iter()
            .filter(|i| i.config.durable_name.is_some())
        {
            lags.push(Lag {
                stream: info.stream_name,
                consumer: info.name,
                pending: info.num_pending,
                ack_pending: info.num_ack_pending,
            });
        }
    }
    Ok(lags)
}

/// Every durable consumer has taken and acknowledged everything.
pub(super) async fn consumers(sources: &Sources) -> Check {
    let lags = match lags(sources).await {
        Ok(lags) => lags,
        Err(e) => return could_not_look(CONSUMERS, &e),
    };
    let behind: Vec<&Lag> = lags.iter().filter(|lag| lag.behind()).collect();
    Check {
        name: CONSUMERS,
        ok: behind.is_empty(),
        detail: if behind.is_empty() {
            format!("{} durable consumers, none behind", lags.len())
        } else {
            format!(
                "{} of {} durable consumers behind: {}",
                behind.len(),
                lags.len(),
                first_few(&behind)
            )
        },
    }
}

/// No message of this sale was dead-lettered. Letters about other
/// concerts (earlier runs on the same deployment) are counted in the
/// detail but are not this run's failure.
pub(super) async fn dead_letters(sources: &Sources, snapshot: &Snapshot) -> Check {
    let letters = match sources.nats() {
        Ok((js, topology)) => consumer::dlq::list(js, topology).await,
        Err(e) => return could_not_look(DEAD_LETTERS, &e),
    };
    let letters = match letters {
        Ok(letters) => letters,
        Err(e) => return could_not_look(DEAD_LETTERS, &e.into()),
    };
    // Without the concert's orders, every letter is suspect.
    let orders: Option<HashSet<Uuid>> = snapshot
        .orders
        .as_ref()
        .ok()
        .map(|o| o.by_id.keys().copied().collect());
    let (ours, others): (Vec<_>, Vec<_>) = letters.iter().partition(|letter| {
        orders
            .as_ref()
            .is_none_or(|o| about_orders(&letter.payload, o))
    });
    let listed: Vec<String> = ours
        .iter()
        .map(|l| {
            format!(
                "#{} {} gave up on {} {} after {} deliveries: {}",
                l.sequence, l.consumer, l.event_type, l.event_id, l.delivery_count, l.error
            )
        })
        .collect();
    let mine = if listed.is_empty() {
        "none of this sale".to_owned()
    } else {
        format!("{} of this sale: {}", listed.len(), first_few(&listed))
    };
    let detail = if others.is_empty() {
        mine
    } else {
        format!(
            "{mine}; {} older ones of other sales (`ticketctl dlq list`)",
            others.len()
        )
    };
    Check {
        name: DEAD_LETTERS,
        ok: listed.is_empty(),
        detail,
    }
}

/// Whether a dead letter's envelope is about one of `orders`: an order
/// event (its aggregate), an inventory answer or a `SendEmail` command
/// (their `order_id`).
fn about_orders(payload: &[u8], orders: &HashSet<Uuid>) -> bool {
    let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return false;
    };
    let named = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
            .is_some_and(|id| orders.contains(&id))
    };
    named(&envelope["aggregate_id"]) || named(&envelope["data"]["order_id"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_is_about_an_order_by_its_aggregate_or_its_order_id() {
        let ours = Uuid::from_u128(1);
        let orders = HashSet::from([ours]);
        let event = format!(r#"{{"aggregate_id":"{ours}","data":{{}}}}"#);
        let command = format!(
            r#"{{"aggregate_id":"{}","data":{{"order_id":"{ours}"}}}}"#,
            Uuid::from_u128(9)
        );
        let other = format!(r#"{{"aggregate_id":"{}","data":{{}}}}"#, Uuid::from_u128(2));
        assert!(about_orders(event.as_bytes(), &orders));
        assert!(about_orders(command.as_bytes(), &orders));
        assert!(!about_orders(other.as_bytes(), &orders));
        assert!(!about_orders(b"not json", &orders));
    }

    #[test]
    fn a_consumer_is_behind_with_pending_or_unacknowledged_messages() {
        let lag = |pending, ack_pending| Lag {
            stream: "ORDER_EVENTS".into(),
            consumer: "inventory".into(),
            pending,
            ack_pending,
        };
        assert!(!lag(0, 0).behind());
        assert!(lag(3, 0).behind());
        assert!(lag(0, 1).behind());
    }
}
