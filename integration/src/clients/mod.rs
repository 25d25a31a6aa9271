//! Real clients driven as processes, one module per protocol. Each driver returns the ground
//! truth a test compares spans with: the client's pid (the `process.pid` of its CLIENT spans),
//! its exit status and output, and — where the client can tell — what it sent and how long each
//! request took by its own clock.
//!
//! | module | clients |
//! |---|---|
//! | [`mysql`] | the `mariadb` CLI, `clients/mysql_client.py` (mysql-connector-python) |
//! | [`http`] | `curl`, `wrk`, `clients/http_requests.py` (requests), `clients/http_raw.py` (raw socket: pipelining, `Expect: 100-continue`, split writes) |
//! | [`postgres`] | `psql`, `pgbench` (`-M simple/extended/prepared`), `clients/pg_client.py` (psycopg 3: server-side prepared statements, errors, pipeline mode) |
//! | [`redis`] | `redis-cli`, `redis-benchmark` (with and without `-P`), `clients/redis_client.py` (redis-py) |
//! | [`dns`] | `dig` (UDP and `+tcp`), `clients/resolve.py` (`socket.getaddrinfo` inside a mount namespace whose resolv.conf names the test dnsmasq) |
//!
//! The generic pieces live here: [`run`]/[`spawn`] run any [`Command`] as a guarded process
//! with stdout/stderr in `<dir>/<name>.out` / `.err`, returning a [`ClientRun`]; [`run_plan`] /
//! [`spawn_plan`] drive the plan-based Python scripts, which print one JSON [`Record`] per
//! request (`start_unix_ns`/`end_unix_ns` wall clock, `duration_ns` from a monotonic clock) and
//! can hold after connecting until the test says go (to open a connection before the receiver
//! starts).

pub mod dns;
pub mod http;
pub mod mysql;
pub mod postgres;
pub mod redis;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::paths;
use crate::process::{Output, ProcessGuard, poll_until, unix_now_ns};

/// How long [`run`] and [`run_plan`] wait for a client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A finished client process.
#[derive(Clone, Debug)]
pub struct ClientRun {
    pub name: String,
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Wall clock just before the spawn and just after the exit was seen: every span of this
    /// client lies inside.
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
}

impl ClientRun {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails with the exit status and stderr unless the client exited 0.
    pub fn ensure_success(&self) -> Result<()> {
        if !self.success() {
            bail!(
                "{} (pid {}) failed ({}):\nstdout: {}\nstderr: {}",
                self.name,
                self.pid,
                self.status,
                tail(&self.stdout, 20),
                tail(&self.stderr, 20)
            );
        }
        Ok(())
    }

    /// stdout parsed as JSON lines.
    pub fn records(&self) -> Result<Vec<Record>> {
        parse_records(&self.stdout).with_context(|| format!("output of {}", self.name))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A client still running (spawned in the background).
pub struct RunningClient {
    name: String,
    guard: ProcessGuard,
    stdout: PathBuf,
    stderr: PathBuf,
    start_unix_ns: u64,
    /// For held plan clients: created once connected.
    pub ready_file: PathBuf,
    /// For held plan clients: the client waits for it before its first step.
    pub go_file: PathBuf,
}

impl RunningClient {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Waits until a held plan client has connected (its ready file exists).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let ready = self.ready_file.clone();
        let name = self.name.clone();
        let guard = &mut self.guard;
        poll_until(
            &format!("{name} to connect"),
            timeout,
            Duration::from_millis(20),
            || {
                guard.ensure_running()?;
                Ok(ready.exists().then_some(()))
            },
        )
    }

    /// Lets a held plan client run its steps.
    pub fn go(&self) -> Result<()> {
        std::fs::write(&self.go_file, b"go")?;
        Ok(())
    }

    /// Waits for the exit (up to `timeout`, then the client is killed and this fails).
    pub fn finish(mut self, timeout: Duration) -> Result<ClientRun> {
        let status = self.guard.wait_timeout(timeout)?;
        let end_unix_ns = unix_now_ns();
        Ok(ClientRun {
            name: self.name.clone(),
            pid: self.guard.pid(),
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            start_unix_ns: self.start_unix_ns,
            end_unix_ns,
        })
    }

    /// Stops the client now (SIGTERM to its group, then SIGKILL).
    pub fn kill(mut self) -> Option<ExitStatus> {
        self.guard.stop()
    }
}

/// Starts `cmd` as a guarded process (own process group, killed with the harness) with stdin
/// from /dev/null, stdout/stderr in `dir/<name>.out` / `dir/<name>.err`.
pub fn spawn(dir: &Path, name: &str, cmd: Command) -> Result<RunningClient> {
    spawn_with_stdin(dir, name, cmd, Stdio::null())
}

/// As [`spawn`] with the given stdin (e.g. `File::open(script)?.into()`).
pub fn spawn_with_stdin(
    dir: &Path,
    name: &str,
    cmd: Command,
    stdin: Stdio,
) -> Result<RunningClient> {
    let stdout = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    let start_unix_ns = unix_now_ns();
    let guard = ProcessGuard::spawn_with_stdin(
        name,
        cmd,
        Output::Split {
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        },
        stdin,
    )?
    .with_grace(Duration::from_secs(5));
    Ok(RunningClient {
        name: name.to_string(),
        guard,
        stdout,
        stderr,
        start_unix_ns,
        ready_file: dir.join(format!("{name}.ready")),
        go_file: dir.join(format!("{name}.go")),
    })
}

/// Runs `cmd` to completion (up to [`DEFAULT_TIMEOUT`]). A non-zero exit is **not** an error
/// here (tests of failing clients need the run); see [`run_ok`].
pub fn run(dir: &Path, name: &str, cmd: Command) -> Result<ClientRun> {
    spawn(dir, name, cmd)?.finish(DEFAULT_TIMEOUT)
}

/// As [`run`], failing unless the client exits 0.
pub fn run_ok(dir: &Path, name: &str, cmd: Command) -> Result<ClientRun> {
    let r = run(dir, name, cmd)?;
    r.ensure_success()?;
    Ok(r)
}

/// As [`run`] with `input` on stdin (written to `dir/<name>.in`).
pub fn run_with_input(dir: &Path, name: &str, cmd: Command, input: &[u8]) -> Result<ClientRun> {
    let path = dir.join(format!("{name}.in"));
    std::fs::write(&path, input)?;
    let stdin = std::fs::File::open(&path)?;
    spawn_with_stdin(dir, name, cmd, stdin.into())?.finish(DEFAULT_TIMEOUT)
}

/// The venv's Python running `integration/clients/<script>`.
pub fn python(script: &str) -> Command {
    let mut c = Command::new(paths::python());
    c.arg(paths::clients_dir().join(script))
        // Unbuffered: a killed client still leaves every line it printed.
        .env("PYTHONUNBUFFERED", "1");
    c
}

/// One JSON line printed by a plan client: `kind` plus any fields.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    pub kind: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }
    /// `ok` (true unless the record says otherwise).
    pub fn ok(&self) -> bool {
        self.bool("ok").unwrap_or(true)
    }
    /// Wall clock when the client started the request.
    pub fn start_unix_ns(&self) -> Option<u64> {
        self.u64("start_unix_ns")
    }
    /// Wall clock when the client had the whole response.
    pub fn end_unix_ns(&self) -> Option<u64> {
        self.u64("end_unix_ns")
    }
    /// The client's own measurement (monotonic clock) of the request.
    pub fn duration_ns(&self) -> Option<u64> {
        self.u64("duration_ns")
    }
}

/// Parses JSON lines (blank lines skipped).
pub fn parse_records(text: &str) -> Result<Vec<Record>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON line {l:?}")))
        .collect()
}

/// A finished plan client.
#[derive(Clone, Debug)]
pub struct PlanRun {
    pub run: ClientRun,
    /// The `connected` line (`pid`, plus what the client knows about its connection, e.g.
    /// `local_port`, psycopg's `backend_pid`), when the script prints one.
    pub connected: Option<Record>,
    /// Every other line, in order (one per request/step).
    pub records: Vec<Record>,
}

impl PlanRun {
    pub fn pid(&self) -> u32 {
        self.run.pid
    }

    /// The client's local port, from its `connected` line.
    pub fn local_port(&self) -> Result<u16> {
        self.connected
            .as_ref()
            .and_then(|c| c.u64("local_port"))
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("no local_port in {:?}", self.connected))
    }

    /// Records of one `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<&Record> {
        self.records.iter().filter(|r| r.kind == kind).collect()
    }

    /// Splits a finished run's output.
    pub fn from_run(run: ClientRun) -> Result<PlanRun> {
        let mut connected = None;
        let mut records = Vec::new();
        for r in run.records()? {
            if r.kind == "connected" && connected.is_none() {
                connected = Some(r);
            } else {
                records.push(r);
            }
        }
        Ok(PlanRun {
            run,
            connected,
            records,
        })
    }
}

/// Starts a plan client: writes `plan` to `dir/<name>.plan.json`, appends `--plan <file>` to
/// `cmd` (a [`python`] command with its connection arguments), and with `hold` also
/// `--ready-file`/`--go-file` (see [`RunningClient::wait_ready`] and [`RunningClient::go`]).
pub fn spawn_plan(
    dir: &Path,
    name: &str,
    mut cmd: Command,
    plan: &Value,
    hold: bool,
) -> Result<RunningClient> {
    let plan_path = dir.join(format!("{name}.plan.json"));
    std::fs::write(&plan_path, serde_json::to_vec_pretty(plan)?)?;
    cmd.arg("--plan").arg(&plan_path);
    if hold {
        cmd.arg("--ready-file")
            .arg(dir.join(format!("{name}.ready")))
            .arg("--go-file")
            .arg(dir.join(format!("{name}.go")));
    }
    spawn(dir, name, cmd)
}

/// Finishes a plan client, failing when it exited non-zero (scripts report per-request errors
/// as records and exit 0; a non-zero exit is a broken run).
pub fn finish_plan(client: RunningClient, timeout: Duration) -> Result<PlanRun> {
    let run = client.finish(timeout)?;
    run.ensure_success()?;
    PlanRun::from_run(run)
}

/// [`spawn_plan`] without holding, then [`finish_plan`].
pub fn run_plan(dir: &Path, name: &str, cmd: Command, plan: &Value) -> Result<PlanRun> {
    finish_plan(spawn_plan(dir, name, cmd, plan, false)?, DEFAULT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_every_field() {
        let r = parse_records(
            "{\"kind\":\"connected\",\"pid\":7}\n\n{\"kind\":\"query\",\"ok\":false,\"start_unix_ns\":5,\"sqlstate\":\"42601\"}\n",
        )
        .expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].u64("pid"), Some(7));
        assert!(!r[1].ok());
        assert!(r[0].ok());
        assert_eq!(r[1].start_unix_ns(), Some(5));
        assert_eq!(r[1].str("sqlstate"), Some("42601"));
        assert!(parse_records("{not json").is_err());
    }

    #[test]
    fn run_reports_pid_status_and_output() {
        let dir = std::env::temp_dir().join(format!("clients-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut c = Command::new("sh");
        c.args(["-c", "echo $$; echo oops >&2; exit 3"]);
        let r = run(&dir, "sh", c).expect("run");
        assert_eq!(r.stdout.trim(), r.pid.to_string());
        assert_eq!(r.stderr.trim(), "oops");
        assert_eq!(r.status.code(), Some(3));
        assert!(r.ensure_success().is_err());
        assert!(r.start_unix_ns <= r.end_unix_ns);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
