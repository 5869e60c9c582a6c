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
//! - [`ClusterRedis`]: a server of the test's own in cluster mode, one node
//!   serving all 16,384 slots. Redis Cluster refuses a script or command
//!   whose keys hash to different slots (`CROSSSLOT`) even on one node, so
//!   code that runs on it runs unchanged on a real cluster.

use std::process::Command;

use redis::aio::MultiplexedConnection;
use testcontainers_modules::redis::{REDIS_PORT, Redis};
use testcontainers_modules::testcontainers::core::WaitFor;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt as _};

use crate::nats::run_detached;
use crate::restartable::{Kind, Restartable, RestartableServer};
use crate::unique_name;

/// Redis as the tests run it, on its default port.
const REDIS: Kind = Kind {
    name: "Redis",
    needs: "Redis",
    var: "REDIS_URL",
    scheme: "redis",
    port: REDIS_PORT,
    image: "REDIS_IMAGE",
};

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
        let (url, container) = REDIS
            .shared(|name, tag| Redis::default().with_name(name).with_tag(tag))
            .await;
        let redis = Self {
            url,
            prefix: unique_name("t"),
            container,
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
pub struct RestartableRedis(RestartableServer<Forgetful>);

impl RestartableRedis {
    /// Starts an empty server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        Self(RestartableServer::start(Forgetful).await)
    }

    /// The server URL; the same across restarts.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Stops the server abruptly; everything it held is lost.
    pub async fn stop(&mut self) {
        self.0.stop().await;
    }

    /// Starts it again, empty, on the same port, and waits until it answers
    /// PING.
    pub async fn restart(&mut self) {
        self.0.restart().await;
    }
}

/// `redis-server` keeping nothing on disk (no RDB snapshot, no append-only
/// file), so that each start is empty.
struct Forgetful;

impl Restartable for Forgetful {
    const KIND: Kind = REDIS;
    const CONTAINER_CMD: &'static [&'static str] = &NO_PERSISTENCE;

    fn process(&self, port: u16) -> Command {
        let [program, args @ ..] = NO_PERSISTENCE;
        let mut command = Command::new(program);
        command
            .args(args)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
        command
    }

    fn ready() -> WaitFor {
        WaitFor::message_on_stdout("Ready to accept connections")
    }

    /// A stopped server is one that refuses connections; a started one must
    /// answer PING, not merely accept (a container's port mapping accepts
    /// before Redis is ready).
    async fn is_up(port: u16) -> bool {
        ping(&REDIS.url("127.0.0.1", port)).await
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

/// A Redis Cluster of one node owning every slot, of the test's own.
pub struct ClusterRedis(RestartableServer<ClusterMode>);

impl ClusterRedis {
    /// Starts the node on a free port, gives it all 16,384 slots and waits
    /// until the cluster says it is ok.
    pub async fn start() -> Self {
        let nodes = std::env::temp_dir().join(format!("{}.conf", unique_name("redis-nodes")));
        let server = Self(RestartableServer::start(ClusterMode { nodes }).await);
        let url = server.url();
        let client = redis::Client::open(url.as_str()).expect("cluster node URL");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster node at {url}: {e}"));
        redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16_383)
            .query_async::<()>(&mut con)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER ADDSLOTSRANGE at {url}: {e}"));
        // The node takes a moment to see its own slots as served.
        crate::eventually(
            std::time::Duration::from_secs(20),
            "the one-node cluster is ok",
            || {
                let mut con = con.clone();
                async move {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async::<String>(&mut con)
                        .await
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                }
            },
        )
        .await;
        server
    }

    /// The node's URL, for a plain (non-cluster) client: it owns every
    /// slot, so no request is ever redirected.
    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// `redis-server` in cluster mode, keeping nothing on disk but the node
/// table, which a process keeps in `nodes` (removed on drop) and a
/// container in its own working directory.
struct ClusterMode {
    nodes: std::path::PathBuf,
}

impl Restartable for ClusterMode {
    const KIND: Kind = REDIS;
    const CONTAINER_CMD: &'static [&'static str] = &[
        "redis-server",
        "--save",
        "",
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
    ];

    fn process(&self, port: u16) -> Command {
        let mut command = Forgetful.process(port);
        command
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(&self.nodes);
        command
    }

    fn ready() -> WaitFor {
        Forgetful::ready()
    }

    /// Up once it answers PING; the slots come after (in `start`).
    async fn is_up(port: u16) -> bool {
        Forgetful::is_up(port).await
    }
}

impl Drop for ClusterMode {
    fn drop(&mut self) {
        // Never created when the server is a container.
        let _ = std::fs::remove_file(&self.nodes);
    }
}

/// `redis-server` and the arguments that keep nothing on disk.
const NO_PERSISTENCE: [&str; 5] = ["redis-server", "--save", "", "--appendonly", "no"];

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
