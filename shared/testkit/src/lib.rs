//! Test support: every test gets its own world on real servers.
//!
//! [`TestPostgres::start`] gives a test a fresh, empty database and drops it
//! when the test ends, so tests run in parallel against one server without
//! seeing each other's rows.
//!
//! Where the server comes from:
//! - `DATABASE_URL` set (CI, and this machine): that server. Any database
//!   in the URL works; the test creates its own next to it.
//! - not set: a Postgres container started with testcontainers, image tag
//!   from the repository's `.env`, removed when the test ends.
//! - neither possible: the test **fails** and says what to set. A test that
//!   silently passes without its server proves nothing.
//!
//! NATS ([`TestNats`], [`RestartableNats`]) and Redis ([`TestRedis`],
//! [`RestartableRedis`]) follow the same rules with `NATS_URL` and
//! `REDIS_URL`.

#![warn(missing_docs)]

pub mod identity;
pub mod nats;
pub mod redis;
mod restartable;
pub mod world;

pub use identity::TestIdentity;
pub use nats::{RestartableNats, TestNats};
pub use redis::{ClusterRedis, RestartableRedis, TestRedis};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt as _};
pub use world::{Answer, Ask, Running, World, operational_routes};

/// The pinned images, shared with `compose.yaml`.
const IMAGES: &str = include_str!("../../../.env");

/// The `name:tag` pinned for `key` in the repository's `.env`.
pub fn pinned_image(key: &str) -> (String, String) {
    let value = IMAGES
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map_or_else(
            || panic!("{key} is not pinned in .env"),
            |(_, v)| v.trim().to_owned(),
        );
    let (name, tag) = value
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{key}={value} in .env needs an explicit tag"));
    (name.to_owned(), tag.to_owned())
}

/// A unique lowercase name fragment for this test: database names, subject
/// and key prefixes.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A database of the test's own, dropped (connections and all) on drop.
pub struct TestPostgres {
    url: String,
    admin_url: String,
    name: String,
    /// Sibling databases made by [`TestPostgres::database`], dropped too.
    siblings: std::sync::Mutex<Vec<String>>,
    // Kept alive for the test; dropping it removes the container.
    _container: Option<ContainerAsync<Postgres>>,
}

impl TestPostgres {
    /// Creates a fresh database; see the module docs for where.
    pub async fn start() -> Self {
        telemetry::init_for_tests();
        let (admin_url, container) = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => (url, None),
            _ => {
                let (container, url) = start_container().await;
                (url, Some(container))
            }
        };
        let name = unique_name("test");
        let mut admin = connect(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
            siblings: std::sync::Mutex::default(),
            _container: container,
        }
    }

    /// The URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of a database of the test's own for `service`, created on
    /// the same server at the first call: several services in one test
    /// each get their own database, as they would in a deployment.
    pub async fn database(&self, service: &str) -> String {
        let name = format!("{}_{service}", self.name);
        let created = self.siblings.lock().expect("not poisoned").contains(&name);
        if !created {
            let mut admin = connect(&self.admin_url).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
            self.siblings
                .lock()
                .expect("not poisoned")
                .push(name.clone());
        }
        with_database(&self.admin_url, &name)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let mut names = std::mem::take(
            &mut *self
                .siblings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        names.push(self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on;
        // a short-lived thread with its own runtime does the async cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async {
                let mut admin = connect(&admin_url).await;
                for name in names {
                    let drop = format!("drop database if exists {name} with (force)");
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await
                    {
                        eprintln!("warning: could not drop test database {name}: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("cannot connect to Postgres at DATABASE_URL ({e}); is the server running?")
    })
}

async fn start_container() -> (ContainerAsync<Postgres>, String) {
    let (name, tag) = pinned_image("POSTGRES_IMAGE");
    let container = Postgres::default()
        .with_name(name)
        .with_tag(tag)
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "These tests need Postgres. Set DATABASE_URL to a server the tests may create \
                 databases on (e.g. postgres://postgres@127.0.0.1:5432/postgres), or make Docker \
                 available so testcontainers can start one. Starting a container failed: {e}"
            )
        });
    let host = container.get_host().await.expect("container host");
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("container port 5432");
    let url = format!("postgres://postgres:postgres@{host}:{port}/postgres");
    (container, url)
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

/// Polls `check` every 50 ms until it returns true, failing the test with
/// `what` if `within` passes first. Tests wait for asynchronous outcomes
/// this way, never with fixed sleeps.
pub async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_in_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
    }

    #[test]
    fn images_are_pinned_with_a_tag() {
        let (name, tag) = pinned_image("POSTGRES_IMAGE");
        assert_eq!(name, "postgres");
        assert!(!tag.is_empty() && tag != "latest");
    }
}
