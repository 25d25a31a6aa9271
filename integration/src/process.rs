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
    /// How long SIGTERM may take before SIGKILL.
    grace: Duration,
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
        })
    }

    /// Sets how long [`stop`](Self::stop) waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
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

    /// SIGTERM to the group, wait up to the grace period, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            // The leader is gone; make sure nothing else of the group survives.
            self.signal(libc::SIGKILL);
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.signal(libc::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "[harness] {} did not stop within {:?} of SIGTERM: SIGKILL",
            self.name, self.grace
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
