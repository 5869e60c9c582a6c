//! [`Builder`]: what a service hands over while it builds, and the binding
//! that turns it into an [`App`].

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use httpkit::health::Readiness;
use messaging::NatsConfig;
use pgkit::DatabaseConfig;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::app::{App, Task};
use crate::metrics::{HttpMetrics, Metrics, ScrapeHook};
use crate::ops::{self, Check, Ops};
use crate::{HttpConfig, StartupError};

/// Collects a service's connections, checks, tasks and metrics while its
/// `build` runs; [`Builder::serve`] binds and returns the [`App`].
pub struct Builder {
    name: &'static str,
    http: HttpConfig,
    registry: Registry,
    hooks: Vec<ScrapeHook>,
    checks: Vec<Check>,
    tasks: Vec<Task>,
    pools: Vec<PgPool>,
    lent: http::Extensions,
}

impl Builder {
    /// Starts building service `name`, to be served as `http` says.
    pub fn new(name: &'static str, http: HttpConfig) -> Self {
        Self {
            name,
            http,
            registry: Registry::default(),
            hooks: Vec::new(),
            checks: Vec::new(),
            tasks: Vec::new(),
            pools: Vec::new(),
            lent: http::Extensions::new(),
        }
    }

    /// Connects to the service's own database (creating it on first start,
    /// retrying while Postgres starts: `pgkit::connect`) and migrates it.
    /// Readiness then checks it, and the pool is closed at stop.
    pub async fn postgres(
        &mut self,
        database: &DatabaseConfig,
        migrator: &'static Migrator,
    ) -> Result<PgPool, StartupError> {
        let db = pgkit::connect(&database.url, database.pool).await?;
        migrator
            .run(&db)
            .await
            .map_err(|source| StartupError::Migrate {
                service: self.name,
                source,
            })?;
        self.watch_postgres(db.clone());
        Ok(db)
    }

    /// A second pool on the service's database, of
    /// `database.consumer_connections`, for its event consumers alone.
    ///
    /// Sharing one pool, a sale's requests took the connections the
    /// consumers needed to apply its payments: the inventory consumer applied
    /// 11 events/s under load against 109/s without, and its backlog grew
    /// for as long as the sale lasted (docs/soak/2026-11-30-native-100k-attempt.md).
    /// Closed at stop, after the tasks; readiness checks the main pool.
    pub async fn postgres_for_consumers(
        &mut self,
        database: &DatabaseConfig,
    ) -> Result<PgPool, StartupError> {
        let settings = pgkit::PoolSettings {
            max_connections: database.consumer_connections,
            ..database.pool
        };
        let db = pgkit::connect(&database.url, settings).await?;
        self.close_at_stop(db.clone());
        Ok(db)
    }

    /// Checks `db` for readiness (`select 1`) and closes it at stop: for a
    /// pool made another way.
    pub fn watch_postgres(&mut self, db: PgPool) {
        let ping = db.clone();
        self.check("postgres", move || {
            let db = ping.clone();
            async move { pgkit::ping(&db).await }
        });
        self.close_at_stop(db);
    }

    /// Closes `db` at stop, after the tasks have finished with it; for a
    /// pool whose readiness the service checks its own way.
    pub fn close_at_stop(&mut self, db: PgPool) {
        self.pools.push(db);
    }

    /// Connects to NATS as this service; readiness then checks the client.
    pub async fn nats(&mut self, nats: &NatsConfig) -> Result<async_nats::Client, StartupError> {
        let nats = messaging::connect(&nats.url, self.name).await?;
        self.watch_nats(nats.clone());
        Ok(nats)
    }

    /// Checks a NATS client for readiness (see [`Builder::nats`]).
    pub fn watch_nats(&mut self, nats: async_nats::Client) {
        self.check("nats", move || {
            let connected = messaging::check_connected(&nats);
            async move { connected }
        });
    }

    /// A dependency requests need: while `probe` fails, `/readyz` is 503.
    pub fn check<F, Fut>(&mut self, name: &'static str, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.verdict(name, true, probe);
    }

    /// A dependency the service can do without: while `probe` fails,
    /// `/readyz` stays 200 and says `degraded` (`httpkit::health`).
    pub fn degraded<F, Fut>(&mut self, name: &'static str, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.verdict(name, false, probe);
    }

    fn verdict<F, Fut>(&mut self, name: &'static str, required: bool, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.declare(name, required, move || {
            probe().map(move |result| {
                if required {
                    Readiness::new().check(name, result)
                } else {
                    Readiness::new().degraded(name, result)
                }
            })
        });
    }

    /// A check that reports several verdicts at once (the relay loop's
    /// problems); `name` stands for them in the docs and on a timeout.
    pub fn readiness<F, Fut>(&mut self, name: &'static str, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Readiness> + Send + 'static,
    {
        self.declare(name, true, probe);
    }

    fn declare<F, Fut>(&mut self, name: &'static str, required: bool, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Readiness> + Send + 'static,
    {
        self.checks.push(Check {
            name,
            required,
            probe: Arc::new(move || probe().boxed()),
        });
    }

    /// A background task (a consumer, a listener): started when the
    /// service runs, told to stop through its token on shutdown, and
    /// awaited before the pools close.
    pub fn task<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |token| task(token).boxed()));
    }

    /// Lends `value` to tests and tools (a pool, a cache), which get it by
    /// its type from [`App::lent`]. One value per type.
    pub fn lend<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.lent.insert(value);
    }

    /// The service's metrics registry, to register its own metrics in.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Runs `hook` before each scrape, to refresh measured gauges.
    pub fn on_scrape<F, Fut>(&mut self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.push(Arc::new(move || hook().boxed()));
    }

    /// Adds the operational routes to `api`, wraps everything in the
    /// standard middleware and RED metrics, and binds. `api` comes with
    /// its state and its own layers (authentication, admission control)
    /// applied.
    pub async fn serve(mut self, api: OpenApiRouter) -> Result<App, StartupError> {
        let http_metrics = HttpMetrics::register(&mut self.registry);
        let checks: Arc<[Check]> = self.checks.into();
        let ops_routes = ops::routes(Ops {
            checks: checks.clone(),
            metrics: Metrics::new(self.registry, self.hooks),
        });
        let (router, mut openapi) = api.merge(ops_routes).split_for_parts();
        ops::document(&checks, &mut openapi);
        httpkit::docs::document(&mut openapi);
        let router = router
            .merge(httpkit::docs::routes(&openapi))
            .fallback(ops::no_such_route);
        let router = httpkit::layers::standard(router, self.http.limits).layer(
            axum::middleware::from_fn_with_state(http_metrics, HttpMetrics::record),
        );
        let listener =
            TcpListener::bind(self.http.addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: self.http.addr,
                    source,
                })?;
        Ok(App {
            name: self.name,
            listener,
            router,
            openapi,
            serve: self.http.serve,
            tasks: self.tasks,
            pools: self.pools,
            lent: self.lent,
        })
    }
}
