//! Mail providers: plain SMTP, or a log for local runs; optionally flaky;
//! at the provider's rate (`EMAIL_RATE_PER_SECOND`).
//!
//! A provider can also be asked whether it accepted an e-mail
//! ([`Mailer::accepted`]): the worker asks when it takes over an e-mail
//! whose earlier worker died between handing it over and recording it
//! sent (`crate::worker`), so that a crash in that instant does not send
//! it twice. Each e-mail carries a `Message-ID` made from its order and
//! kind, so the question has an exact answer: the log provider finds the
//! reference in its file; SMTP asks the provider's message API when
//! `SMTP_LOOKUP_URL` names one (Mailpit's search, here; a hosted provider
//! has an equivalent, such as a message log searchable by `Message-ID`).
//! Without one the answer is [`Accepted::Unknown`] and the e-mail is sent
//! again: the duplicate the crate docs describe.
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

/// What the provider's own record says of an e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The provider has it: it went out.
    Yes,
    /// The provider has no such message: it did not go out.
    No,
    /// The provider cannot tell (SMTP without `SMTP_LOOKUP_URL`, or the
    /// log provider writing to the service's own log).
    Unknown,
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
    Smtp {
        smtp: AsyncSmtpTransport<Tokio1Executor>,
        lookup: Option<MessageApi>,
    },
}

/// A provider's message API that finds a message by its `Message-ID`:
/// Mailpit's `GET /api/v1/search?query=message-id:<id>`.
struct MessageApi {
    http: reqwest::Client,
    base: String,
}

/// How long the provider's message API may take to answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The domain of the e-mails' `Message-ID`s.
const MESSAGE_ID_DOMAIN: &str = "tickets.example.com";

/// The `Message-ID` of an e-mail, without its angle brackets: one per
/// (order, kind), so a provider can be asked for it.
pub fn message_id(email: &Email) -> String {
    format!("{}@{MESSAGE_ID_DOMAIN}", email.reference)
}

impl Mailer {
    /// A mailer for `provider`, sending as `from`, at most
    /// `rate_per_second` e-mails a second, failing `fail_share` of them.
    pub fn new(provider: &Provider, from: &str, rate_per_second: u32, fail_share: f64) -> Self {
        let provider = match provider {
            Provider::Log { path } => Transport::Log(path.clone()),
            Provider::Smtp { host, port, lookup } => Transport::Smtp {
                smtp: AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(*port)
                    .timeout(Some(Duration::from_secs(10)))
                    .build(),
                lookup: lookup.as_ref().map(|base| MessageApi {
                    http: reqwest::Client::builder()
                        .timeout(LOOKUP_TIMEOUT)
                        .build()
                        .unwrap_or_default(),
                    base: base.clone(),
                }),
            },
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
            Transport::Smtp { smtp, .. } => {
                let message = self.message(email)?;
                smtp.send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| MailError::Provider(e.to_string()))
            }
        }
    }

    /// Whether the provider accepted `email` (see the module docs). An
    /// error means the provider's record could not be read: the caller
    /// must not send meanwhile.
    pub async fn accepted(&self, email: &Email) -> Result<Accepted, MailError> {
        match &self.provider {
            Transport::Log(None) | Transport::Smtp { lookup: None, .. } => Ok(Accepted::Unknown),
            Transport::Log(Some(path)) => logged(path, email).await,
            Transport::Smtp {
                lookup: Some(api), ..
            } => api.find(email).await,
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
            .message_id(Some(format!("<{}>", message_id(email))))
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

/// Whether the log file holds a line with `email`'s reference.
async fn logged(path: &PathBuf, email: &Email) -> Result<Accepted, MailError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Accepted::No),
        Err(e) => return Err(MailError::Provider(format!("{}: {e}", path.display()))),
    };
    let found = text.lines().any(|line| {
        serde_json::from_str::<serde_json::Value>(line)
            .is_ok_and(|sent| sent["reference"] == email.reference.as_str())
    });
    Ok(if found { Accepted::Yes } else { Accepted::No })
}

/// A page of Mailpit's search: only the count of matches is read.
#[derive(serde::Deserialize)]
struct SearchPage {
    messages_count: u64,
}

impl MessageApi {
    async fn find(&self, email: &Email) -> Result<Accepted, MailError> {
        let url = format!(
            "{}/api/v1/search?query=message-id:{}",
            self.base,
            message_id(email)
        );
        let failed = |e: reqwest::Error| MailError::Provider(format!("message API {url}: {e}"));
        let page: SearchPage = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)?;
        Ok(if page.messages_count > 0 {
            Accepted::Yes
        } else {
            Accepted::No
        })
    }
}
