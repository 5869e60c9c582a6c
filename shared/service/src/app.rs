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
pub struct App<H = ()> {
    pub(crate) name: &'static str,
    pub(crate) listener: TcpListener,
    pub(crate) router: axum::Router,
    pub(crate) openapi: OpenApi,
    pub(crate) serve: httpkit::serve::ServeLimits,
    pub(crate) tasks: Vec<Task>,
    pub(crate) pools: Vec<PgPool>,
    pub(crate) handles: H,
}

impl<H> App<H> {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// What the service lends to tests and tools.
    pub fn handles(&self) -> &H {
        &self.handles
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
