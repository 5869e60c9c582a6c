//! NATS JetStream topology and conventions shared by the relay and every
//! consumer (DESIGN §4).
//!
//! - [`Topology`]: stream and subject names under a deployment prefix, so
//!   tests (and several deployments) can share one NATS server;
//! - [`provision`]: creates or updates the four streams, idempotently;
//! - [`headers`]: the header names every message carries;
//! - [`connect`]: a client that keeps reconnecting on its own.

pub mod headers;
mod topology;

use std::time::Duration;

pub use topology::{StreamKind, Topology};

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
    async_nats::ConnectOptions::new()
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
        .connect(url.expose())
        .await
        .map_err(|source| MessagingError::Connect {
            url: url.to_string(),
            source,
        })
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
/// fields this code owns (subjects, duplicate window, max age) up to date on
/// those that exist, so every start converges on the same topology.
///
/// Other settings an operator tuned (replicas, byte or message limits,
/// compression) are left alone. Retention and storage cannot be changed on
/// a live stream; a mismatch there is reported, not "fixed".
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
                    || current.max_age != desired.max_age;
                if owned_differ {
                    let patched = async_nats::jetstream::stream::Config {
                        subjects: desired.subjects.clone(),
                        duplicate_window: desired.duplicate_window,
                        max_age: desired.max_age,
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
