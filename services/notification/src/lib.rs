//! The notification service: e-mails about orders, once per order and
//! kind.
//!
//! Two halves, joined by a work queue:
//! - [`commands`]: a consumer of `ORDER_EVENTS` turns `OrderPaid`,
//!   `OrderConfirmed` and `OrderRefunded` into a `notifications` row and a
//!   `SendEmail` *command*, written through this service's outbox and
//!   published by a relay to `NOTIFY_COMMANDS` (work-queue retention);
//! - [`worker`]: a pool of workers takes commands off that queue at a
//!   configured rate and sends them through a [`mail`] provider (SMTP, or a
//!   log file): it claims the row, sends with no transaction open, and
//!   marks the row sent at once, before the transaction that records the
//!   command done.
//!
//! Event versus command: an event states a fact to whoever listens
//! (inventory, reporting and this service each read every `OrderPaid`); a
//! command asks exactly one worker to do one thing, and leaves the queue
//! once done.
//!
//! The boundary a transaction cannot close: sending over SMTP and writing
//! to Postgres are not one transaction. The worker sends, then records; if
//! it dies in between, its claim lapses (after a minute) and the command
//! comes back to another worker. What closes it: that worker sees the
//! lapsed claim and asks the provider whether it accepted the e-mail (by
//! its `Message-ID`, one per order and kind) before sending it again
//! ([`mail::Mailer::accepted`]); only a provider that cannot be asked (SMTP
//! without `SMTP_LOOKUP_URL`) sends it twice. What narrows it further: the
//! row is claimed (`sent_at` unset, no live claim) before sending, so only
//! a crash in that instant leaves the question, never a redelivery after
//! the commit nor a second worker meanwhile; the record is retried while
//! Postgres restarts; and the primary key (order, kind) means no event,
//! however often delivered, creates a second e-mail. A delivery that meets another worker's claim
//! waits for it without using up its retries (`HandlerError::Busy`).
//!
//! Layout: [`config`], [`commands`], [`worker`], [`mail`], [`startup`] (the
//! [`Notification`] service: what it connects and runs).

pub mod commands;
pub mod config;
pub mod mail;
pub mod startup;
pub mod worker;

pub use config::Config;
pub use startup::Notification;

/// Migrations of the notification database, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/notification");
