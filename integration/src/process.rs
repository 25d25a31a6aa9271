//! Child processes that never outlive the harness.
//!
//! Every server and client the harness starts runs in its own process group (so a signal reaches
//! the whole tree, e.g. `mariadbd` and anything it forks) with `PR_SET_PDEATHSIG` set to SIGKILL
//! (so a harness killed with SIGKILL or a Ctrl-C that bypasses `Drop` still takes its children
//! along). [`ProcessGuard`] sends SIGTERM to the group on drop, waits a bounded time, then
//! SIGKILLs it.
//!
//! PDEATHSIG fires when the *thread* that forked exits; spawn guards from the thread that owns
//! them (a test function, the xtask main thread).

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// True when the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where a spawned process writes its output.
pub enum Output {
    /// Inherit the harness's stdout/stderr (console, `cargo xtask run`).
    Inherit,
    /// Both streams appended to this file (tests; shown on failure).
    File(PathBuf),
    /// stdout and stderr to separate files (clients whose stdout is data).
    Split { stdout: PathBuf, stderr: PathBuf },
}

/// A running child in its own process group; stopped on drop.
pub struct ProcessGuard {
    name: String,
    child: Child,
    log: Option<PathBuf>,
    /// How long the stop signal may take before SIGKILL.
    grace: Duration,
    /// The signal [`stop`](ProcessGuard::stop) sends first (SIGTERM unless set).
    stop_signal: libc::c_int,
}

impl ProcessGuard {
    /// Spawns `cmd` in a new process group with PDEATHSIG.
    pub fn spawn(name: &str, cmd: Command, output: Output) -> Result<ProcessGuard> {
        ProcessGuard::spawn_with_stdin(name, cmd, output, Stdio::null())
    }

    /// As [`spawn`](Self::spawn) with the given stdin (e.g. a file of queries).
    pub fn spawn_with_stdin(
        name: &str,
        mut cmd: Command,
        output: Output,
        stdin: Stdio,
    ) -> Result<ProcessGuard> {
        let log = match output {
            Output::Inherit => None,
            Output::File(path) => {
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot open log file `{}`", path.display()))?;
                cmd.stdout(f.try_clone()?).stderr(f);
                Some(path)
            }
            Output::Split { stdout, stderr } => {
                let out = File::create(&stdout)
                    .with_context(|| format!("cannot create `{}`", stdout.display()))?;
                let err = File::create(&stderr)
                    .with_context(|| format!("cannot create `{}`", stderr.display()))?;
                cmd.stdout(out).stderr(err);
                Some(stderr)
            }
        };
        cmd.stdin(stdin).process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(ProcessGuard {
            name: name.to_string(),
            child,
            log,
            grace: Duration::from_secs(10),
            stop_signal: libc::SIGTERM,
        })
    }

    /// Sets how long [`stop`](Self::stop) waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets the signal [`stop`](Self::stop) sends to the group first (e.g. SIGINT, PostgreSQL's
    /// fast shutdown; its SIGTERM is a smart shutdown that waits for clients).
    pub fn with_stop_signal(mut self, sig: libc::c_int) -> Self {
        self.stop_signal = sig;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The last `max_lines` lines of the log file, for failure messages.
    pub fn log_tail(&self, max_lines: usize) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(max_lines)..].join("\n")
    }

    /// `Some(status)` once the child exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Fails with the log tail when the child already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait()? {
            bail!(
                "{} exited early ({status}); log tail:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Sends `sig` to the whole process group.
    pub fn signal(&self, sig: libc::c_int) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill with a negative pid signals that process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }

    /// The stop signal (SIGTERM unless set) to the group, wait up to the grace period, then
    /// SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            // The leader is gone; make sure nothing else of the group survives.
            self.signal(libc::SIGKILL);
            return Some(status);
        }
        self.signal(self.stop_signal);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.signal(libc::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "[harness] {} did not stop within {:?} of signal {}: SIGKILL",
            self.name, self.grace, self.stop_signal
        );
        self.signal(libc::SIGKILL);
        self.child.wait().ok()
    }

    /// Waits for the child to exit on its own, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `probe` until it returns `Ok(Some(v))` or the deadline passes; the error names `what`
/// and the last probe error.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::from("condition not met");
    loop {
        match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last_err}");
        }
        std::thread::sleep(interval);
    }
}

/// A free loopback TCP port (bound then released; good enough for tests on one host).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs a command to completion, returning stdout; fails with stderr on a non-zero exit.
pub fn run_capture(mut cmd: Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wall-clock time now, in ns since the Unix epoch (the clock spans use).
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `/proc/<pid>/stat` fields after the command name: `(state, ppid, pgid)`.
fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces and parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some((state, ppid, pgid))
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

/// Every live (non-zombie) process on the host, with `(pid, ppid, pgid)`.
fn live_processes() -> Vec<(u32, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, ppid, pgid) = proc_stat(pid)?;
            (state != 'Z' && state != 'X').then_some((pid, ppid, pgid))
        })
        .collect()
}

/// Live children of `pid` (e.g. PostgreSQL backends of the postmaster), sorted.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = live_processes()
        .into_iter()
        .filter(|(_, ppid, _)| *ppid == pid)
        .map(|(p, _, _)| p)
        .collect();
    v.sort_unstable();
    v
}

/// Live members of process group `pgid` (a guard's pid is its group id), sorted.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = live_processes()
        .into_iter()
        .filter(|(_, _, g)| *g == pgid)
        .map(|(p, _, _)| p)
        .collect();
    v.sort_unstable();
    v
}

/// The command line of `pid` with NULs as spaces (PostgreSQL shows its process titles here).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s: Vec<u8> = raw
        .into_iter()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    Some(String::from_utf8_lossy(&s).trim_end().to_string())
}

/// Waits (up to `timeout`) until none of `pids` is alive; fails naming the survivors.
pub fn wait_gone(what: &str, pids: &[u32], timeout: Duration) -> Result<()> {
    poll_until(what, timeout, Duration::from_millis(20), || {
        let alive: Vec<String> = pids
            .iter()
            .filter(|p| pid_alive(**p))
            .map(|p| format!("{p} ({})", cmdline(*p).unwrap_or_default()))
            .collect();
        if alive.is_empty() {
            Ok(Some(()))
        } else {
            bail!("still alive: {}", alive.join(", "))
        }
    })
}

/// Polls until `127.0.0.1:port` (or `addr`) accepts a TCP connection, failing early when
/// `guard`'s process exited.
pub fn wait_tcp(what: &str, addr: std::net::SocketAddr, guard: &mut ProcessGuard) -> Result<()> {
    poll_until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(25),
        || {
            guard.ensure_running()?;
            Ok(
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| ()),
            )
        },
    )
}

/// uid and gid of a system user (e.g. `postgres`).
pub fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&name) && f.len() >= 4 {
            let uid = f[2].parse().context("uid in /etc/passwd")?;
            let gid = f[3].parse().context("gid in /etc/passwd")?;
            return Ok((uid, gid));
        }
    }
    bail!("no user `{name}` in /etc/passwd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_children_and_gone() {
        let mut cmd = Command::new("sh");
        // A child that outlives nothing: `sleep` forked by the shell in the same group.
        cmd.args(["-c", "sleep 30 & wait"]);
        let mut g = ProcessGuard::spawn(
            "sh",
            cmd,
            Output::Split {
                stdout: PathBuf::from("/dev/null"),
                stderr: PathBuf::from("/dev/null"),
            },
        )
        .expect("spawn")
        .with_grace(Duration::from_secs(2));
        let leader = g.pid();
        // Polled until the forked shell has exec'd `sleep` (its cmdline is `sh -c ...` before).
        let kid = poll_until(
            "the shell's sleeping child",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                Ok(children_of(leader)
                    .into_iter()
                    .find(|k| cmdline(*k).is_some_and(|c| c.starts_with("sleep 30"))))
            },
        )
        .expect("child");
        let members = group_members(leader);
        assert!(
            members.contains(&leader) && members.contains(&kid),
            "{members:?}"
        );
        assert!(pid_alive(kid));
        g.stop();
        wait_gone("the group", &members, Duration::from_secs(5)).expect("gone");
        assert!(group_members(leader).is_empty());
    }

    #[test]
    fn user_ids_of_root() {
        assert_eq!(user_ids("root").expect("root"), (0, 0));
        assert!(user_ids("no-such-user-e2e").is_err());
    }
}
