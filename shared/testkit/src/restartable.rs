//! What the NATS and Redis servers for tests have in common, so that
//! `nats.rs` and `redis.rs` state only what differs between them.
//!
//! - [`Kind`]: which server, and where a test gets one from: the URL in its
//!   variable (`NATS_URL`, `REDIS_URL`) if set, else a container of the
//!   image pinned in `.env`, else a failure that says what to set.
//! - [`RestartableServer`]: a server of the test's own on a fixed free port,
//!   which the test can stop and start again to see what survives an
//!   outage. The URL stays the same across restarts, so clients built
//!   before the outage can reconnect. A process when the variable is set
//!   (as CI does), a container otherwise. What a server states of its own
//!   (how to run it, how to tell it is up) is the [`Restartable`] trait.

use std::fmt::Display;
use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testcontainers_modules::testcontainers::core::{ContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{
    ContainerAsync, ContainerRequest, GenericImage, Image, ImageExt as _,
};

use crate::pinned_image;

/// Which server, and where tests get one from.
pub(crate) struct Kind {
    /// Its name in messages: "NATS", "Redis".
    pub(crate) name: &'static str,
    /// What the tests need, in the message when they have none: "NATS with
    /// JetStream".
    pub(crate) needs: &'static str,
    /// The variable naming a server to use: `NATS_URL`.
    pub(crate) var: &'static str,
    /// The scheme of its URLs: `nats`.
    pub(crate) scheme: &'static str,
    /// The port it listens on in its container, and by default elsewhere
    /// (the example URL in the failure message).
    pub(crate) port: u16,
    /// The key of its pinned image in `.env`: `NATS_IMAGE`.
    pub(crate) image: &'static str,
}

impl Kind {
    /// The URL in [`Kind::var`], if it is set to something.
    pub(crate) fn given_url(&self) -> Option<String> {
        std::env::var(self.var)
            .ok()
            .filter(|url| !url.trim().is_empty())
    }

    /// `<scheme>://<host>:<port>`.
    pub(crate) fn url(&self, host: impl Display, port: u16) -> String {
        format!("{}://{host}:{port}", self.scheme)
    }

    /// A server shared by tests: the one at [`Kind::given_url`], else a
    /// container of `image(name, tag)` from the pinned name and tag. The
    /// caller keeps the container: dropping it removes the server, and the
    /// test's data with it.
    pub(crate) async fn shared<I: Image>(
        &self,
        image: impl FnOnce(String, String) -> ContainerRequest<I>,
    ) -> (String, Option<ContainerAsync<I>>) {
        if let Some(url) = self.given_url() {
            return (url, None);
        }
        let container = self.start_container(image).await;
        let host = container.get_host().await.expect("container host");
        let port = container
            .get_host_port_ipv4(self.port)
            .await
            .unwrap_or_else(|e| panic!("{} container port {}: {e}", self.name, self.port));
        (self.url(host, port), Some(container))
    }

    /// Starts `image(name, tag)` from the pinned name and tag, failing the
    /// test with the two ways to give it a server if that is not possible:
    /// a test that silently passes without its server proves nothing.
    async fn start_container<I: Image>(
        &self,
        image: impl FnOnce(String, String) -> ContainerRequest<I>,
    ) -> ContainerAsync<I> {
        let (name, tag) = pinned_image(self.image);
        image(name, tag).start().await.unwrap_or_else(|e| {
            panic!(
                "These tests need {}. Set {} (e.g. {}) or make Docker available so \
                 testcontainers can start one. Starting a container failed: {e}",
                self.needs,
                self.var,
                self.url("127.0.0.1", self.port)
            )
        })
    }
}

/// What a restartable server states of its own; [`RestartableServer`] does
/// the rest.
pub(crate) trait Restartable {
    /// Which server.
    const KIND: Kind;
    /// Its arguments in a container (after the image's entrypoint).
    const CONTAINER_CMD: &'static [&'static str];

    /// The command that runs it as a process on `port` of 127.0.0.1. A
    /// restart runs it again as it is, so whatever it names (a store
    /// directory) is found again.
    fn process(&self, port: u16) -> Command;

    /// What its container logs once it is ready.
    fn ready() -> WaitFor;

    /// Whether the server on `port` is up, in whatever sense the tests need:
    /// the wait after a start or stop polls it until it says so.
    fn is_up(port: u16) -> impl Future<Output = bool> + Send;
}

/// A server of the test's own that it can stop and start again on the same
/// port. The process is killed when this is dropped; the container removes
/// itself.
pub(crate) struct RestartableServer<S> {
    server: S,
    port: u16,
    backend: Backend,
}

enum Backend {
    /// `None` while stopped.
    Process(Option<Child>),
    Container(Box<ContainerAsync<GenericImage>>),
}

impl<S: Restartable> RestartableServer<S> {
    /// Starts `server` on a free port and waits until it is up.
    pub(crate) async fn start(server: S) -> Self {
        telemetry::init_for_tests();
        let port = free_port();
        let backend = if S::KIND.given_url().is_some() {
            Backend::Process(Some(spawn(&server, port)))
        } else {
            let container = S::KIND
                .start_container(|name, tag| {
                    GenericImage::new(name, tag)
                        .with_wait_for(S::ready())
                        // The host port is fixed, rather than picked by
                        // Docker at each start, so that the URL survives a
                        // restart.
                        .with_mapped_port(port, ContainerPort::Tcp(S::KIND.port))
                        .with_cmd(S::CONTAINER_CMD.iter().copied())
                })
                .await;
            Backend::Container(Box::new(container))
        };
        let server = Self {
            server,
            port,
            backend,
        };
        server.wait_until(true).await;
        server
    }

    /// The server URL; the same across restarts.
    pub(crate) fn url(&self) -> String {
        S::KIND.url("127.0.0.1", self.port)
    }

    /// Stops the server at once (no graceful shutdown: an outage) and waits
    /// until it is down.
    pub(crate) async fn stop(&mut self) {
        match &mut self.backend {
            Backend::Process(child) => kill(child),
            Backend::Container(c) => c
                .stop_with_timeout(Some(0))
                .await
                .unwrap_or_else(|e| panic!("stop {} container: {e}", S::KIND.name)),
        }
        self.wait_until(false).await;
    }

    /// Starts it again on the same port and waits until it is up.
    pub(crate) async fn restart(&mut self) {
        match &mut self.backend {
            Backend::Process(child) => {
                // A restart without a stop must not leave the old process
                // holding the port the new one needs.
                kill(child);
                *child = Some(spawn(&self.server, self.port));
            }
            Backend::Container(c) => c
                .start()
                .await
                .unwrap_or_else(|e| panic!("start {} container: {e}", S::KIND.name)),
        }
        self.wait_until(true).await;
    }

    async fn wait_until(&self, up: bool) {
        let port = self.port;
        let state = if up { "up" } else { "down" };
        let what = format!("{} on port {port} is {state}", S::KIND.name);
        crate::eventually(Duration::from_secs(20), &what, || async move {
            S::is_up(port).await == up
        })
        .await;
    }
}

impl<S> Drop for RestartableServer<S> {
    fn drop(&mut self) {
        // `server` is dropped after this, so whatever it cleans up (NATS's
        // store) is no longer in use by then.
        if let Backend::Process(child) = &mut self.backend {
            kill(child);
        }
    }
}

fn spawn<S: Restartable>(server: &S, port: u16) -> Child {
    let mut command = server.process(port);
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            let (name, var) = (S::KIND.name, S::KIND.var);
            panic!(
                "this test stops and restarts its own {name}: with {var} set it needs \
                 `{program}` on PATH (apt-get install {program}); without {var}, Docker: {e}"
            )
        })
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A port free on 127.0.0.1 now, for a server of the test's own.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
