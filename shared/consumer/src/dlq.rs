//! Dead letters: messages a consumer gave up on, kept with their error in
//! the `DEAD_LETTERS` stream (subject `dlq.<stream>.<consumer>`) for a
//! human to inspect, fix the cause, and redrive.
//!
//! A dead letter is the original message (payload and headers, including
//! the trace context) plus:
//!
//! | header | meaning |
//! |---|---|
//! | `Dlq-Error` | why the consumer gave up |
//! | `Dlq-Consumer` | which consumer |
//! | `Dlq-Delivery-Count` | deliveries it had |
//! | `Dlq-Original-Subject` | where it was published |
//! | `Dlq-Original-Stream`, `Dlq-Original-Sequence` | where it sat |
//!
//! **Redrive** republishes the original to its original subject with a new
//! `Nats-Msg-Id` (the old one would be dropped as a duplicate within the
//! stream's window) and removes the dead letter. Every consumer of that
//! stream receives it again; those that had applied it already find it in
//! their inbox and skip it, so only the one that failed acts on it. The
//! log then holds the fact twice under two message ids: anything that
//! replays the stream must deduplicate by the envelope's `event_id`, as
//! the inbox does.

use async_nats::HeaderMap;
use async_nats::jetstream::message::{Message, PublishMessage, StreamMessage};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::Stream;
use messaging::{StreamKind, Topology, headers};

use crate::ConsumerSpec;

/// Why the consumer gave up (one line, at most 1,000 characters).
pub const ERROR: &str = "Dlq-Error";
/// The consumer that gave up.
pub const CONSUMER: &str = "Dlq-Consumer";
/// How many deliveries it had.
pub const DELIVERY_COUNT: &str = "Dlq-Delivery-Count";
/// The subject it was published on (with the prefix).
pub const ORIGINAL_SUBJECT: &str = "Dlq-Original-Subject";
/// The stream it was in.
pub const ORIGINAL_STREAM: &str = "Dlq-Original-Stream";
/// Its sequence there.
pub const ORIGINAL_SEQUENCE: &str = "Dlq-Original-Sequence";

/// A dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// NATS refused or did not answer.
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
    /// No dead letter has that sequence.
    #[error("no dead letter with sequence {0}")]
    NotFound(u64),
    /// The dead letter lacks the header needed to redrive it.
    #[error("dead letter {0} has no {ORIGINAL_SUBJECT} header")]
    NoOriginalSubject(u64),
}

/// One dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its sequence in `DEAD_LETTERS`: the id to show, redrive or purge.
    pub sequence: u64,
    /// The consumer that gave up.
    pub consumer: String,
    /// Why.
    pub error: String,
    /// Deliveries it had.
    pub delivery_count: String,
    /// Where it was published.
    pub original_subject: String,
    /// Where it sat: `stream#sequence`.
    pub original_position: String,
    /// The envelope's event id (empty if the payload is not an envelope).
    pub event_id: String,
    /// The envelope's type.
    pub event_type: String,
    /// The original payload.
    pub payload: Vec<u8>,
}

/// The DLQ subject of a consumer, e.g. `dlq.order_events.inventory`.
pub fn subject(topology: &Topology, stream: StreamKind, consumer: &str) -> String {
    topology.subject(&format!(
        "dlq.{}.{consumer}",
        stream.base_name().to_ascii_lowercase()
    ))
}

/// Copies `message` to the dead letters with `error`; returns once
/// JetStream acknowledged the copy (only then may the original be
/// terminated).
pub async fn dead_letter(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    spec: &ConsumerSpec,
    message: &Message,
    error: &str,
    delivered: i64,
) -> Result<(), DlqError> {
    let info = message.info().ok();
    let mut dead = message
        .headers
        .as_ref()
        .map_or_else(HeaderMap::new, |original| {
            copy_headers(original, |name| name == headers::MSG_ID)
        });
    // One dead letter per consumer and stored message, even if
    // dead-lettering is retried, and whether or not it had a message id.
    let position = info.as_ref().map_or_else(String::new, |i| {
        format!("{}-{}", i.stream, i.stream_sequence)
    });
    dead.insert(
        headers::MSG_ID,
        format!("dlq-{}-{position}", spec.name).as_str(),
    );
    dead.insert(ERROR, one_line(error).as_str());
    dead.insert(CONSUMER, spec.name.as_str());
    dead.insert(DELIVERY_COUNT, delivered.to_string().as_str());
    dead.insert(ORIGINAL_SUBJECT, message.subject.as_str());
    dead.insert(ORIGINAL_STREAM, info.as_ref().map_or("", |i| i.stream));
    dead.insert(
        ORIGINAL_SEQUENCE,
        info.map_or(0, |i| i.stream_sequence).to_string().as_str(),
    );
    publish_confirmed(
        js,
        subject(topology, spec.stream, &spec.name),
        PublishMessage::build()
            .payload(message.payload.clone())
            .headers(dead),
    )
    .await?;
    Ok(())
}

/// Every dead letter, oldest first.
pub async fn list(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
) -> Result<Vec<DeadLetter>, DlqError> {
    let state = dead_letters_stream(js, topology)
        .await?
        .get_info()
        .await
        .map_err(async_nats::Error::from)?
        .state;
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        match show(js, topology, sequence).await {
            Ok(letter) => letters.push(letter),
            // A gap: a letter that was redriven or deleted.
            Err(DlqError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(letters)
}

/// The dead letter at `sequence`.
pub async fn show(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    sequence: u64,
) -> Result<DeadLetter, DlqError> {
    let (_, raw) = stored_letter(js, topology, sequence).await?;
    let h = Some(&raw.headers);
    Ok(DeadLetter {
        sequence,
        consumer: header(h, CONSUMER),
        error: header(h, ERROR),
        delivery_count: header(h, DELIVERY_COUNT),
        original_subject: header(h, ORIGINAL_SUBJECT),
        original_position: format!(
            "{}#{}",
            header(h, ORIGINAL_STREAM),
            header(h, ORIGINAL_SEQUENCE)
        ),
        event_id: envelope_event_id(&raw.payload),
        event_type: header(h, headers::EVENT_TYPE),
        payload: raw.payload.to_vec(),
    })
}

/// Republishes the dead letter at `sequence` to its original subject and
/// removes it; returns the new message's stream sequence.
pub async fn redrive(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    sequence: u64,
) -> Result<u64, DlqError> {
    let (stream, raw) = stored_letter(js, topology, sequence).await?;
    let original_subject = header(Some(&raw.headers), ORIGINAL_SUBJECT);
    if original_subject.is_empty() {
        return Err(DlqError::NoOriginalSubject(sequence));
    }
    let mut republished = copy_headers(&raw.headers, |name| {
        name.starts_with("Dlq-") || name == headers::MSG_ID
    });
    // A new message id: the original one may still be in the stream's
    // duplicate window. Consumers deduplicate by the envelope's event id.
    republished.insert(
        headers::MSG_ID,
        format!("redrive-{sequence}-{}", uuid::Uuid::new_v4()).as_str(),
    );
    let ack = publish_confirmed(
        js,
        original_subject,
        PublishMessage::build()
            .payload(raw.payload.clone())
            .headers(republished),
    )
    .await?;
    stream
        .delete_message(sequence)
        .await
        .map_err(async_nats::Error::from)?;
    Ok(ack.sequence)
}

/// Deletes every dead letter; returns how many there were.
pub async fn purge(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
) -> Result<u64, DlqError> {
    let stream = dead_letters_stream(js, topology).await?;
    let purged = stream.purge().await.map_err(async_nats::Error::from)?;
    Ok(purged.purged)
}

/// The `DEAD_LETTERS` stream, which every operation here starts from.
async fn dead_letters_stream(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
) -> Result<Stream, DlqError> {
    Ok(js
        .get_stream(topology.stream(StreamKind::DeadLetters))
        .await
        .map_err(async_nats::Error::from)?)
}

/// The stored dead letter at `sequence`, as `show` reads it and `redrive`
/// republishes it, with the stream it is in (`redrive` deletes it from
/// there); a gap (redriven, purged) is [`DlqError::NotFound`].
async fn stored_letter(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    sequence: u64,
) -> Result<(Stream, StreamMessage), DlqError> {
    let stream = dead_letters_stream(js, topology).await?;
    let raw = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| not_found_or(e, sequence))?;
    Ok((stream, raw))
}

/// Publishes and waits for JetStream's ack: both callers may only remove
/// the message they copy (terminate the original, delete the dead letter)
/// once the copy is stored.
async fn publish_confirmed(
    js: &async_nats::jetstream::Context,
    subject: String,
    message: PublishMessage,
) -> Result<PublishAck, DlqError> {
    Ok(js
        .send_publish(subject, message)
        .await
        .map_err(async_nats::Error::from)?
        .await
        .map_err(async_nats::Error::from)?)
}

/// Every header of `from` (all values of each) except those named for
/// `skip`: dead-lettering drops the message id, redrive also the `Dlq-*`
/// headers, and both keep the rest (the trace context above all).
fn copy_headers(from: &HeaderMap, skip: impl Fn(&str) -> bool) -> HeaderMap {
    let mut copy = HeaderMap::new();
    for (name, values) in from.iter() {
        if skip(AsRef::<str>::as_ref(name)) {
            continue;
        }
        for value in values {
            copy.append(name.clone(), value.clone());
        }
    }
    copy
}

fn not_found_or(e: async_nats::jetstream::stream::RawMessageError, sequence: u64) -> DlqError {
    if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound {
        DlqError::NotFound(sequence)
    } else {
        DlqError::Nats(e.into())
    }
}

fn envelope_event_id(payload: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("event_id")
                .and_then(|id| id.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn header(headers: Option<&HeaderMap>, name: &str) -> String {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// Header values are single lines; errors with newlines are flattened.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(1_000).collect()
}
