//! Serving HTTP with limits a slow or greedy client cannot get around.
//!
//! `axum::serve` is the easy way to run a router, but it sets no timer, and
//! without one hyper reads request headers for as long as the client
//! likes: one client that opens connections and sends a byte a minute (a
//! "slowloris") holds a task and a socket each, for ever. It also accepts
//! every connection it can. [`serve`] runs the same router on hyper's HTTP/1
//! connection directly, with:
//!
//! - a **header-read timeout** (`HTTP_HEADER_READ_TIMEOUT`, 5 s): a request
//!   whose headers have not all arrived by then is cut off. hyper applies
//!   the same timer while a kept-alive connection waits for its next
//!   request, so it is also the **idle keep-alive limit**;
//! - a **connection cap** (`HTTP_MAX_CONNECTIONS`, 1024): at the cap, the
//!   server stops accepting, and new connections wait in the kernel's
//!   backlog instead of costing memory here. Admission control
//!   (`crate::admission`) limits requests; this limits sockets;
//! - **graceful shutdown**: on cancellation, no new connections; requests in
//!   flight finish (each connection closes after its current response),
//!   for up to [`SHUTDOWN_GRACE`].
//!
//! The peer address reaches the handlers as axum's `ConnectInfo`, as with
//! `into_make_service_with_connect_info`, for the per-client rate limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use settings::{ConfigError, Env};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The longest wait for requests in flight after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time for a client to send a request's headers, and the longest a
    /// kept-alive connection may sit idle (`HTTP_HEADER_READ_TIMEOUT`,
    /// default 5 s).
    pub header_read_timeout: Duration,
    /// Open connections at most (`HTTP_MAX_CONNECTIONS`, default 1024).
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
        }
    }
}

impl ServeLimits {
    /// Reads `HTTP_HEADER_READ_TIMEOUT` and `HTTP_MAX_CONNECTIONS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let limits = Self {
            header_read_timeout: env
                .duration_or("HTTP_HEADER_READ_TIMEOUT", defaults.header_read_timeout)?,
            max_connections: env.parse_or("HTTP_MAX_CONNECTIONS", defaults.max_connections)?,
        };
        if limits.header_read_timeout.is_zero() {
            return Err(invalid(
                "HTTP_HEADER_READ_TIMEOUT",
                env,
                "expected more than 0s",
            ));
        }
        if limits.max_connections == 0 {
            return Err(invalid("HTTP_MAX_CONNECTIONS", env, "expected at least 1"));
        }
        Ok(limits)
    }
}

fn invalid(name: &str, env: &Env, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: env.get(name).unwrap_or_default().to_owned(),
        reason: reason.to_owned(),
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets
/// requests in flight finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        // A free slot first: at the cap, connections wait in the backlog.
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = tower::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response)
            }
        });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts and clients that hang up land here; not ours.
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period; dropping them");
    }
    Ok(())
}

#[cfg(test)]
// Tests of the plumbing mount throwaway routes that no document describes.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn running(limits: ServeLimits) -> (SocketAddr, CancellationToken) {
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, router, limits, shutdown.clone()));
        (addr, shutdown)
    }

    /// Reads until the server closes the connection; how long that took.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> Duration {
        let started = Instant::now();
        let mut buf = [0_u8; 1024];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("the server closes the connection within 10 s");
            if matches!(read, Ok(0) | Err(_)) {
                return started.elapsed();
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (addr, _shutdown) = running(limits).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // …and never the blank line that ends the headers.
        let took = until_closed(&mut slow).await;
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (addr, _shutdown) = running(limits).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0_u8; 1024];
        let n = client.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("127.0.0.1"),
            "the handler saw the peer: {answer}"
        );
        // Keep-alive, then silence: the server closes it.
        let took = until_closed(&mut client).await;
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn at_the_connection_cap_a_new_connection_waits_for_a_free_slot() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: 1,
        };
        let (addr, _shutdown) = running(limits).await;
        let get = |mut stream: tokio::net::TcpStream| async move {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        // The one slot is taken by a connection that says nothing.
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let answer = get(second).await;
        // Served only once the idle one was cut off (1 s), not before.
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            started.elapsed() >= Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );
    }
}
