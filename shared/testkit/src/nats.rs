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

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::TryStreamExt as _;
use testcontainers_modules::nats::{Nats, NatsServerCmd};
use testcontainers_modules::testcontainers::core::{ContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{ContainerAsync, GenericImage, ImageExt as _};

use crate::{pinned_image, unique_name};

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
        let prefix = unique_name("t");
        match std::env::var("NATS_URL") {
            Ok(url) if !url.trim().is_empty() => Self {
                url,
                prefix,
                container: None,
            },
            _ => {
                let (name, tag) = pinned_image("NATS_IMAGE");
                let container = Nats::default()
                    .with_cmd(&NatsServerCmd::default().with_jetstream())
                    .with_name(name)
                    .with_tag(tag)
                    .start()
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{}: {e}", needs("NATS_URL", "nats://127.0.0.1:4222"))
                    });
                let host = container.get_host().await.expect("container host");
                let port = container.get_host_port_ipv4(4222).await.expect("port 4222");
                Self {
                    url: format!("nats://{host}:{port}"),
                    prefix,
                    container: Some(container),
                }
            }
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
pub struct RestartableNats {
    port: u16,
    backend: Backend,
}

enum Backend {
    Process {
        store: PathBuf,
        child: Option<Child>,
    },
    Container(Box<ContainerAsync<GenericImage>>),
}

impl RestartableNats {
    /// Starts a server on a free port with an empty JetStream store.
    pub async fn start() -> Self {
        telemetry::init_for_tests();
        let port = free_port();
        let given_urls = std::env::var("NATS_URL").is_ok_and(|u| !u.trim().is_empty());
        let backend = if given_urls {
            let store = std::env::temp_dir().join(unique_name("nats-store"));
            let mut backend = Backend::Process { store, child: None };
            spawn_process(&mut backend, port);
            backend
        } else {
            let (name, tag) = pinned_image("NATS_IMAGE");
            let container = GenericImage::new(name, tag)
                .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
                .with_mapped_port(port, ContainerPort::Tcp(4222))
                .with_cmd(["-js", "-sd", "/data"])
                .start()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", needs("NATS_URL", "nats://127.0.0.1:4222")));
            Backend::Container(Box::new(container))
        };
        let server = Self { port, backend };
        server.wait_until_listening(true).await;
        server
    }

    /// The server URL; the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (the store stays).
    pub async fn stop(&mut self) {
        match &mut self.backend {
            Backend::Process { child, .. } => {
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            Backend::Container(c) => c
                .stop_with_timeout(Some(0))
                .await
                .expect("stop nats container"),
        }
        self.wait_until_listening(false).await;
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        match &mut self.backend {
            Backend::Process { .. } => spawn_process(&mut self.backend, self.port),
            Backend::Container(c) => c.start().await.expect("start nats container"),
        }
        self.wait_until_listening(true).await;
    }

    async fn wait_until_listening(&self, up: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            if listening == up {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats on port {} did not {} within 20s",
                self.port,
                if up { "start" } else { "stop" }
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RestartableNats {
    fn drop(&mut self) {
        if let Backend::Process { store, child } = &mut self.backend {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_dir_all(store);
        }
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

fn spawn_process(backend: &mut Backend, port: u16) {
    let Backend::Process { store, child } = backend else {
        return;
    };
    let spawned = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&*store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test stops and restarts its own NATS: it needs `nats-server` on PATH \
                 (apt-get install nats-server) or, without NATS_URL, Docker: {e}"
            )
        });
    *child = Some(spawned);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn needs(var: &str, example: &str) -> String {
    format!(
        "These tests need NATS with JetStream. Set {var} (e.g. {example}) or make Docker \
         available so testcontainers can start one. Starting a container failed"
    )
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
