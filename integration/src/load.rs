//! The load measurement: N queries at full speed from the Python client, with and without the
//! receiver. Used by the e2e test (e), which asserts completeness and zero loss, and by
//! `cargo xtask bench`, which prints figures (never timed assertions).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::clients::mysql::{LoadSpec, PyClient, Step, Via};
use crate::collector::Collector;
use crate::process::free_port;
use crate::receiver::{LOSS_COUNTERS, Receiver};
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

fn run_load_with(
    client: LoadClient,
    dir: &Path,
    name: &str,
    db: &MariaDb,
    count: u64,
) -> Result<LoadResult> {
    match client {
        LoadClient::Python => run_load(dir, name, db, count),
        LoadClient::Cli => run_load_cli(dir, name, db, count),
    }
}

/// CPU time and memory of a process from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
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

/// Figures of one bench round (one load without, one with the receiver).
#[derive(Clone, Debug)]
pub struct BenchRound {
    pub qps_without: f64,
    pub qps_with: f64,
    /// Receiver utime+stime while the load ran (start of load → spans drained).
    pub receiver_cpu_s: f64,
    /// Wall time of the load with the receiver.
    pub load_wall_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub kernel_data_bytes: f64,
    pub kernel_data_events: f64,
    pub kernel_control_events: f64,
    /// Kernel loss counters (cumulative for this receiver instance).
    pub loss: Vec<(String, f64)>,
    pub spans_dropped: f64,
    pub client_spans: usize,
    pub server_spans: usize,
}

/// Figures of a bench run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub client: LoadClient,
    pub queries: u64,
    pub rounds: Vec<BenchRound>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl BenchReport {
    pub fn print(&self) {
        let q = self.queries as f64;
        let n = self.rounds.len() as f64;
        println!();
        println!(
            "== ebpf-receiver load benchmark: {} queries per run, {} rounds (without, with) alternating, \
             one connection from {}, loopback MariaDB ==",
            self.queries,
            self.rounds.len(),
            self.client.label()
        );
        println!(
            "round  q/s without  q/s with   receiver CPU   RSS MiB  data B/query  spans CLIENT/SERVER  lost"
        );
        for (i, r) in self.rounds.iter().enumerate() {
            let lost: f64 = r.loss.iter().map(|(_, v)| v).sum::<f64>() + r.spans_dropped;
            println!(
                "{:>5}  {:>11.0}  {:>8.0}   {:>6.3} s {:>4.0}%  {:>7.1}  {:>12.1}  {:>8}/{:<8}      {}",
                i + 1,
                r.qps_without,
                r.qps_with,
                r.receiver_cpu_s,
                r.receiver_cpu_s / r.load_wall_s.max(1e-9) * 100.0,
                r.rss_kib as f64 / 1024.0,
                r.kernel_data_bytes / q,
                r.client_spans,
                r.server_spans,
                lost
            );
        }
        let without = median(self.rounds.iter().map(|r| r.qps_without).collect());
        let with = median(self.rounds.iter().map(|r| r.qps_with).collect());
        let cpu: f64 = self.rounds.iter().map(|r| r.receiver_cpu_s).sum();
        let wall: f64 = self.rounds.iter().map(|r| r.load_wall_s).sum();
        let bytes: f64 = self.rounds.iter().map(|r| r.kernel_data_bytes).sum::<f64>() / n;
        let events: f64 = self
            .rounds
            .iter()
            .map(|r| r.kernel_data_events)
            .sum::<f64>()
            / n;
        let hwm = self.rounds.iter().map(|r| r.hwm_kib).max().unwrap_or(0);
        let rss = self.rounds.last().map_or(0, |r| r.rss_kib);
        println!("---");
        println!("queries/s without receiver (median)   {without:>10.0}");
        println!(
            "queries/s with receiver (median)      {with:>10.0}   ({:+.1}% vs without)",
            (with / without.max(1e-9) - 1.0) * 100.0
        );
        println!(
            "receiver CPU (utime+stime)            {cpu:>10.3} s over {wall:.2} s of load = {:.1}% of one core, {:.1} µs/query",
            cpu / wall.max(1e-9) * 100.0,
            cpu / (q * n) * 1e6
        );
        println!(
            "receiver RSS (VmRSS last / VmHWM max) {:>10.1} MiB / {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        println!(
            "kernel→user data per query            {:>10.1} bytes, {:.2} data events (all traced ends of the connection)",
            bytes / q,
            events / q
        );
        for key in crate::receiver::LOSS_COUNTERS {
            let v: f64 = self
                .rounds
                .iter()
                .map(|r| {
                    r.loss
                        .iter()
                        .filter(|(k, _)| k == key)
                        .map(|(_, v)| v)
                        .sum::<f64>()
                })
                .sum();
            println!("events lost: {key} = {v}");
        }
        println!(
            "spans dropped (all reasons)           {:>10}",
            self.rounds.iter().map(|r| r.spans_dropped).sum::<f64>()
        );
        println!(
            "load spans in the Collector           CLIENT {} / SERVER {} of {} queries",
            self.rounds.iter().map(|r| r.client_spans).sum::<usize>(),
            self.rounds.iter().map(|r| r.server_spans).sum::<usize>(),
            self.queries * self.rounds.len() as u64
        );
    }
}

/// The whole bench against one server and one Collector in `dir`: a warm-up, then `rounds` ×
/// (load without the receiver, load with a freshly started receiver).
pub fn bench(dir: &Path, client: LoadClient, queries: u64, rounds: usize) -> Result<BenchReport> {
    let db = MariaDb::start(
        &dir.join("db"),
        free_port()?,
        crate::process::Output::File(dir.join("mariadbd.log")),
    )?;
    let mut collector = Collector::start_test(dir, free_port()?)?;
    println!("[bench] client: {}; warm-up", client.label());
    run_load_with(client, dir, "warmup", &db, 2000.min(queries))?;
    let mut out = Vec::new();
    for round in 1..=rounds {
        println!("[bench] round {round}/{rounds}: {queries} queries without the receiver");
        let without = run_load_with(client, dir, &format!("without{round}"), &db, queries)?;
        let rdir = dir.join(format!("round{round}"));
        std::fs::create_dir_all(&rdir)?;
        let mut receiver = Receiver::start(&rdir, &collector.endpoint(), free_port()?)?;
        println!("[bench] round {round}/{rounds}: {queries} queries with the receiver");
        let before = receiver.metrics()?;
        let cpu0 = proc_sample(receiver.pid())?;
        let with = run_load_with(client, dir, &format!("with{round}"), &db, queries)?;
        let (client_spans, server_spans) = wait_load_spans(
            &mut collector,
            &with,
            db.pid(),
            queries as usize,
            Duration::from_secs(60),
        )?;
        let cpu1 = proc_sample(receiver.pid())?;
        let after = receiver.metrics()?;
        receiver.ensure_running()?;
        drop(receiver);
        if with.errors + without.errors > 0 {
            bail!(
                "load queries failed: {} without, {} with the receiver",
                without.errors,
                with.errors
            );
        }
        let delta = |k: &str| after.get(k) - before.get(k);
        out.push(BenchRound {
            qps_without: without.qps,
            qps_with: with.qps,
            receiver_cpu_s: cpu1.cpu_s - cpu0.cpu_s,
            load_wall_s: with.elapsed.as_secs_f64(),
            rss_kib: cpu1.vm_rss_kib,
            hwm_kib: cpu1.vm_hwm_kib,
            kernel_data_bytes: delta("ebpf_receiver_kernel_bytes_total{stream=\"data\"}"),
            kernel_data_events: delta("ebpf_receiver_kernel_events_total{stream=\"data\"}"),
            kernel_control_events: delta("ebpf_receiver_kernel_events_total{stream=\"control\"}"),
            loss: LOSS_COUNTERS
                .iter()
                .map(|k| (k.to_string(), after.get(k)))
                .collect(),
            spans_dropped: after.sum("ebpf_receiver_spans_dropped_total"),
            client_spans,
            server_spans,
        });
    }
    Ok(BenchReport {
        client,
        queries,
        rounds: out,
    })
}
