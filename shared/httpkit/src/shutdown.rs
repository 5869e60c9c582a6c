//! Graceful shutdown: SIGTERM (what Docker and Kubernetes send) or Ctrl-C
//! cancels one [`CancellationToken`] that every part of a service watches.
//! The HTTP server stops accepting connections and finishes the requests in
//! flight; background tasks finish the unit of work in hand and return.

use tokio_util::sync::CancellationToken;

/// Completes when the process receives SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        // If the handler cannot be installed we cannot be interrupted that
        // way; waiting forever on this branch leaves SIGTERM in charge.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Cancels `token` when a shutdown signal arrives.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        signal().await;
        token.cancel();
    });
}
