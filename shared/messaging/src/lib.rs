//! NATS JetStream topology and conventions shared by the relay and every
//! consumer (`docs/design.md` §4, Messaging topology).
//!
//! - [`Topology`]: stream and subject names under a deployment prefix, so
//!   tests (and several deployments) can share one NATS server;
//! - [`provision`]: creates or updates the four streams, idempotently;
//! - [`headers`]: the header names every message carries;
//! - [`connect`]: a client that keeps reconnecting on its own.

#![warn(missing_docs)]

pub mod headers;
mod topology;

use std::time::Duration;

pub use topology::{Limits, StreamKind, Topology};

/// A NATS or JetStream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The URL could not be used.
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// The server URL, credentials redacted.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A stream could not be created or brought up to date.
    #[error("cannot provision stream {stream}: {reason}")]
    Provision {
        /// The stream name.
        stream: String,
        /// What the server said.
        reason: String,
    },
}

/// Where a service finds NATS, and the names it uses there.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `NATS_URL` (default `nats://127.0.0.1:4222`), with credentials if
    /// the server wants them.
    pub url: settings::SecretUrl,
    /// Stream, subject and consumer names (`NATS_PREFIX`).
    pub topology: Topology,
}

impl NatsConfig {
    /// Reads `NATS_URL` and `NATS_PREFIX`.
    pub fn from_env(env: &settings::Env) -> Result<Self, settings::ConfigError> {
        Ok(Self {
            url: env.url_or("NATS_URL", "nats://127.0.0.1:4222"),
            topology: Topology::from_env(env)?,
        })
    }
}

/// Connects to NATS with a client that retries the first connection and
/// every reconnection by itself, forever.
///
/// A service must start (and answer `/readyz` with "not ready") while NATS
/// is down, rather than crash-loop, so the initial connection is retried in
/// the background too; the client buffers nothing unboundedly: publishes
/// made while disconnected time out and are retried by the caller.
pub async fn connect(
    url: &settings::SecretUrl,
    client_name: &str,
) -> Result<async_nats::Client, MessagingError> {
    let (addresses, options) = options_for(url)?;
    options
        .name(client_name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats connected"),
                async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                other => tracing::debug!(event = %other, "nats event"),
            }
        })
        .connect(addresses)
        .await
        .map_err(|source| MessagingError::Connect {
            url: url.to_string(),
            source,
        })
}

/// The server addresses of `url` and connect options carrying its
/// credentials, for callers that set their own timeouts (`ticketctl`).
///
/// `url` may list several servers of one cluster, separated by commas
/// (`nats://u:p@nats-1:4222,nats://u:p@nats-2:4222`): the client starts
/// with whichever answers, so a service can start while one node is down.
/// (Once connected it also learns the cluster's other servers from the
/// one it reached.)
///
/// async-nats sends only the credentials given to `ConnectOptions`, not
/// the ones in the URL, so a `nats://user:password@host` (one NATS user
/// per service) or `nats://token@host` is taken apart here: the first
/// server that names credentials gives them for all.
pub fn options_for(
    url: &settings::SecretUrl,
) -> Result<(Vec<async_nats::ServerAddr>, async_nats::ConnectOptions), MessagingError> {
    let addresses = url
        .expose_each()
        .into_iter()
        .map(|one| one.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, std::io::Error>>()
        .map_err(|e| MessagingError::Connect {
            url: url.to_string(),
            source: async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ),
        })?;
    let credentials = addresses
        .iter()
        .find(|a| a.username().is_some())
        .map(|a| (a.username(), a.password()));
    let options = match credentials {
        Some((Some(user), Some(password))) => async_nats::ConnectOptions::new()
            .user_and_password(percent_decoded(user), percent_decoded(password)),
        Some((Some(token), None)) => {
            async_nats::ConnectOptions::new().token(percent_decoded(token))
        }
        _ => async_nats::ConnectOptions::new(),
    };
    Ok((addresses, options))
}

/// A URL's user or password as written before percent-encoding (a
/// password may hold `@` or `:`, which a URL carries as `%40`, `%3A`).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_stream_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Readiness probe: the client is connected, or why not.
pub fn check_connected(client: &async_nats::Client) -> Result<(), String> {
    if is_connected(client) {
        Ok(())
    } else {
        Err("not connected".to_owned())
    }
}

/// True while the client has a live connection.
pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// Creates each stream of `topology` that is missing, and brings the
/// fields this code owns (subjects, duplicate window, max age, discard
/// policy) up to date on those that exist, so every start converges on the
/// same topology, retention decisions included (the `topology` module docs).
///
/// A stream that should refuse messages beyond a count but has no message
/// limit gets ours; a limit an operator set is kept, as are the other
/// settings an operator tuned (byte limits, compression). Replicas only go
/// up: fewer than the topology asks for are raised (a cluster grown from
/// one node), more are an operator's choice and kept.
/// Retention and storage cannot be changed on a live stream; a mismatch
/// there is reported, not "fixed".
///
/// `duplicate_window` must cover the publisher's retry horizon: a message
/// republished after the window is stored twice (consumers are idempotent
/// anyway, but the stream should not rely on that).
pub async fn provision(
    js: &async_nats::jetstream::Context,
    topology: &Topology,
    duplicate_window: Duration,
) -> Result<(), MessagingError> {
    for kind in StreamKind::ALL {
        let desired = topology.stream_config(kind, duplicate_window);
        let name = desired.name.clone();
        let failed = |reason: String| MessagingError::Provision {
            stream: name.clone(),
            reason,
        };
        match js.get_stream(&desired.name).await {
            Ok(mut stream) => {
                let current = stream
                    .info()
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .config
                    .clone();
                if current.retention != desired.retention || current.storage != desired.storage {
                    return Err(failed(format!(
                        "exists with retention {:?} and storage {:?}, expected {:?} and {:?}; \
                         recreate it to change them",
                        current.retention, current.storage, desired.retention, desired.storage
                    )));
                }
                let owned_differ = current.subjects != desired.subjects
                    || current.duplicate_window != desired.duplicate_window
                    || current.max_age != desired.max_age
                    || current.discard != desired.discard;
                let limit_missing = desired.max_messages > 0 && current.max_messages <= 0;
                let too_few_copies = current.num_replicas < desired.num_replicas;
                if owned_differ || limit_missing || too_few_copies {
                    let max_messages = if limit_missing {
                        desired.max_messages
                    } else {
                        current.max_messages
                    };
                    let patched = async_nats::jetstream::stream::Config {
                        subjects: desired.subjects.clone(),
                        duplicate_window: desired.duplicate_window,
                        max_age: desired.max_age,
                        discard: desired.discard,
                        max_messages,
                        num_replicas: current.num_replicas.max(desired.num_replicas),
                        ..current
                    };
                    js.update_stream(&patched)
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                }
            }
            Err(e) if is_stream_not_found(&e) => {
                if let Err(e) = js.create_stream(desired.clone()).await {
                    // Another instance may have created it since we looked.
                    if js.get_stream(&desired.name).await.is_err() {
                        return Err(failed(e.to_string()));
                    }
                }
            }
            Err(e) => return Err(failed(e.to_string())),
        }
        tracing::debug!(stream = %desired.name, "stream provisioned");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_a_url_are_percent_decoded() {
        assert_eq!(super::percent_decoded("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(super::percent_decoded("plain"), "plain");
        assert_eq!(super::percent_decoded("100%"), "100%");
    }

    #[test]
    fn a_url_may_list_the_servers_of_a_cluster() {
        let url = settings::SecretUrl::new("nats://u:p%40ss@nats-1:4222,nats://nats-2:4222");
        let (addresses, _) = super::options_for(&url).unwrap();
        let hosts: Vec<_> = addresses.iter().map(|a| a.host().to_owned()).collect();
        assert_eq!(hosts, ["nats-1", "nats-2"]);
        let one = settings::SecretUrl::new("nats://127.0.0.1:4222");
        assert_eq!(super::options_for(&one).unwrap().0.len(), 1);
        assert!(super::options_for(&settings::SecretUrl::new("nats://a:1,nats://::")).is_err());
    }
}
