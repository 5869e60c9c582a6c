//! Names and configurations of the streams (`docs/design.md` §4, Messaging topology).
//!
//! | stream | subjects | retention | limits | why |
//! |---|---|---|---|---|
//! | `ORDER_EVENTS` | `orders.events.>` | limits | 7 days, oldest out | a replayable fact log; several independent consumers |
//! | `INVENTORY_EVENTS` | `inventory.events.>` | limits | 7 days, oldest out | inventory's facts back to orders |
//! | `NOTIFY_COMMANDS` | `notify.commands.>` | work queue | no age; 1,000,000 messages, new refused | tasks for one worker group, gone once acked |
//! | `DEAD_LETTERS` | `dlq.>` | limits | no age; 100,000 messages, new refused | poisoned messages, kept for repair and redrive |
//!
//! All streams use file storage. With a prefix `p`, subjects become `p.…`
//! and stream names `p_…`, so a test's topology never touches another's.
//!
//! Every stream has `NATS_STREAM_REPLICAS` copies (1 by default; 3 on a
//! cluster, as `compose.cluster.yaml` runs it): a publish is acknowledged
//! once a majority of them stored it, so losing one node loses no
//! acknowledged message (`docs/scaling.md`). A single server refuses more
//! than one.
//!
//! # Retention: what each stream may lose, and who notices
//!
//! A stream can lose a message in two ways: it *expires* (`max_age`, or the
//! oldest one makes room under `discard: old`), or it is *refused* at
//! publish time (`discard: new` once a limit is reached). Expiry is silent;
//! a refusal is an error the publisher sees and retries. So:
//!
//! - **Commands and dead letters never expire.** A `SendEmail` command
//!   that expired would be an e-mail nobody sends and nobody hears about;
//!   a dead letter that expired would be a failure nobody repairs. Both
//!   streams keep messages until they leave on purpose (a worker acks the
//!   command; `ticketctl dlq redrive` or `purge` removes the
//!   letter), and are bounded by a message count with `discard: new`: when
//!   full, notification's relay gets an error and keeps the command in its
//!   outbox (`relay_backlog` grows), and a consumer that cannot store a
//!   dead letter naks the message, which stays in its own stream. A count,
//!   not bytes: a command or a letter is one e-mail or one failure, and the
//!   server's `max_payload` caps each one's size.
//! - **Events expire after 7 days.** The event logs are fan-out to
//!   consumers that keep up within seconds; 7 days is far beyond any lag
//!   `consumer_pending` would let pass unnoticed, and it bounds how far
//!   back a message can ever be delivered again, which is what lets the
//!   consumers sweep their inbox and positions (`consumer::sweeper`).
//!   The price: `ORDER_EVENTS` is the log reporting is rebuilt from, and
//!   after the stream's first week it no longer starts at the first event.
//!   A rebuild checks that (`first_sequence` must be 1: expiry, a purge
//!   and a deleted message all move it) and refuses, naming the first
//!   sequence it has, unless it is told to accept a partial history
//!   (`ticketctl reporting rebuild --accept-partial-history`). It never
//!   swaps in totals of a shortened log without being asked to. Keeping
//!   the log forever instead would make every message's comeback horizon
//!   unbounded (a recreated durable replays the whole stream), and so the
//!   consumers' tables unsweepable.
//!
//! `provision` converges existing streams to these settings, so a
//! deployment picks them up on its next start.
use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

/// The four streams of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Facts about orders.
    OrderEvents,
    /// Facts about seats.
    InventoryEvents,
    /// Commands for the notification workers.
    NotifyCommands,
    /// Messages that could not be processed.
    DeadLetters,
}

impl StreamKind {
    /// Every stream, in provisioning order.
    pub const ALL: [Self; 4] = [
        Self::OrderEvents,
        Self::InventoryEvents,
        Self::NotifyCommands,
        Self::DeadLetters,
    ];

    /// The stream name without prefix, e.g. `ORDER_EVENTS`.
    pub fn base_name(self) -> &'static str {
        match self {
            Self::OrderEvents => "ORDER_EVENTS",
            Self::InventoryEvents => "INVENTORY_EVENTS",
            Self::NotifyCommands => "NOTIFY_COMMANDS",
            Self::DeadLetters => "DEAD_LETTERS",
        }
    }

    fn base_subject(self) -> &'static str {
        match self {
            Self::OrderEvents => "orders.events.>",
            Self::InventoryEvents => "inventory.events.>",
            Self::NotifyCommands => "notify.commands.>",
            Self::DeadLetters => "dlq.>",
        }
    }
}

/// Stream and subject names under a deployment prefix, and how many
/// copies of each stream the servers keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    replicas: usize,
}

impl Default for Topology {
    /// The plain names, one copy of each stream.
    fn default() -> Self {
        Self {
            prefix: String::new(),
            replicas: 1,
        }
    }
}

impl Topology {
    /// A topology whose names start with `prefix` (empty: the plain names).
    ///
    /// The prefix may hold letters, digits, `-` and `_` only: it becomes
    /// part of stream names, which cannot contain `.`.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Ok(Self {
                prefix: prefix.to_owned(),
                ..Self::default()
            })
        } else {
            Err("use only letters, digits, '-' and '_'".into())
        }
    }

    /// The same names, with `replicas` copies of each stream: 1 to 5, the
    /// most JetStream keeps.
    pub fn with_replicas(self, replicas: usize) -> Result<Self, String> {
        if (1..=5).contains(&replicas) {
            Ok(Self { replicas, ..self })
        } else {
            Err("JetStream keeps 1 to 5 copies of a stream".into())
        }
    }

    /// Reads `NATS_PREFIX` (empty by default) and `NATS_STREAM_REPLICAS`
    /// (1 by default).
    pub fn from_env(env: &settings::Env) -> Result<Self, settings::ConfigError> {
        let invalid = |name: &'static str, value: String| {
            move |reason| settings::ConfigError::Invalid {
                name: name.into(),
                value,
                reason,
            }
        };
        let prefix = env.string_or("NATS_PREFIX", "");
        let replicas: usize = env.parse_or("NATS_STREAM_REPLICAS", 1)?;
        Self::new(&prefix)
            .map_err(invalid("NATS_PREFIX", prefix.clone()))?
            .with_replicas(replicas)
            .map_err(invalid("NATS_STREAM_REPLICAS", replicas.to_string()))
    }

    /// How many copies of each stream the servers keep.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full subject for a base subject such as `orders.events.order_paid`.
    pub fn subject(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_owned()
        } else {
            format!("{}.{base}", self.prefix)
        }
    }

    /// The base subject of a full subject (the inverse of [`Self::subject`]).
    pub fn base_subject<'a>(&self, subject: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            subject
        } else {
            subject
                .strip_prefix(&self.prefix)
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(subject)
        }
    }

    /// The stream's name, e.g. `ORDER_EVENTS` or `p_ORDER_EVENTS`.
    pub fn stream(&self, kind: StreamKind) -> String {
        if self.prefix.is_empty() {
            kind.base_name().to_owned()
        } else {
            format!("{}_{}", self.prefix, kind.base_name())
        }
    }

    /// A durable consumer name, e.g. `inventory` or `p_inventory`.
    pub fn durable(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}_{name}", self.prefix)
        }
    }

    /// The configuration `provision` converges the stream to (the table
    /// in the module docs says why).
    pub fn stream_config(&self, kind: StreamKind, duplicate_window: Duration) -> Config {
        let retention = match kind {
            StreamKind::NotifyCommands => RetentionPolicy::WorkQueue,
            _ => RetentionPolicy::Limits,
        };
        let (max_age, discard, max_messages) = match kind.limits() {
            Limits::Expire(age) => (age, DiscardPolicy::Old, -1),
            Limits::RefuseBeyond(messages) => (Duration::ZERO, DiscardPolicy::New, messages),
        };
        Config {
            name: self.stream(kind),
            subjects: vec![self.subject(kind.base_subject())],
            retention,
            max_age,
            discard,
            max_messages,
            storage: StorageType::File,
            num_replicas: self.replicas,
            duplicate_window,
            ..Config::default()
        }
    }
}

/// How a stream bounds what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// Messages older than this expire, silently: only for logs whose
    /// consumers keep up and whose rebuild checks what is left.
    Expire(Duration),
    /// No expiry; beyond this many messages a publish is refused, so the
    /// publisher sees the error and retries.
    RefuseBeyond(i64),
}

impl StreamKind {
    /// The retention decided for the stream (module docs).
    pub fn limits(self) -> Limits {
        const DAY: Duration = Duration::from_hours(24);
        match self {
            Self::OrderEvents | Self::InventoryEvents => Limits::Expire(7 * DAY),
            Self::NotifyCommands => Limits::RefuseBeyond(1_000_000),
            Self::DeadLetters => Limits::RefuseBeyond(100_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_separates_names_and_subjects() {
        let t = Topology::new("t1").unwrap();
        assert_eq!(t.stream(StreamKind::OrderEvents), "t1_ORDER_EVENTS");
        assert_eq!(
            t.subject("orders.events.order_paid"),
            "t1.orders.events.order_paid"
        );
        assert_eq!(
            t.base_subject("t1.orders.events.order_paid"),
            "orders.events.order_paid"
        );
        let plain = Topology::default();
        assert_eq!(plain.stream(StreamKind::DeadLetters), "DEAD_LETTERS");
        assert_eq!(plain.subject("dlq.x"), "dlq.x");
    }

    #[test]
    fn every_stream_gets_the_replicas_asked_for() {
        let window = Duration::from_mins(10);
        assert_eq!(
            Topology::default()
                .stream_config(StreamKind::OrderEvents, window)
                .num_replicas,
            1
        );
        let cluster = Topology::new("t").unwrap().with_replicas(3).unwrap();
        for kind in StreamKind::ALL {
            assert_eq!(cluster.stream_config(kind, window).num_replicas, 3);
        }
        assert!(Topology::default().with_replicas(0).is_err());
        assert!(Topology::default().with_replicas(6).is_err());
    }

    #[test]
    fn prefixes_cannot_break_stream_names() {
        assert!(Topology::new("a.b").is_err());
        assert!(Topology::new("a b").is_err());
    }

    #[test]
    fn commands_use_a_work_queue_and_events_a_log() {
        let t = Topology::default();
        let window = Duration::from_mins(10);
        assert_eq!(
            t.stream_config(StreamKind::NotifyCommands, window)
                .retention,
            RetentionPolicy::WorkQueue
        );
        assert_eq!(
            t.stream_config(StreamKind::OrderEvents, window).retention,
            RetentionPolicy::Limits
        );
        assert_eq!(
            t.stream_config(StreamKind::OrderEvents, window)
                .duplicate_window,
            window
        );
    }

    #[test]
    fn work_queue_commands_and_dead_letters_never_expire_and_refuse_when_full() {
        let t = Topology::default();
        for kind in [StreamKind::NotifyCommands, StreamKind::DeadLetters] {
            let config = t.stream_config(kind, Duration::from_mins(10));
            assert_eq!(config.max_age, Duration::ZERO, "{kind:?} must not expire");
            assert_eq!(
                config.discard,
                DiscardPolicy::New,
                "{kind:?} must refuse, not drop"
            );
            assert!(config.max_messages > 0, "{kind:?} is bounded");
        }
    }

    #[test]
    fn event_logs_expire_after_seven_days_oldest_first() {
        let t = Topology::default();
        for kind in [StreamKind::OrderEvents, StreamKind::InventoryEvents] {
            let config = t.stream_config(kind, Duration::from_mins(10));
            assert_eq!(config.max_age, Duration::from_hours(7 * 24), "{kind:?}");
            assert_eq!(config.discard, DiscardPolicy::Old, "{kind:?}");
            assert_eq!(config.max_messages, -1, "{kind:?}: bounded by age alone");
        }
    }
}
