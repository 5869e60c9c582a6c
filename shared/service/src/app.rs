//! [`App`]: a built service, bound, and the one way every service runs and
//! stops.

use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::openapi::OpenApi;

use crate::ops::{RouteReport, route_report};

/// A background task, started by [`App::run_until_stopped`].
pub(crate) type Task = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// A built service, bound and ready to run.
pub struct App {
    pub(crate) name: &'static str,
    pub(crate) listener: TcpListener,
    pub(crate) router: axum::Router,
    pub(crate) openapi: OpenApi,
    pub(crate) serve: httpkit::serve::ServeLimits,
    pub(crate) tasks: Vec<Task>,
    pub(crate) pools: Vec<PgPool>,
    pub(crate) lent: http::Extensions,
}

impl App {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// What the service lent to tests and tools ([`Builder::lend`]), by
    /// type: `app.lent::<PgPool>()`.
    ///
    /// [`Builder::lend`]: crate::Builder::lend
    pub fn lent<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.lent.get::<T>()
    }

    /// Everything it lent, to keep after [`App::run_until_stopped`] takes
    /// the app.
    pub fn lent_all(&self) -> http::Extensions {
        self.lent.clone()
    }

    /// The API document, as served at `/openapi.json`.
    pub fn openapi(&self) -> &OpenApi {
        &self.openapi
    }

    /// Where the router and its document disagree (both sets empty when
    /// they agree): see [`route_report`].
    pub async fn route_report(&self) -> RouteReport {
        route_report(&self.router, &self.openapi).await
    }

    /// Runs in a task of its own, for a test or a tool that starts a
    /// service in its process; [`Serving::stop`] (or dropping it) stops it.
    pub fn spawn(self) -> Serving {
        let port = self.port();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(self.run_until_stopped(shutdown.clone()));
        Serving {
            port,
            shutdown,
            served: Some(served),
        }
    }

    /// Starts the tasks and serves until `shutdown`; then the requests and
    /// messages in hand finish, the tasks are awaited and the pools closed.
    /// If serving fails, the tasks are stopped too.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let port = self.port();
        let tasks = TaskTracker::new();
        for task in self.tasks {
            tasks.spawn(task(shutdown.clone()));
        }
        tracing::info!(port, "{} listening", self.name);
        let served =
            httpkit::serve::serve(self.listener, self.router, self.serve, shutdown.clone()).await;
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        for pool in self.pools {
            pool.close().await;
        }
        tracing::info!("{} stopped", self.name);
        served
    }
}

/// A service running in a task of this process ([`App::spawn`]).
pub struct Serving {
    port: u16,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Serving {
    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it as a shutdown signal would, and waits until it has: the
    /// requests and messages in hand finish. Its error, if serving failed.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        match self.served.take() {
            Some(served) => served.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
