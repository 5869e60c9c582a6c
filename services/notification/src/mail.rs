//! Mail providers: plain SMTP, or a log for local runs; optionally flaky;
//! at the provider's rate (`EMAIL_RATE_PER_SECOND`).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `email_rate_limit_wait_seconds_total` | counter | time the senders waited for a slot under the rate |
//!
//! When the rate is what holds the e-mails back, this grows by about
//! `WORKERS` seconds a second, and the backlog shows in the senders'
//! `consumer_pending` and `consumer_ack_pending` (consumer
//! `notification-workers`).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

use crate::config::Provider;

/// An e-mail to send.
#[derive(Debug, Clone)]
pub struct Email {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// A stable id, so that a catcher (or a human) can spot a duplicate.
    pub reference: String,
}

/// Sending failed; always worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The provider refused or could not be reached.
    #[error("mail provider: {0}")]
    Provider(String),
    /// `EMAIL_FAIL_SHARE` decided this send fails.
    #[error("injected failure (EMAIL_FAIL_SHARE)")]
    Injected,
}

/// Sends e-mails at a bounded rate.
pub struct Mailer {
    provider: Transport,
    from: String,
    fail_share: f64,
    interval: Duration,
    next_slot: Mutex<tokio::time::Instant>,
    waited: Counter<f64, AtomicU64>,
}

enum Transport {
    Log(Option<PathBuf>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Mailer {
    /// A mailer for `provider`, sending as `from`, at most
    /// `rate_per_second` e-mails a second, failing `fail_share` of them.
    pub fn new(provider: &Provider, from: &str, rate_per_second: u32, fail_share: f64) -> Self {
        let provider = match provider {
            Provider::Log { path } => Transport::Log(path.clone()),
            Provider::Smtp { host, port } => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(*port)
                    .timeout(Some(Duration::from_secs(10)))
                    .build(),
            ),
        };
        Self {
            provider,
            from: from.to_owned(),
            fail_share,
            interval: Duration::from_secs(1) / rate_per_second.max(1),
            next_slot: Mutex::new(tokio::time::Instant::now()),
            waited: Counter::default(),
        }
    }

    /// Exposes `email_rate_limit_wait_seconds_total` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to a counter's name.
        registry.register(
            "email_rate_limit_wait_seconds",
            "Time the senders waited for a slot under EMAIL_RATE_PER_SECOND.",
            self.waited.clone(),
        );
    }

    /// Sends, once the caller has waited for its slot with
    /// [`Mailer::wait_for_slot`] (two steps, so that the worker can claim
    /// the e-mail in between, when it is sure to send at once).
    pub async fn deliver(&self, email: &Email) -> Result<(), MailError> {
        if self.fail_share > 0.0 && rand::random::<f64>() < self.fail_share {
            return Err(MailError::Injected);
        }
        match &self.provider {
            Transport::Log(path) => self.log(path.as_ref(), email).await,
            Transport::Smtp(smtp) => {
                let message = self.message(email)?;
                smtp.send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| MailError::Provider(e.to_string()))
            }
        }
    }

    /// Waits for the next free slot under the rate limit: a token bucket of
    /// one that every worker takes from.
    pub async fn wait_for_slot(&self) {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            self.waited.inc_by((slot - now).as_secs_f64());
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    fn message(&self, email: &Email) -> Result<Message, MailError> {
        let parse = |address: &str| {
            address
                .parse::<Mailbox>()
                .map_err(|e| MailError::Provider(format!("bad address {address:?}: {e}")))
        };
        Message::builder()
            .from(parse(&self.from)?)
            .to(parse(&email.to)?)
            .subject(email.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .message_id(Some(format!("<{}@tickets.example.com>", email.reference)))
            .body(email.body.clone())
            .map_err(|e| MailError::Provider(e.to_string()))
    }

    async fn log(&self, path: Option<&PathBuf>, email: &Email) -> Result<(), MailError> {
        let line = serde_json::json!({
            "from": self.from,
            "to": email.to,
            "subject": email.subject,
            "body": email.body,
            "reference": email.reference,
        })
        .to_string();
        let Some(path) = path else {
            tracing::info!(email = %line, "e-mail (log provider)");
            return Ok(());
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| MailError::Provider(format!("{}: {e}", path.display())))?;
        file.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| MailError::Provider(format!("{}: {e}", path.display())))
    }
}
