//! Faults on the compose stack, through the `docker compose` command line
//! in the current directory. Compose finds its project as it always does
//! (`COMPOSE_PROJECT_NAME`, `COMPOSE_FILE`, `.env`), since the commands
//! inherit this process's environment: `scripts/compose-smoke`'s
//! `ticketing-smoke` project is reached by exporting its name.
//!
//! - kill: `kill -s KILL`, then `start` (a killed container stays down:
//!   Docker counts a kill as a deliberate stop, not as a crash for the
//!   `restart: unless-stopped` policy to undo);
//! - restart: `restart` (SIGTERM, ten seconds, SIGKILL, start);
//! - pause: `pause` and `unpause` (the cgroup freezer: every process of the
//!   container stops at once, as SIGSTOP would);
//! - flush: `FLUSHALL` by `redis-cli` inside the Redis container, as the
//!   ACL user `faults`, which may run that and `PING` only; its password
//!   is in the container's environment (compose.yaml), so it appears on no
//!   command line here;
//! - answering again: a process's `/readyz` on the port compose published
//!   (`port`), a server's compose healthcheck (`docker inspect`).

use std::process::Command;

use super::Target;
use super::inject::{Paused, run};

/// Flushes the stack's Redis as the user `faults`. `redis-cli` exits 0
/// on an error reply too, so the caller checks for `OK`.
const FLUSH: &str =
    r#"exec redis-cli --no-auth-warning --user faults --pass "$REDIS_FAULTS_PASSWORD" FLUSHALL"#;

/// The compose stack in the current directory.
pub(super) struct Compose;

impl Compose {
    pub(super) async fn kill(&self, target: Target) -> anyhow::Result<()> {
        for command in kill(target) {
            run(command).await?;
        }
        Ok(())
    }

    pub(super) async fn restart(&self, target: Target) -> anyhow::Result<()> {
        run(compose(&["restart", target.name()])).await.map(drop)
    }

    pub(super) async fn pause(&self, target: Target) -> anyhow::Result<Paused> {
        run(compose(&["pause", target.name()])).await?;
        Ok(Paused::new(compose(&["unpause", target.name()])))
    }

    pub(super) async fn flush_redis(&self) -> anyhow::Result<()> {
        let answer = run(flush()).await?;
        anyhow::ensure!(answer == "OK", "FLUSHALL answered `{answer}`");
        Ok(())
    }

    /// The `/readyz` of `process` on the host, e.g.
    /// `http://127.0.0.1:8081/readyz`.
    pub(super) async fn readyz_url(&self, process: Target) -> anyhow::Result<String> {
        let address = run(port(process)?).await?;
        Ok(format!("http://{address}/readyz"))
    }

    /// `Ok` once `server`'s healthcheck says healthy.
    pub(super) async fn healthy(&self, server: Target) -> anyhow::Result<()> {
        let container = run(compose(&["ps", "-q", server.name()])).await?;
        anyhow::ensure!(!container.is_empty(), "no {} container", server.name());
        let mut inspect = Command::new("docker");
        inspect.args([
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &container,
        ]);
        let health = run(inspect).await?;
        anyhow::ensure!(health == "healthy", "{} is {health}", server.name());
        Ok(())
    }
}

/// `docker compose <args>`.
fn compose(args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command.arg("compose").args(args);
    command
}

fn kill(target: Target) -> [Command; 2] {
    [
        compose(&["kill", "-s", "KILL", target.name()]),
        compose(&["start", target.name()]),
    ]
}

fn flush() -> Command {
    compose(&["exec", "-T", "redis", "sh", "-c", FLUSH])
}

/// `docker compose port <service> <port>`: the host address of the HTTP
/// port the service listens on inside its container (compose.yaml).
fn port(process: Target) -> anyhow::Result<Command> {
    let inside = match process {
        Target::Orders => "8080",
        Target::Inventory => "8081",
        Target::Notification => "8082",
        Target::Reporting => "8083",
        Target::RelayOrders1
        | Target::RelayOrders2
        | Target::RelayInventory
        | Target::RelayNotification => "8084",
        Target::Nats | Target::Redis | Target::Postgres => {
            anyhow::bail!("{} has no /readyz", process.name())
        }
    };
    Ok(compose(&["port", process.name(), inside]))
}

#[cfg(test)]
mod tests {
    use super::super::inject::shown;
    use super::*;

    #[test]
    fn a_kill_is_a_sigkill_then_a_start_of_the_same_service() {
        let [kill, start] = kill(Target::RelayOrders2);
        assert_eq!(shown(&kill), "docker compose kill -s KILL relay-orders-2");
        assert_eq!(shown(&start), "docker compose start relay-orders-2");
    }

    #[test]
    fn the_flush_runs_inside_the_redis_container_as_the_faults_user() {
        let flush = flush();
        assert_eq!(
            shown(&flush),
            format!("docker compose exec -T redis sh -c {FLUSH}")
        );
        // The password comes from the container's environment, not from here.
        assert!(FLUSH.contains(r#""$REDIS_FAULTS_PASSWORD""#));
        assert!(FLUSH.contains("--user faults"));
    }

    #[test]
    fn readiness_is_asked_on_the_port_each_service_listens_on() {
        let shown_port = |target| shown(&port(target).expect("a process"));
        assert_eq!(
            shown_port(Target::Orders),
            "docker compose port orders 8080"
        );
        assert_eq!(
            shown_port(Target::Reporting),
            "docker compose port reporting 8083"
        );
        assert_eq!(
            shown_port(Target::RelayNotification),
            "docker compose port relay-notification 8084"
        );
        assert!(port(Target::Postgres).is_err());
    }
}
