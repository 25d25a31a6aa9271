//! The MySQL load measurement of the e2e tests: N queries at full speed from the Python client
//! or the mariadb CLI over one connection; the tests assert completeness and zero loss and print
//! figures (never timed assertions). `cargo xtask bench` is [`crate::bench`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::clients::mysql::{LoadSpec, PyClient, Step, Via};
use crate::collector::Collector;
use crate::servers::mariadb::MariaDb;

/// The load query. Its table is used by nothing else, so its sanitised text identifies load
/// spans (comments would be stripped by the sanitiser, so a marker comment would not work).
pub const LOAD_SQL: &str = "SELECT id FROM load_marker WHERE id = {n}";
/// What the receiver should put in `db.query.text` for [`LOAD_SQL`].
pub const LOAD_SQL_SANITISED: &str = "SELECT id FROM load_marker WHERE id = ?";

/// One load run as the client measured it.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub pid: u32,
    /// Wall clock (unix ns) just before the client started: spans of this run start later.
    pub since_unix_ns: u64,
    pub count: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub qps: f64,
}

/// Runs `count` load queries over one TCP connection and waits for the client to finish.
pub fn run_load(dir: &Path, name: &str, db: &MariaDb, count: u64) -> Result<LoadResult> {
    let step = Step::Load {
        load: LoadSpec {
            sql: LOAD_SQL.to_string(),
            count,
            modulo: 100,
            prepared: false,
        },
    };
    let since_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let client = PyClient::spawn(dir, name, db, Via::Tcp, &[step], false)?;
    let pid = client.pid();
    let results = client.finish(Duration::from_secs(600))?;
    let r = results
        .iter()
        .find(|r| r.kind == "load")
        .context("the load client printed no summary")?;
    let elapsed = Duration::from_nanos(r.elapsed_ns.unwrap_or(0));
    Ok(LoadResult {
        pid,
        since_unix_ns,
        count: r.count.unwrap_or(0),
        errors: r.errors.unwrap_or(0),
        elapsed,
        qps: r.qps.unwrap_or(0.0),
    })
}

/// Which client generates the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadClient {
    /// `clients/mysql_client.py` (mysql-connector-python, pure Python).
    Python,
    /// The `mariadb` CLI (libmariadb, C) reading the queries from stdin in batch mode.
    Cli,
}

impl LoadClient {
    pub fn label(self) -> &'static str {
        match self {
            LoadClient::Python => "python (mysql-connector, pure)",
            LoadClient::Cli => "mariadb CLI (libmariadb)",
        }
    }
}

/// Runs `count` load queries through one `mariadb` CLI connection (batch mode, stdin).
pub fn run_load_cli(dir: &Path, name: &str, db: &MariaDb, count: u64) -> Result<LoadResult> {
    let script = dir.join(format!("{name}.sql"));
    let mut text = String::with_capacity(count as usize * 48);
    for i in 0..count {
        text.push_str(&LOAD_SQL.replace("{n}", &(i % 100 + 1).to_string()));
        text.push_str(";\n");
    }
    std::fs::write(&script, text)?;
    let mut cmd = db.cli_tcp();
    cmd.arg("-N")
        .arg("-B")
        .arg("-D")
        .arg(crate::servers::mariadb::DATABASE);
    let since_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let t0 = Instant::now();
    let stdin = std::fs::File::open(&script)?;
    let mut guard = crate::process::ProcessGuard::spawn_with_stdin(
        name,
        cmd,
        crate::process::Output::Split {
            stdout: PathBuf::from("/dev/null"),
            stderr: dir.join(format!("{name}.err")),
        },
        stdin.into(),
    )?;
    let pid = guard.pid();
    let status = guard.wait_timeout(Duration::from_secs(600))?;
    let elapsed = t0.elapsed();
    if !status.success() {
        bail!("mariadb CLI load failed ({status}): {}", guard.log_tail(10));
    }
    Ok(LoadResult {
        pid,
        since_unix_ns,
        count,
        errors: 0,
        elapsed,
        qps: count as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// CPU time and memory of a process from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    /// The anonymous part of `vm_rss_kib` (the process's allocations; the rest is file pages:
    /// its executable, libraries and shared mappings such as BPF rings).
    pub rss_anon_kib: u64,
}

pub fn proc_sample(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = (ticks(11) + ticks(12)) as f64 / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_s,
        vm_rss_kib: kib("VmRSS:"),
        vm_hwm_kib: kib("VmHWM:"),
        rss_anon_kib: kib("RssAnon:"),
    })
}

/// Spans of one load run: from the load client (CLIENT) and from the server (SERVER), started
/// after the run began (the server serves several runs).
pub fn count_load_spans(
    collector: &mut Collector,
    run: &LoadResult,
    server_pid: u32,
) -> Result<(usize, usize)> {
    let client_pid = run.pid;
    let spans = collector.spans()?;
    let mut client = 0;
    let mut server = 0;
    for s in spans
        .iter()
        .filter(|s| s.query_text() == Some(LOAD_SQL_SANITISED) && s.start_ns >= run.since_unix_ns)
    {
        if s.is_client() && s.pid() == Some(client_pid) {
            client += 1;
        } else if s.is_server() && s.pid() == Some(server_pid) {
            server += 1;
        }
    }
    Ok((client, server))
}

/// Waits until both sides have `count` load spans, the deadline passes, or the counts stop
/// growing for 5 s (spans that will never come); returns the final counts.
pub fn wait_load_spans(
    collector: &mut Collector,
    run: &LoadResult,
    server_pid: u32,
    count: usize,
    timeout: Duration,
) -> Result<(usize, usize)> {
    let deadline = Instant::now() + timeout;
    let mut last = (usize::MAX, usize::MAX);
    let mut last_change = Instant::now();
    loop {
        let now = count_load_spans(collector, run, server_pid)?;
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        let (c, s) = now;
        if (c >= count && s >= count)
            || Instant::now() >= deadline
            || last_change.elapsed() > Duration::from_secs(5)
        {
            return Ok(now);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
