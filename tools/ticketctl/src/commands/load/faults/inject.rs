//! One fault, start to end: the action through the system's backend, then
//! a wait, with a deadline, until the target answers again. The outcome,
//! success or not, becomes an [`Injected`]; nothing here fails the load.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{Action, Fault, Injected, Target, compose, native, spec_duration};

/// How long a target may take to answer again after a fault before the
/// fault is recorded as failed. A Postgres restart, after which every
/// service must reconnect, is the slowest case.
const READY_DEADLINE: Duration = Duration::from_mins(1);

/// How often a target is asked whether it is ready again.
const READY_POLL: Duration = Duration::from_millis(100);

/// How long one command (`docker compose restart`, a restart script) may
/// run: longer than any of them takes when it works.
const COMMAND_DEADLINE: Duration = Duration::from_mins(2);

/// How a fault reaches the system.
pub(super) enum System {
    Compose(compose::Compose),
    Native(native::Native),
}

/// Injects one fault at a time into a [`System`] and waits for the target
/// to answer again.
pub(super) struct Injector {
    system: System,
    pause_default: Duration,
    http: reqwest::Client,
}

impl Injector {
    pub(super) fn new(system: System, pause_default: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        Ok(Self {
            system,
            pause_default,
            http,
        })
    }

    /// What the report says was done, e.g. `pause orders for 8s`.
    pub(super) fn describe(&self, fault: &Fault) -> String {
        let target = fault.target.name();
        match fault.action {
            Action::Pause(period) => {
                let period = period.unwrap_or(self.pause_default);
                format!("pause {target} for {}", spec_duration(period))
            }
            action => format!("{} {target}", action.name()),
        }
    }

    /// Injects `fault`; never fails, the outcome is in the result.
    pub(super) async fn inject(self: Arc<Self>, fault: Fault, at_s: f64) -> Injected {
        let started = Instant::now();
        let outcome = self.perform(&fault).await;
        let (result, ready_after_s) = match outcome {
            Ok(()) => ("ok".to_owned(), Some(started.elapsed().as_secs_f64())),
            Err(e) => (format!("{e:#}"), None),
        };
        Injected {
            at_s,
            action: self.describe(&fault),
            result,
            ready_after_s,
        }
    }

    async fn perform(&self, fault: &Fault) -> anyhow::Result<()> {
        let target = fault.target;
        match (fault.action, &self.system) {
            (Action::Flush, System::Compose(c)) => return c.flush_redis().await,
            (Action::Flush, System::Native(n)) => return n.flush_redis().await,
            (Action::Kill, System::Compose(c)) => c.kill(target).await?,
            (Action::Kill, System::Native(n)) => n.kill(target).await?,
            (Action::Restart, System::Compose(c)) => c.restart(target).await?,
            (Action::Restart, System::Native(n)) => n.restart(target).await?,
            (Action::Pause(period), system) => {
                let paused = match system {
                    System::Compose(c) => c.pause(target).await?,
                    System::Native(n) => n.pause(target).await?,
                };
                tokio::time::sleep(period.unwrap_or(self.pause_default)).await;
                paused.resume().await?;
            }
        }
        self.wait_until_answering(target).await
    }

    /// Waits until `target` answers again: a process, its `/readyz`; a
    /// server, its own check and then every process's `/readyz`, since
    /// they all depend on it.
    async fn wait_until_answering(&self, target: Target) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        if !target.is_server() {
            return self.wait_until_ready(target, deadline).await;
        }
        poll(target, deadline, || self.server_answers(target)).await?;
        for process in self.processes() {
            self.wait_until_ready(process, deadline).await?;
        }
        Ok(())
    }

    async fn wait_until_ready(&self, process: Target, deadline: Instant) -> anyhow::Result<()> {
        let url = match &self.system {
            System::Compose(c) => c.readyz_url(process).await?,
            System::Native(n) => n.readyz_url(process)?,
        };
        poll(process, deadline, || self.ready(&url)).await
    }

    async fn ready(&self, url: &str) -> anyhow::Result<()> {
        let answer = self.http.get(url).send().await?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let body = answer.text().await.unwrap_or_default();
        anyhow::bail!("{status} {body}")
    }

    async fn server_answers(&self, server: Target) -> anyhow::Result<()> {
        match &self.system {
            System::Compose(c) => c.healthy(server).await,
            System::Native(n) => n.server_answers(server).await,
        }
    }

    fn processes(&self) -> Vec<Target> {
        match &self.system {
            System::Compose(_) => Target::PROCESSES.to_vec(),
            System::Native(n) => n.processes(),
        }
    }
}

/// Calls `check` every [`READY_POLL`] until it succeeds or `deadline`
/// passes; the error names `target` and the last failure.
async fn poll<F, Fut>(target: Target, deadline: Instant, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() + READY_POLL > deadline {
            return Err(last.context(format!(
                "{} did not answer within {} s",
                target.name(),
                READY_DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// A paused target. [`Paused::resume`] resumes it; if the fault's task is
/// dropped before that (the runtime shuts down under it), the drop resumes
/// it, so that no fault leaves a process stopped behind it.
pub(super) struct Paused {
    resume: Option<Command>,
}

impl Paused {
    pub(super) fn new(resume: Command) -> Self {
        Self {
            resume: Some(resume),
        }
    }

    pub(super) async fn resume(mut self) -> anyhow::Result<()> {
        match self.resume.take() {
            Some(command) => run(command).await.map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(mut command) = self.resume.take() {
            // Blocking, but only on the way out of an aborted pause.
            if let Err(e) = command.status() {
                tracing::error!(error = %e, command = ?command, "could not resume a paused process");
            }
        }
    }
}

/// Runs `command` (on the blocking pool: it waits for the child) and
/// returns its standard output; the error has the command and its
/// standard error. A command that has not ended after [`COMMAND_DEADLINE`]
/// is reported as failed, so that a fault ends whatever the command does
/// (it is left running: nothing can cancel a blocking wait).
pub(super) async fn run(mut command: Command) -> anyhow::Result<String> {
    let shown = shown(&command);
    let waiting = tokio::task::spawn_blocking(move || command.output());
    let output = tokio::time::timeout(COMMAND_DEADLINE, waiting)
        .await
        .with_context(|| {
            format!(
                "`{shown}` has not ended after {} s",
                COMMAND_DEADLINE.as_secs()
            )
        })??
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!("`{shown}` failed ({}): {}", output.status, stderr.trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A command as a shell line, for error messages and tests.
pub(super) fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
