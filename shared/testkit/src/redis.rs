//! Redis servers for tests.
//!
//! - [`TestRedis`]: a server shared by tests (`REDIS_URL`, or a container),
//!   with a unique key prefix per test; the test's keys are deleted when it
//!   ends.
//! - [`RestartableRedis`]: a server of the test's own that it can stop and
//!   start again on the same port. It keeps nothing across a restart (no RDB
//!   snapshot, no append-only file), which is how tests make Redis lose the
//!   holds and cached entries it had. A `redis-server` process when running
//!   against a given URL (as CI does), a container otherwise.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use testcontainers_modules::redis::{REDIS_PORT, Redis};
use testcontainers_modules::testcontainers::core::{ContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{ContainerAsync, GenericImage, ImageExt as _};

use crate::nats::run_detached;
use crate::{pinned_image, unique_name};

/// A Redis server and a key prefix of the test's own.
pub struct TestRedis {
    url: String,
    prefix: String,
    container: Option<ContainerAsync<Redis>>,
}

impl TestRedis {
    /// `REDIS_URL` if set, else a fresh container; fails the test if the
    /// server does not answer.
    pub async fn start() -> Self {
        telemetry::init_for_tests();
        let prefix = unique_name("t");
        let redis = match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Self {
                url,
                prefix,
                container: None,
            },
            _ => {
                let (name, tag) = pinned_image("REDIS_IMAGE");
                let container = Redis::default()
                    .with_name(name)
                    .with_tag(tag)
                    .start()
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", needs()));
                let host = container.get_host().await.expect("container host");
                let port = container
                    .get_host_port_ipv4(REDIS_PORT)
                    .await
                    .expect("container port 6379");
                Self {
                    url: format!("redis://{host}:{port}"),
                    prefix,
                    container: Some(container),
                }
            }
        };
        // A wrong REDIS_URL fails here, naming the variable, rather than
        // later inside the code under test.
        redis.connection().await;
        redis
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's key prefix: every key the test writes starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A plain connection for arranging and asserting.
    pub async fn connection(&self) -> MultiplexedConnection {
        let connected = match redis::Client::open(self.url.as_str()) {
            Ok(client) => client.get_multiplexed_async_connection().await,
            Err(e) => Err(e),
        };
        connected.unwrap_or_else(|e| {
            panic!(
                "cannot connect to Redis at {} ({e}); is the server running? \
                 Set REDIS_URL to a reachable one.",
                self.url
            )
        })
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.container.is_some() {
            return; // the container goes, and its keys with it
        }
        let (url, pattern) = (self.url.clone(), format!("{}*", self.prefix));
        run_detached(async move {
            if let Err(e) = delete_matching(&url, &pattern).await {
                eprintln!("warning: could not delete test keys {pattern} at {url}: {e}");
            }
        });
    }
}

/// Deletes every key matching `pattern`. SCAN, unlike KEYS, does not block
/// the server shared with other tests; deleting while scanning is safe (SCAN
/// still returns every key that exists throughout the iteration).
async fn delete_matching(url: &str, pattern: &str) -> redis::RedisResult<()> {
    let mut con = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut con)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A Redis server the test can stop and start again, empty after each start.
pub struct RestartableRedis {
    port: u16,
    backend: Backend,
}

enum Backend {
    Process(Option<Child>),
    Container(Box<ContainerAsync<GenericImage>>),
}

impl RestartableRedis {
    /// Starts an empty server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        telemetry::init_for_tests();
        let port = free_port();
        let given_url = std::env::var("REDIS_URL").is_ok_and(|u| !u.trim().is_empty());
        let backend = if given_url {
            Backend::Process(Some(spawn_process(port)))
        } else {
            let (name, tag) = pinned_image("REDIS_IMAGE");
            let container = GenericImage::new(name, tag)
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
                .with_mapped_port(port, ContainerPort::Tcp(REDIS_PORT))
                .with_cmd(no_persistence_cmd())
                .start()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", needs()));
            Backend::Container(Box::new(container))
        };
        let server = Self { port, backend };
        server.wait_until_answering(true).await;
        server
    }

    /// The server URL; the same across restarts.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server abruptly; everything it held is lost.
    pub async fn stop(&mut self) {
        match &mut self.backend {
            Backend::Process(child) => kill(child),
            Backend::Container(c) => c
                .stop_with_timeout(Some(0))
                .await
                .expect("stop redis container"),
        }
        self.wait_until_answering(false).await;
    }

    /// Starts it again, empty, on the same port, and waits until it answers
    /// PING.
    pub async fn restart(&mut self) {
        match &mut self.backend {
            Backend::Process(child) => {
                kill(child);
                *child = Some(spawn_process(self.port));
            }
            Backend::Container(c) => c.start().await.expect("start redis container"),
        }
        self.wait_until_answering(true).await;
    }

    /// Polls PING until the server's state is `up`. A stopped server is one
    /// that refuses connections; a started one must answer, not merely
    /// accept (a container's port mapping accepts before Redis is ready).
    async fn wait_until_answering(&self, up: bool) {
        let url = self.url();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if ping(&url).await == up {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis on port {} did not {} within 20s",
                self.port,
                if up { "start" } else { "stop" }
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RestartableRedis {
    fn drop(&mut self) {
        if let Backend::Process(child) = &mut self.backend {
            kill(child);
        }
    }
}

/// Whether a server at `url` answers PING (the client's own connection and
/// response timeouts bound the wait).
async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .is_ok_and(|pong| pong == "PONG")
}

/// `redis-server` arguments that keep nothing on disk, so that a restart
/// starts empty.
fn no_persistence_cmd() -> [&'static str; 5] {
    ["redis-server", "--save", "", "--appendonly", "no"]
}

fn spawn_process(port: u16) -> Child {
    let [program, args @ ..] = no_persistence_cmd();
    Command::new(program)
        .args(args)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test stops and restarts its own Redis: with REDIS_URL set it needs \
                 `redis-server` on PATH (apt-get install redis-server); without REDIS_URL, \
                 Docker: {e}"
            )
        })
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn needs() -> String {
    "These tests need Redis. Set REDIS_URL (e.g. redis://127.0.0.1:6379) or make Docker \
     available so testcontainers can start one. Starting a container failed"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(con: &mut MultiplexedConnection, key: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(con)
            .await
            .expect("EXISTS")
            == 1
    }

    async fn set(con: &mut MultiplexedConnection, key: &str) {
        redis::cmd("SET")
            .arg(key)
            .arg("1")
            .query_async::<()>(con)
            .await
            .expect("SET");
    }

    #[tokio::test]
    async fn dropping_a_test_redis_deletes_the_keys_under_its_prefix_and_no_others() {
        let server = TestRedis::start().await;
        // A second test's view of the same server, as on a shared REDIS_URL;
        // its drop runs the cleanup even when `server` is a container.
        let test = TestRedis {
            url: server.url().to_owned(),
            prefix: unique_name("t"),
            container: None,
        };
        let mut con = server.connection().await;
        let (mine, also_mine) = (
            format!("{}:hold:1", test.prefix()),
            format!("{}:seatmap", test.prefix()),
        );
        let someone_elses = format!("{}:hold:1", server.prefix());
        for key in [&mine, &also_mine, &someone_elses] {
            set(&mut con, key).await;
        }

        drop(test);

        assert!(!exists(&mut con, &mine).await);
        assert!(!exists(&mut con, &also_mine).await);
        assert!(exists(&mut con, &someone_elses).await);
    }

    #[tokio::test]
    async fn a_restarted_redis_answers_on_the_same_url_and_has_lost_its_data() {
        let mut redis = RestartableRedis::start().await;
        let url = redis.url();
        let client = redis::Client::open(url.as_str()).expect("a valid URL");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        set(&mut con, "hold:1").await;

        redis.stop().await;
        assert!(
            client.get_multiplexed_async_connection().await.is_err(),
            "a stopped server must refuse connections"
        );

        redis.restart().await;
        assert_eq!(redis.url(), url);
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("reconnect");
        assert!(ping(&url).await);
        assert!(!exists(&mut con, "hold:1").await, "the restart kept data");
    }

    #[tokio::test]
    async fn a_connection_manager_reconnects_after_a_restart() {
        let mut redis = RestartableRedis::start().await;
        let client = redis::Client::open(redis.url()).expect("a valid URL");
        let mut manager = client.get_connection_manager().await.expect("connect");

        redis.stop().await;
        redis.restart().await;

        crate::eventually(
            Duration::from_secs(10),
            "the connection manager answers again",
            || {
                let mut manager = manager.clone();
                async move {
                    redis::cmd("PING")
                        .query_async::<String>(&mut manager)
                        .await
                        .is_ok()
                }
            },
        )
        .await;
        let pong: String = redis::cmd("PING")
            .query_async(&mut manager)
            .await
            .expect("PING");
        assert_eq!(pong, "PONG");
    }
}
