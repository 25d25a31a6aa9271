//! The load measurement: N queries at full speed from the Python client, with and without the
//! receiver. Used by the e2e test (e), which asserts completeness and zero loss, and by
//! `cargo xtask bench`, which prints figures (never timed assertions).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::clients::{LoadSpec, PyClient, Step, Via};
use crate::collector::Collector;
use crate::mariadb::MariaDb;
use crate::process::free_port;
use crate::receiver::{LOSS_COUNTERS, Receiver};

/// The load query. Its table is used by nothing else, so its sanitised text identifies load
/// spans (comments would be stripped by the sanitiser, so a marker comment would not work).
pub const LOAD_SQL: &str = "SELECT id FROM load_marker WHERE id = {n}";
/// What the receiver should put in `db.query.text` for [`LOAD_SQL`].
pub const LOAD_SQL_SANITISED: &str = "SELECT id FROM load_marker WHERE id = ?";

/// One load run as the client measured it.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub pid: u32,
    pub count: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub qps: f64,
}

/// Runs `count` load queries over one TCP connection and waits for the client to finish.
pub fn run_load(dir: &Path, name: &str, db: &MariaDb, count: u64) -> Result<LoadResult> {
    let step = Step::Load {
        load: LoadSpec { sql: LOAD_SQL.to_string(), count, modulo: 100, prepared: false },
    };
    let client = PyClient::spawn(dir, name, db, Via::Tcp, &[step], false)?;
    let pid = client.pid();
    let results = client.finish(Duration::from_secs(600))?;
    let r = results.iter().find(|r| r.kind == "load").context("the load client printed no summary")?;
    let elapsed = Duration::from_nanos(r.elapsed_ns.unwrap_or(0));
    Ok(LoadResult {
        pid,
        count: r.count.unwrap_or(0),
        errors: r.errors.unwrap_or(0),
        elapsed,
        qps: r.qps.unwrap_or(0.0),
    })
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
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad /proc/<pid>/stat")?;
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
    Ok(ProcSample { cpu_s, vm_rss_kib: kib("VmRSS:"), vm_hwm_kib: kib("VmHWM:") })
}

/// Spans of the load query from the load client (CLIENT) and from the server (SERVER).
pub fn count_load_spans(collector: &mut Collector, client_pid: u32, server_pid: u32) -> Result<(usize, usize)> {
    let spans = collector.spans()?;
    let mut client = 0;
    let mut server = 0;
    for s in spans.iter().filter(|s| s.query_text() == Some(LOAD_SQL_SANITISED)) {
        if s.is_client() && s.pid() == Some(client_pid) {
            client += 1;
        } else if s.is_server() && s.pid() == Some(server_pid) {
            server += 1;
        }
    }
    Ok((client, server))
}

/// Waits until both sides have `count` load spans (or the deadline), returns the final counts.
pub fn wait_load_spans(
    collector: &mut Collector,
    client_pid: u32,
    server_pid: u32,
    count: usize,
    timeout: Duration,
) -> Result<(usize, usize)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (c, s) = count_load_spans(collector, client_pid, server_pid)?;
        if (c >= count && s >= count) || Instant::now() >= deadline {
            return Ok((c, s));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Figures of one bench run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub queries: u64,
    pub qps_without: f64,
    pub qps_with: f64,
    pub qps_without_after: f64,
    pub receiver_cpu_s: f64,
    pub run_wall_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub kernel_data_bytes: f64,
    pub kernel_data_events: f64,
    pub kernel_control_events: f64,
    pub loss: Vec<(String, f64)>,
    pub spans_dropped: f64,
    pub client_spans: usize,
    pub server_spans: usize,
}

impl BenchReport {
    pub fn print(&self) {
        let q = self.queries as f64;
        println!("== ebpf-receiver load benchmark ({} queries, one Python connection, loopback MariaDB) ==", self.queries);
        println!("queries/s without receiver        {:>10.0}", self.qps_without);
        println!("queries/s with receiver           {:>10.0}  ({:+.1}% vs without)", self.qps_with, (self.qps_with / self.qps_without - 1.0) * 100.0);
        println!("queries/s without (after)         {:>10.0}  (drift check)", self.qps_without_after);
        println!("receiver CPU (utime+stime)        {:>10.3} s over {:.2} s wall = {:.1}% of one core, {:.1} µs/query",
            self.receiver_cpu_s, self.run_wall_s, self.receiver_cpu_s / self.run_wall_s.max(1e-9) * 100.0, self.receiver_cpu_s / q * 1e6);
        println!("receiver RSS (VmRSS / VmHWM)      {:>10.1} MiB / {:.1} MiB", self.rss_kib as f64 / 1024.0, self.hwm_kib as f64 / 1024.0);
        println!("kernel→user data bytes per query  {:>10.1}  ({} bytes, {} data events, {} control events; both ends traced)",
            self.kernel_data_bytes / q, self.kernel_data_bytes, self.kernel_data_events, self.kernel_control_events);
        for (k, v) in &self.loss {
            println!("lost: {k} = {v}");
        }
        println!("spans dropped (all reasons)       {:>10}", self.spans_dropped);
        println!("load spans in the Collector       CLIENT {} / SERVER {} of {} queries", self.client_spans, self.server_spans, self.queries);
    }
}

/// The whole bench: baseline, with receiver, baseline again, all against one server and one
/// Collector in `dir`.
pub fn bench(dir: &Path, queries: u64) -> Result<BenchReport> {
    let db = MariaDb::start(&dir.join("db"), free_port()?, crate::process::Output::File(dir.join("mariadbd.log")))?;
    let mut collector = Collector::start_test(dir, free_port()?)?;
    println!("[bench] warm-up");
    run_load(dir, "warmup", &db, 2000.min(queries))?;
    println!("[bench] {queries} queries without the receiver");
    let without = run_load(dir, "without", &db, queries)?;
    println!("[bench] starting the receiver");
    let metrics_port = free_port()?;
    let mut receiver = Receiver::start(dir, &collector.endpoint(), metrics_port)?;
    let before = receiver.metrics()?;
    let cpu0 = proc_sample(receiver.pid())?;
    println!("[bench] {queries} queries with the receiver");
    let t0 = Instant::now();
    let with = run_load(dir, "with", &db, queries)?;
    let (client_spans, server_spans) =
        wait_load_spans(&mut collector, with.pid, db.pid(), queries as usize, Duration::from_secs(60))?;
    let run_wall_s = t0.elapsed().as_secs_f64();
    let cpu1 = proc_sample(receiver.pid())?;
    let after = receiver.metrics()?;
    receiver.ensure_running()?;
    drop(receiver);
    println!("[bench] {queries} queries without the receiver (again)");
    let without_after = run_load(dir, "without2", &db, queries)?;
    if with.errors + without.errors > 0 {
        bail!("load queries failed: {} without, {} with the receiver", without.errors, with.errors);
    }
    let delta = |k: &str| after.get(k) - before.get(k);
    Ok(BenchReport {
        queries,
        qps_without: without.qps,
        qps_with: with.qps,
        qps_without_after: without_after.qps,
        receiver_cpu_s: cpu1.cpu_s - cpu0.cpu_s,
        run_wall_s,
        rss_kib: cpu1.vm_rss_kib,
        hwm_kib: cpu1.vm_hwm_kib,
        kernel_data_bytes: delta("ebpf_receiver_kernel_bytes_total{stream=\"data\"}"),
        kernel_data_events: delta("ebpf_receiver_kernel_events_total{stream=\"data\"}"),
        kernel_control_events: delta("ebpf_receiver_kernel_events_total{stream=\"control\"}"),
        loss: LOSS_COUNTERS.iter().map(|k| (k.to_string(), after.get(k))).collect(),
        spans_dropped: after.sum("ebpf_receiver_spans_dropped_total"),
        client_spans,
        server_spans,
    })
}
