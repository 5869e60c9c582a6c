//! Names and configurations of the streams (`docs/design.md` §4, Messaging topology).
//!
//! | stream | subjects | retention | why |
//! |---|---|---|---|
//! | `ORDER_EVENTS` | `orders.events.>` | limits, 7 days | a replayable fact log; several independent consumers |
//! | `INVENTORY_EVENTS` | `inventory.events.>` | limits, 7 days | inventory's facts back to orders |
//! | `NOTIFY_COMMANDS` | `notify.commands.>` | work queue | tasks for one worker group, gone once acked |
//! | `DEAD_LETTERS` | `dlq.>` | limits, 30 days | poisoned messages, kept for repair and redrive |
//!
//! All streams use file storage. With a prefix `p`, subjects become `p.…`
//! and stream names `p_…`, so a test's topology never touches another's.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};

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

/// Stream and subject names under a deployment prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    prefix: String,
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
            })
        } else {
            Err("use only letters, digits, '-' and '_'".into())
        }
    }

    /// Reads `NATS_PREFIX` (empty by default).
    pub fn from_env(env: &settings::Env) -> Result<Self, settings::ConfigError> {
        let prefix = env.string_or("NATS_PREFIX", "");
        Self::new(&prefix).map_err(|reason| settings::ConfigError::Invalid {
            name: "NATS_PREFIX".into(),
            value: prefix.clone(),
            reason,
        })
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

    /// The configuration `provision` converges the stream to.
    pub fn stream_config(&self, kind: StreamKind, duplicate_window: Duration) -> Config {
        const DAY: Duration = Duration::from_hours(24);
        let (retention, max_age) = match kind {
            StreamKind::OrderEvents | StreamKind::InventoryEvents => {
                (RetentionPolicy::Limits, 7 * DAY)
            }
            StreamKind::NotifyCommands => (RetentionPolicy::WorkQueue, 7 * DAY),
            StreamKind::DeadLetters => (RetentionPolicy::Limits, 30 * DAY),
        };
        Config {
            name: self.stream(kind),
            subjects: vec![self.subject(kind.base_subject())],
            retention,
            max_age,
            storage: StorageType::File,
            duplicate_window,
            ..Config::default()
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
}
