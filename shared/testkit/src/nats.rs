//! NATS servers for tests.
//!
//! - [`TestNats`]: a server shared by tests (`NATS_URL`, or a container),
//!   with a unique name prefix per test; the test's streams are deleted
//!   when it ends.
//! - [`RestartableNats`]: a server of the test's own that it can stop and
//!   start again on the same port and the same JetStream store, to prove
//!   what survives a broker outage. A `nats-server` process when running
//!   against given URLs (as CI does), a container otherwise.
//! - [`ConfiguredNats`]: a `nats-server` process of the test's own, started
//!   with a configuration file (e.g. compose's `docker/nats/nats.conf`, to
//!   test its permissions) and environment variables for it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::TryStreamExt as _;
use testcontainers_modules::nats::{Nats, NatsServerCmd};
use testcontainers_modules::testcontainers::core::WaitFor;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt as _};

use crate::restartable::{Kind, Restartable, RestartableServer, free_port};
use crate::unique_name;

/// NATS as the tests run it: JetStream on its default port.
const NATS: Kind = Kind {
    name: "NATS",
    needs: "NATS with JetStream",
    var: "NATS_URL",
    scheme: "nats",
    port: 4222,
    image: "NATS_IMAGE",
};

/// A NATS server and a name prefix of the test's own.
pub struct TestNats {
    url: String,
    prefix: String,
    container: Option<ContainerAsync<Nats>>,
}

impl TestNats {
    /// `NATS_URL` if set, else a fresh container with JetStream.
    pub async fn start() -> Self {
        telemetry::init_for_tests();
        let (url, container) = NATS
            .shared(|name, tag| {
                Nats::default()
                    .with_cmd(&NatsServerCmd::default().with_jetstream())
                    .with_name(name)
                    .with_tag(tag)
            })
            .await;
        Self {
            url,
            prefix: unique_name("t"),
            container,
        }
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's prefix for stream, subject and consumer names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// JetStream on a plain client, for arranging and asserting.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    /// A plain client for assertions.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to NATS at {}: {e}", self.url))
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if self.container.is_some() {
            return; // the container goes, and its streams with it
        }
        let (url, prefix) = (self.url.clone(), format!("{}_", self.prefix));
        run_detached(async move {
            let Ok(client) = async_nats::connect(&url).await else {
                return;
            };
            let js = async_nats::jetstream::new(client);
            let names: Vec<String> = match js.stream_names().try_collect().await {
                Ok(names) => names,
                Err(_) => return,
            };
            for name in names.into_iter().filter(|n| n.starts_with(&prefix)) {
                let _ = js.delete_stream(&name).await;
            }
        });
    }
}

/// A NATS server the test can stop and start again.
pub struct RestartableNats(RestartableServer<JetStream>);

impl RestartableNats {
    /// Starts a server on a free port with an empty JetStream store.
    pub async fn start() -> Self {
        let store = std::env::temp_dir().join(unique_name("nats-store"));
        Self(RestartableServer::start(JetStream { store }).await)
    }

    /// The server URL; the same across restarts.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Stops the server (the store stays).
    pub async fn stop(&mut self) {
        self.0.stop().await;
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.0.restart().await;
    }
}

/// `nats-server` with JetStream. A process keeps its store in `store`,
/// which restarts find again and drop removes; a container keeps it in its
/// own `/data`, which a stopped container keeps.
struct JetStream {
    store: PathBuf,
}

impl Restartable for JetStream {
    const KIND: Kind = NATS;
    const CONTAINER_CMD: &'static [&'static str] = &["-js", "-sd", "/data"];

    fn process(&self, port: u16) -> Command {
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&self.store);
        command
    }

    fn ready() -> WaitFor {
        WaitFor::message_on_stderr("Server is ready")
    }

    /// Up once the client port accepts connections.
    async fn is_up(port: u16) -> bool {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        // Never created when the server is a container.
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A `nats-server` process started with a configuration file, on a free
/// port with JetStream in a temporary store (both given as flags, which
/// override the file). Killed, and its store removed, on drop.
///
/// Always a process, never a container: the file is read from this
/// machine, and `nats-server` must be on `PATH`.
pub struct ConfiguredNats {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl ConfiguredNats {
    /// Starts `nats-server --config <config>` with `env` added to its
    /// environment (the file's `$VARIABLE` references), and waits until it
    /// accepts connections. Fails the test, with the server's log, if it
    /// exits instead (a bad file, a missing variable).
    pub async fn start(config: &std::path::Path, env: &[(&str, &str)]) -> Self {
        telemetry::init_for_tests();
        let port = free_port();
        let dir = std::env::temp_dir().join(unique_name("nats-configured"));
        std::fs::create_dir_all(&dir).expect("a temporary directory for nats-server");
        let log = dir.join("nats-server.log");
        let child = Command::new("nats-server")
            .arg("--config")
            .arg(config)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("store"))
            .arg("-l")
            .arg(&log)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test starts its own nats-server: it needs `nats-server` on PATH: {e}")
            });
        let mut server = Self { port, dir, child };
        server.wait_until_listening(&log).await;
        server
    }

    /// `nats://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn wait_until_listening(&mut self, log: &std::path::Path) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nats-server --config exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server on port {} did not start within 20s:\n{}",
                self.port,
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ConfiguredNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs async cleanup from a `Drop`, on a thread with its own runtime
/// (the test's runtime cannot be blocked on from inside it).
pub(crate) fn run_detached<F: std::future::Future<Output = ()> + Send + 'static>(work: F) {
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for cleanup");
        runtime.block_on(work);
    });
    let _ = handle.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restarted_nats_answers_on_the_same_url_and_keeps_its_streams() {
        let mut nats = RestartableNats::start().await;
        let url = nats.url();
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("connect"));
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "KEPT".to_owned(),
            subjects: vec!["kept.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish("kept.1", "hello".into())
            .await
            .expect("publish")
            .await
            .expect("stored");

        nats.stop().await;
        assert!(
            async_nats::connect(&url).await.is_err(),
            "a stopped server must refuse connections"
        );

        nats.restart().await;
        assert_eq!(nats.url(), url);
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("reconnect"));
        let mut stream = js.get_stream("KEPT").await.expect("the stream survived");
        assert_eq!(stream.info().await.expect("info").state.messages, 1);
    }
}
