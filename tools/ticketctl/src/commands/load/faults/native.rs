//! Faults on processes that `scripts/native-up` started, in its directory
//! (`--native-dir`, `NATIVE_DIR` in its `env`):
//!
//! - `services` lists each process and its HTTP port (`name port`), for
//!   `/readyz` on 127.0.0.1;
//! - `<name>.pid` holds a process's pid, and `<name>.sh` starts it again
//!   (in the background, writing a new pid file);
//! - `restart-<server>.sh` restarts this machine's NATS, Redis or Postgres
//!   and returns once the server answers.
//!
//! Signals go through `kill(1)`. A pid file can outlive its process, and the
//! pid can be reused by another, so a process is signalled only if its
//! working directory is that directory (each `<name>.sh` starts its process
//! there): a stale pid file is an error, never a signal to a stranger.
//! Linux only (`/proc`).
//!
//! A flush deletes the keys under the system's Redis prefix (SCAN, then
//! UNLINK in batches) and nothing else: the machine's Redis holds the
//! tests' keys too.
//!
//! Long because its tests run the signals on real `sleep` processes beside
//! the code; the code itself is about 300 lines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::inject::{Paused, run};
use super::{FaultOptions, Target};

/// How long a process may take to exit after SIGTERM: the services' own
/// shutdown timeout is shorter, so a process still there after this
/// has a shutdown problem worth reporting.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// How long the kernel may take to remove a process after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Keys asked for per SCAN, and so deleted per UNLINK.
const SCAN_BATCH: usize = 1_000;

/// How long a flush may take, connection included.
const FLUSH_DEADLINE: Duration = Duration::from_secs(30);

/// The system `scripts/native-up` started in one directory.
pub(super) struct Native {
    dir: PathBuf,
    /// The processes of `services`, with their HTTP ports.
    processes: Vec<(Target, u16)>,
    /// Where a flush deletes keys, when the plan has flushes.
    redis: Option<Flush>,
}

/// A Redis and the key prefix of the system in it.
struct Flush {
    url: String,
    prefix: String,
}

impl Native {
    /// Reads `services` in `options.native_dir`. `flushes`: the plan may
    /// flush Redis, so a prefix is required.
    pub(super) fn open(options: &FaultOptions, flushes: bool) -> anyhow::Result<Self> {
        let dir = std::fs::canonicalize(&options.native_dir).with_context(|| {
            format!(
                "no native system in {}: run scripts/native-up first (or set NATIVE_DIR)",
                options.native_dir.display()
            )
        })?;
        let listing = dir.join("services");
        let services = std::fs::read_to_string(&listing)
            .with_context(|| format!("cannot read {}", listing.display()))?;
        let processes =
            parse_services(&services).with_context(|| format!("in {}", listing.display()))?;
        let redis = match (flushes, options.redis_prefix.as_deref()) {
            (false, _) => None,
            (true, Some(prefix)) if !prefix.is_empty() => Some(Flush {
                url: options.redis_url.clone(),
                prefix: prefix.to_owned(),
            }),
            (true, _) => anyhow::bail!(
                "a native flush deletes the keys under the system's REDIS_PREFIX only \
                 (the machine's Redis is shared), and none is set: load {}/env or pass \
                 --redis-prefix",
                dir.display()
            ),
        };
        Ok(Self {
            dir,
            processes,
            redis,
        })
    }

    pub(super) fn processes(&self) -> Vec<Target> {
        self.processes.iter().map(|(target, _)| *target).collect()
    }

    pub(super) fn readyz_url(&self, process: Target) -> anyhow::Result<String> {
        let (_, port) = self
            .processes
            .iter()
            .find(|(target, _)| *target == process)
            .with_context(|| {
                format!(
                    "{} is not in {}/services",
                    process.name(),
                    self.dir.display()
                )
            })?;
        Ok(format!("http://127.0.0.1:{port}/readyz"))
    }

    /// `Ok`: `restart-<server>.sh` returned only once its server answered.
    pub(super) async fn server_answers(&self, _server: Target) -> anyhow::Result<()> {
        Ok(())
    }

    pub(super) async fn kill(&self, process: Target) -> anyhow::Result<()> {
        let pid = self.pid(process)?;
        run(signal("KILL", pid)).await?;
        self.wait_gone(process, pid, KILL_WAIT).await?;
        self.start(process).await
    }

    /// A graceful restart; a process that ignores SIGTERM is killed and
    /// started all the same, and the error says so.
    pub(super) async fn restart(&self, target: Target) -> anyhow::Result<()> {
        if target.is_server() {
            let script = self.dir.join(format!("restart-{}.sh", target.name()));
            return run(bash(&script)).await.map(drop);
        }
        let pid = self.pid(target)?;
        run(signal("TERM", pid)).await?;
        let stopped = self.wait_gone(target, pid, STOP_WAIT).await;
        if stopped.is_err() {
            run(signal("KILL", pid)).await?;
            self.wait_gone(target, pid, KILL_WAIT).await?;
        }
        self.start(target).await?;
        stopped.context("killed it instead, and started it again")
    }

    pub(super) async fn pause(&self, process: Target) -> anyhow::Result<Paused> {
        let pid = self.pid(process)?;
        run(signal("STOP", pid)).await?;
        Ok(Paused::new(signal("CONT", pid)))
    }

    /// Deletes every key under the prefix; the machine's other keys stay.
    pub(super) async fn flush_redis(&self) -> anyhow::Result<()> {
        let flush = self
            .redis
            .as_ref()
            .context("no Redis prefix to flush (checked at start)")?;
        let deleted = tokio::time::timeout(FLUSH_DEADLINE, flush.run())
            .await
            .with_context(|| format!("the flush took over {} s", FLUSH_DEADLINE.as_secs()))??;
        tracing::info!(
            deleted,
            prefix = flush.prefix,
            "flushed the system's Redis keys"
        );
        Ok(())
    }

    /// `process`'s pid, if it is running and was started here.
    fn pid(&self, process: Target) -> anyhow::Result<u32> {
        let file = self.dir.join(format!("{}.pid", process.name()));
        let raw = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let pid: u32 = raw
            .trim()
            .parse()
            .with_context(|| format!("{} holds `{}`, not a pid", file.display(), raw.trim()))?;
        match working_dir(pid) {
            None => anyhow::bail!("{} is not running (pid {pid} is gone)", process.name()),
            Some(cwd) if cwd != self.dir => anyhow::bail!(
                "pid {pid} in {} runs in {}, not in {}: not ours, left alone",
                file.display(),
                cwd.display(),
                self.dir.display()
            ),
            Some(_) => Ok(pid),
        }
    }

    async fn start(&self, process: Target) -> anyhow::Result<()> {
        let script = self.dir.join(format!("{}.sh", process.name()));
        run(bash(&script)).await.map(drop)
    }

    async fn wait_gone(&self, process: Target, pid: u32, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while working_dir(pid).is_some() {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} (pid {pid}) did not exit within {} s",
                    process.name(),
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Flush {
    /// SCAN for the prefix and UNLINK what it finds, batch by batch
    /// (SCAN returns every key that exists throughout, whatever is deleted
    /// meanwhile); returns how many keys went.
    async fn run(&self) -> anyhow::Result<u64> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| {
                format!(
                    "cannot reach Redis at {}",
                    settings::SecretUrl::new(&self.url)
                )
            })?;
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let (mut cursor, mut deleted) = (0_u64, 0_u64);
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<u64>(&mut connection)
                    .await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// `services`: one `name port` a line; names that are no target (a
/// process added later) are left out.
fn parse_services(listing: &str) -> anyhow::Result<Vec<(Target, u16)>> {
    let mut processes = Vec::new();
    for line in listing.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(port), None) = (fields.next(), fields.next(), fields.next()) else {
            anyhow::bail!("`{line}` is not `name port`");
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("`{line}`: `{port}` is not a port"))?;
        if let Ok(target) = name.parse::<Target>() {
            processes.push((target, port));
        }
    }
    Ok(processes)
}

/// Escapes the glob characters of a SCAN MATCH pattern, so that a prefix
/// matches itself only.
fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The working directory of a live process; `None` when there is no such
/// process or it is a zombie (a killed process nobody has reaped yet: its
/// cwd link is gone with the rest of it).
fn working_dir(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

fn signal(name: &str, pid: u32) -> Command {
    let mut command = Command::new("kill");
    command.args(["-s", name, &pid.to_string()]);
    command
}

fn bash(script: &Path) -> Command {
    let mut command = Command::new("bash");
    command.arg(script);
    command
}

#[cfg(test)]
mod tests {
    use super::super::inject::shown;
    use super::*;

    #[test]
    fn services_lists_the_processes_with_their_ports() {
        let listing = "inventory 28081\norders 28080\n\nrelay-orders-2 28085\nmailer 29000\n";
        let processes = parse_services(listing).expect("a listing");
        assert_eq!(
            processes,
            [
                (Target::Inventory, 28081),
                (Target::Orders, 28080),
                (Target::RelayOrders2, 28085)
            ]
        );
    }

    #[test]
    fn a_broken_services_line_is_an_error() {
        assert!(parse_services("orders\n").is_err());
        assert!(parse_services("orders 80 90\n").is_err());
        let e = parse_services("orders http\n").expect_err("not a port");
        assert!(format!("{e:#}").contains("`http` is not a port"), "{e:#}");
    }

    #[test]
    fn a_prefix_with_glob_characters_matches_only_itself() {
        assert_eq!(escape_glob("native:"), "native:");
        assert_eq!(escape_glob(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    }

    #[test]
    fn signals_are_sent_with_kill() {
        assert_eq!(shown(&signal("STOP", 42)), "kill -s STOP 42");
    }

    fn native_in(dir: &Path) -> Native {
        Native {
            dir: std::fs::canonicalize(dir).expect("a directory"),
            processes: Vec::new(),
            redis: None,
        }
    }

    /// A pid file naming this test's own process, in a fresh directory.
    fn pid_file_of_this_process() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("faults-native-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("a scratch directory");
        std::fs::write(dir.join("orders.pid"), std::process::id().to_string()).expect("written");
        dir
    }

    #[test]
    fn a_pid_of_a_process_running_elsewhere_is_not_signalled() {
        // This process runs in the crate's directory, not in the scratch one.
        let dir = pid_file_of_this_process();
        let e = native_in(&dir).pid(Target::Orders).expect_err("not ours");
        assert!(e.to_string().contains("not ours, left alone"), "{e}");
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }

    /// A scratch system of one process, `orders` (a `sleep`), started the
    /// way `scripts/native-up` starts one: a script that runs it in the
    /// background from the directory, and the process writes its pid. The
    /// drop kills the process and removes the directory, even when a test
    /// fails.
    struct Scratch {
        native: Native,
        dir: PathBuf,
    }

    impl Scratch {
        async fn start() -> Self {
            let dir = std::env::temp_dir().join(format!("faults-native-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir(&dir).expect("a scratch directory");
            let script = format!(
                "cd '{}'\nsetsid bash -c 'echo $$ >orders.pid.new && mv orders.pid.new orders.pid \
                 && exec sleep 120' >/dev/null 2>&1 </dev/null &\n",
                dir.display()
            );
            std::fs::write(dir.join("orders.sh"), script).expect("written");
            let native = native_in(&dir);
            native.start(Target::Orders).await.expect("started");
            Self { native, dir }
        }

        /// The pid file's pid once the script has written it (one other
        /// than `not`, after a restart).
        async fn pid(&self, not: Option<u32>) -> u32 {
            for _ in 0..100 {
                match self.native.pid(Target::Orders) {
                    Ok(pid) if Some(pid) != not => return pid,
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("orders did not start");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Ok(pid) = self.native.pid(Target::Orders) {
                let _ = signal("KILL", pid).status();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Whether `pid` is stopped (state `T` in /proc).
    fn stopped(pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a process");
        let after_name = &stat[stat.rfind(')').expect("(comm)") + 2..];
        after_name.starts_with('T')
    }

    /// Whether `pid` comes to be `stopped` or not within a second: a
    /// signal is sent at once but acted on when the process next runs.
    async fn becomes(pid: u32, stop: bool) -> bool {
        for _ in 0..100 {
            if stopped(pid) == stop {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_killed_process_is_gone_and_started_again() {
        let scratch = Scratch::start().await;
        let first = scratch.pid(None).await;
        scratch
            .native
            .kill(Target::Orders)
            .await
            .expect("killed and started");
        let second = scratch.pid(Some(first)).await;
        assert!(working_dir(first).is_none(), "the first is gone");
        assert!(working_dir(second).is_some(), "the second runs");
    }

    #[tokio::test]
    async fn a_paused_process_is_stopped_until_resumed() {
        let scratch = Scratch::start().await;
        let pid = scratch.pid(None).await;
        let paused = scratch.native.pause(Target::Orders).await.expect("paused");
        assert!(becomes(pid, true).await, "stopped");
        paused.resume().await.expect("resumed");
        assert!(becomes(pid, false).await, "running again");
    }

    #[tokio::test]
    async fn a_pause_dropped_before_its_end_resumes_the_process() {
        let scratch = Scratch::start().await;
        let pid = scratch.pid(None).await;
        let paused = scratch.native.pause(Target::Orders).await.expect("paused");
        assert!(becomes(pid, true).await, "stopped");
        drop(paused);
        assert!(becomes(pid, false).await, "running again");
    }

    #[test]
    fn a_missing_process_is_not_running() {
        let dir = pid_file_of_this_process();
        // Pids are below 2^22 on Linux: this one cannot exist.
        std::fs::write(dir.join("inventory.pid"), "4294967295").expect("written");
        let e = native_in(&dir).pid(Target::Inventory).expect_err("gone");
        assert!(e.to_string().contains("inventory is not running"), "{e}");
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }
}
