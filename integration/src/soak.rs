//! `cargo xtask soak [MINUTES]` (issue 8, R13): the receiver under a long mixed load with
//! connection churn and a Collector restart in the middle; do its memory, its BPF maps and its
//! export queue stay flat, does every span arrive, and are the kernel's connection entries
//! given back once the clients are gone?
//!
//! What runs (every server private, in `target/soak/<run>/`):
//! - Redis, nginx in front of its Python upstream, PostgreSQL (`log_statement=all`), dnsmasq;
//! - long-lived fixed-rate load: `loadgen` against Redis ([`REDIS_RATE`]) and against nginx's
//!   proxied `/api/` ([`HTTP_RATE`]), keep-alive connections for the whole run;
//! - churn: short-lived client processes started back to back, each a few requests and gone
//!   (`redis-cli`, `redis-benchmark -k 0` reconnecting for every request, `curl` keeping its
//!   connection alive or closing it after every transfer, `psql`, `dig` over UDP and TCP):
//!   new pids all the time (the kernel's pid space wraps during a long run), the same fds
//!   reused within and across processes, processes that exit without closing their sockets;
//! - the stock Collector, stopped with SIGTERM and started again halfway through (the receiver
//!   queues meanwhile); it writes every span as OTLP JSON into a FIFO that the harness reads
//!   and counts as it goes (nothing is stored);
//! - the receiver with its shipped defaults, tracing this run's processes only
//!   (`targets.pids`: the servers and the harness, so every process they start is traced from
//!   its first syscall; the machine is shared, and other people's load would fill the same
//!   export queue).
//!
//! Sampled every few seconds: the receiver's VmRSS, the entries of every BPF hash map it holds
//! (`bpftool -j map dump`; CONNS split into entries of this run's processes and the rest of
//! the host), its export queue (bytes, spans), spans created/exported/dropped, kernel drops,
//! and the spans the Collector delivered so far.
//!
//! Ground truth comes from the servers' own counters, taken when the receiver is ready and at
//! the end: Redis `INFO commandstats`, nginx's access log, the upstream's request log,
//! PostgreSQL's statement log, dnsmasq's query log. Every request of the run came from one of
//! its clients, all traced, so each must have one SERVER span and one CLIENT span.
//!
//! The promises checked (exit non-zero when one fails): completeness ≥ 99.9 % per protocol and
//! side (and no more spans than requests: no duplicates); RSS, the run's CONNS entries and the
//! queue bytes of the last third within ±5 % of the first third (of the last and first ten
//! minutes in a 30-minute run; small absolute floors so that near-zero values do not fail on
//! noise); after every client has exited, no CONNS entry of this run's clients, and none naming
//! a socket that no longer exists; the receiver never stopped. Output: `samples.csv`,
//! `summary.json` and `soak.png` (RSS, map entries, queue, span rates over time), drawn by
//! `integration/clients/soak_charts.py`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::bench::procs;
use crate::clients;
use crate::collector::{SpanView, parse_otlp_json, wait_otlp_port};
use crate::load::proc_sample;
use crate::paths;
use crate::process::{Output, ProcessGuard, free_port, run_capture, unix_now_ns};
use crate::receiver::{Metrics, Receiver};
use crate::servers::dnsmasq::{self, Dnsmasq};
use crate::servers::nginx::{Nginx, SMALL};
use crate::servers::postgres::{self, PgOptions, Postgres};
use crate::servers::redis::Redis;

/// Redis requests per second from `loadgen` (4 keep-alive connections).
pub const REDIS_RATE: u64 = 300;
/// HTTP requests per second from `loadgen` to nginx's proxied `/api/` (4 connections).
pub const HTTP_RATE: u64 = 100;
/// A churn client is started this often (one at a time).
const CHURN_PERIOD: Duration = Duration::from_millis(100);
/// How long the Collector stays down halfway through.
const COLLECTOR_DOWN: Duration = Duration::from_secs(5);
/// The promise: completeness at least this.
const COMPLETENESS: f64 = 0.999;
/// The promise: the last third within this fraction of the first.
const FLAT: f64 = 0.05;
/// Absolute floors of the flatness comparison (below them a difference is noise).
const FLAT_FLOOR_RSS_KIB: f64 = 1024.0;
const FLAT_FLOOR_ENTRIES: f64 = 16.0;
const FLAT_FLOOR_QUEUE_BYTES: f64 = 1024.0 * 1024.0;

/// `cargo xtask soak` options.
#[derive(Clone, Debug)]
pub struct Options {
    pub minutes: f64,
    /// Seconds between samples.
    pub sample_secs: f64,
    /// Report directory (default `target/soak/<date-time>`).
    pub out_dir: Option<PathBuf>,
    /// The `loadgen` binary.
    pub loadgen: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// Counting the spans the Collector delivers

/// Protocols of the run.
const PROTOCOLS: [&str; 4] = ["redis", "http", "postgresql", "dns"];

/// Who the run's servers are, to tell this run's spans from the rest of the host's.
#[derive(Clone, Debug)]
struct Targets {
    redis_port: u16,
    redis_pid: u32,
    nginx_port: u16,
    nginx_pid: u32,
    upstream_port: u16,
    upstream_pid: u32,
    pg_port: u16,
    dns_addr: String,
}

fn exe(s: &SpanView) -> &str {
    s.resource
        .get("process.executable.name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

fn port_attr(s: &SpanView, key: &str) -> Option<u16> {
    s.int_attr(key).and_then(|p| u16::try_from(p).ok())
}

impl Targets {
    /// `(protocol, side)` of a span of this run, `None` for the rest of the host. Redis `INFO`
    /// (the harness reading the ground truth) is left out.
    fn classify(&self, s: &SpanView) -> Option<(&'static str, &'static str)> {
        let pid = s.pid();
        let peer = port_attr(s, "network.peer.port");
        let server_port = port_attr(s, "server.port");
        if s.is_server() {
            let proto = if pid == Some(self.redis_pid) {
                "redis"
            } else if pid == Some(self.nginx_pid) || pid == Some(self.upstream_pid) {
                "http"
            } else if exe(s) == "postgres" && server_port == Some(self.pg_port) {
                "postgresql"
            } else if exe(s) == "dnsmasq"
                && s.str_attr("server.address") == Some(self.dns_addr.as_str())
            {
                "dns"
            } else {
                return None;
            };
            return (proto != "redis" || s.name != "INFO").then_some((proto, "server"));
        }
        if !s.is_client() {
            return None;
        }
        let proto = if peer == Some(self.redis_port) {
            "redis"
        } else if peer == Some(self.nginx_port) || peer == Some(self.upstream_port) {
            "http"
        } else if peer == Some(self.pg_port) {
            "postgresql"
        } else if peer == Some(53) && s.str_attr("network.peer.address") == Some(&self.dns_addr) {
            "dns"
        } else {
            return None;
        };
        (proto != "redis" || s.name != "INFO").then_some((proto, "client"))
    }
}

/// What the FIFO reader counted.
#[derive(Debug, Default)]
struct Tally {
    /// Spans of this run by `(protocol, side)`.
    spans: BTreeMap<(&'static str, &'static str), u64>,
    /// Span ids of this run seen more than once.
    duplicates: u64,
    /// Spans of other processes on the host.
    foreign: u64,
    lines: u64,
    bad_lines: u64,
    seen: HashSet<u64>,
}

impl Tally {
    fn ours(&self) -> u64 {
        self.spans.values().sum()
    }
}

/// Reads the Collector's FIFO until a `STOP` line: opened read-write, so it never sees an end
/// of file while the Collector restarts, and the Collector's open never blocks.
fn spawn_reader(
    fifo: PathBuf,
    targets: Targets,
    tally: Arc<Mutex<Tally>>,
) -> Result<std::thread::JoinHandle<()>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .with_context(|| format!("open the FIFO `{}`", fifo.display()))?;
    Ok(std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = line.trim();
            if text == "STOP" {
                break;
            }
            if text.is_empty() {
                continue;
            }
            let spans = parse_otlp_json(text);
            let Ok(mut t) = tally.lock() else { break };
            t.lines += 1;
            let Ok(spans) = spans else {
                t.bad_lines += 1;
                continue;
            };
            for s in &spans {
                match targets.classify(s) {
                    Some(key) => {
                        *t.spans.entry(key).or_default() += 1;
                        let id = u64::from_str_radix(&s.span_id, 16).unwrap_or(0);
                        if !t.seen.insert(id) {
                            t.duplicates += 1;
                        }
                    }
                    None => t.foreign += 1,
                }
            }
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// The Collector

struct SoakCollector {
    guard: ProcessGuard,
    otlp_port: u16,
    metrics_port: u16,
    fifo: PathBuf,
    log: PathBuf,
    starts: u32,
}

impl SoakCollector {
    fn spawn(otlp_port: u16, metrics_port: u16, fifo: &Path, log: &Path) -> Result<ProcessGuard> {
        let mut cmd = Command::new(paths::collector_bin());
        cmd.arg("--config")
            .arg(paths::collector_config_dir().join("soak.yaml"))
            .env("SOAK_OTLP_PORT", otlp_port.to_string())
            .env("SOAK_METRICS_PORT", metrics_port.to_string())
            .env("SOAK_SPANS_FIFO", fifo);
        let mut guard = ProcessGuard::spawn("otelcol", cmd, Output::File(log.to_path_buf()))?;
        wait_otlp_port(&mut guard, otlp_port)?;
        Ok(guard)
    }

    fn start(dir: &Path, fifo: &Path) -> Result<SoakCollector> {
        let (otlp_port, metrics_port) = (free_port()?, free_port()?);
        let log = dir.join("otelcol.log");
        let guard = SoakCollector::spawn(otlp_port, metrics_port, fifo, &log)?;
        Ok(SoakCollector {
            guard,
            otlp_port,
            metrics_port,
            fifo: fifo.to_path_buf(),
            log,
            starts: 1,
        })
    }

    /// Spans its OTLP receiver accepted since it started.
    fn accepted(&self) -> f64 {
        crate::receiver::http_get(self.metrics_port, "/metrics")
            .map(|(_, body)| Metrics::parse(&body).sum("otelcol_receiver_accepted_spans"))
            .unwrap_or(0.0)
    }

    /// SIGTERM (a graceful stop: what it accepted is written out), then a new one on the same
    /// ports and FIFO after `down`.
    fn restart(&mut self, down: Duration) -> Result<f64> {
        let accepted = self.accepted();
        self.guard.signal(libc::SIGTERM);
        self.guard.wait_timeout(Duration::from_secs(30))?;
        std::thread::sleep(down);
        self.guard =
            SoakCollector::spawn(self.otlp_port, self.metrics_port, &self.fifo, &self.log)?;
        self.starts += 1;
        Ok(accepted)
    }
}

// ---------------------------------------------------------------------------------------------
// Churn: short-lived clients

/// One short-lived client process.
#[derive(Clone, Debug)]
struct ChurnRun {
    kind: &'static str,
    pid: u32,
    ok: bool,
}

/// The servers a churn client talks to.
#[derive(Clone, Debug)]
struct ChurnTargets {
    redis_port: u16,
    nginx_port: u16,
    pg_port: u16,
    dns_addr: String,
}

const CHURN_KINDS: [&str; 7] = [
    "redis-cli",
    "curl-keepalive",
    "psql",
    "dig-udp",
    "redis-benchmark-reconnect",
    "curl-close",
    "dig-tcp",
];

fn churn_command(kind: &str, t: &ChurnTargets, n: u64) -> Command {
    let static_url = format!("http://127.0.0.1:{}{}", t.nginx_port, SMALL.path);
    let api_url = format!("http://127.0.0.1:{}/api/status/200?churn={n}", t.nginx_port);
    match kind {
        "redis-cli" => {
            let mut c = Command::new("redis-cli");
            c.args(["-h", "127.0.0.1", "-p", &t.redis_port.to_string()])
                .args(["SET", &format!("churn:{}", n % 1000), "v"]);
            c
        }
        "redis-benchmark-reconnect" => {
            // -k 0: a new connection for every request (the same fd, over and over).
            let mut c = Command::new("redis-benchmark");
            c.args(["-h", "127.0.0.1", "-p", &t.redis_port.to_string()])
                .args(["-c", "1", "-n", "10", "-k", "0", "-t", "set", "-q"]);
            c
        }
        "curl-keepalive" | "curl-close" => {
            let mut c = Command::new("curl");
            c.args([
                "-sS",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
            ])
            .args(["--max-time", "10"]);
            if kind == "curl-close" {
                c.args(["-H", "Connection: close"]);
            }
            c.args([&static_url, &api_url, &static_url]);
            c
        }
        "psql" => {
            let mut c = Command::new("psql");
            c.args(["-h", "127.0.0.1", "-p", &t.pg_port.to_string()])
                .args(["-U", postgres::USER, "-d", postgres::DATABASE, "-X", "-q"])
                .args(["-c", "SELECT 1", "-c", "SELECT name FROM t1 WHERE id = 2"])
                .env("PGPASSWORD", postgres::PASSWORD)
                .env("PGCONNECT_TIMEOUT", "10");
            c
        }
        _ => {
            let mut c = Command::new("dig");
            c.arg(format!("@{}", t.dns_addr)).args([
                "-p",
                "53",
                dnsmasq::WEB,
                "A",
                "+tries=1",
                "+time=5",
            ]);
            if kind == "dig-tcp" {
                c.arg("+tcp");
            }
            c
        }
    }
}

/// Runs one churn client to completion (killed after 20 s).
fn run_churn(kind: &'static str, t: &ChurnTargets, n: u64) -> ChurnRun {
    let mut cmd = churn_command(kind, t, n);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return ChurnRun {
            kind,
            pid: 0,
            ok: false,
        };
    };
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    ChurnRun { kind, pid, ok }
}

fn spawn_churn(
    t: ChurnTargets,
    stop: Arc<AtomicBool>,
    runs: Arc<Mutex<Vec<ChurnRun>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let kind = CHURN_KINDS[(n % CHURN_KINDS.len() as u64) as usize];
            let r = run_churn(kind, &t, n);
            if let Ok(mut v) = runs.lock() {
                v.push(r);
            }
            n += 1;
            next += CHURN_PERIOD;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// BPF maps

/// A BPF map the receiver holds.
#[derive(Clone, Debug)]
struct BpfMap {
    id: u64,
    name: String,
    hash: bool,
    max_entries: u64,
}

fn receiver_maps(pid: u32) -> Result<Vec<BpfMap>> {
    let (maps, _) = procs::bpf_objects(pid);
    let mut out = Vec::new();
    for m in maps {
        let mut show = Command::new("bpftool");
        show.args(["-j", "map", "show", "id", &m.id.to_string()]);
        let info: Value = serde_json::from_str(&run_capture(show)?)?;
        out.push(BpfMap {
            id: m.id,
            name: info["name"].as_str().unwrap_or("?").to_string(),
            hash: info["type"].as_str().is_some_and(|t| t.contains("hash")),
            max_entries: info["max_entries"].as_u64().unwrap_or(0),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Little-endian u32 from a bpftool JSON byte array (`["0x2a", "0x00", ...]`) at `at`.
fn le_u32(bytes: &[Value], at: usize) -> Option<u32> {
    let mut v = 0u32;
    for i in 0..4 {
        let b = bytes.get(at + i)?.as_str()?;
        let b = u8::from_str_radix(b.trim_start_matches("0x"), 16).ok()?;
        v |= u32::from(b) << (8 * i);
    }
    Some(v)
}

/// The `(pid, fd)` keys of a CONNS dump (raw bytes, or BTF-formatted).
fn conns_keys(dump: &Value) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for e in dump.as_array().into_iter().flatten() {
        let formatted = e.get("formatted").and_then(|f| f.get("key"));
        if let Some(k) = formatted
            && let (Some(pid), Some(fd)) = (k["pid"].as_u64(), k["fd"].as_u64())
        {
            out.push((pid as u32, fd as u32));
            continue;
        }
        if let Some(bytes) = e.get("key").and_then(Value::as_array)
            && let (Some(pid), Some(fd)) = (le_u32(bytes, 0), le_u32(bytes, 4))
        {
            out.push((pid, fd));
        }
    }
    out
}

/// Entries of every hash map, and CONNS's keys.
fn map_entries(maps: &[BpfMap]) -> (BTreeMap<String, u64>, Vec<(u32, u32)>) {
    let mut counts = BTreeMap::new();
    let mut conns = Vec::new();
    for m in maps.iter().filter(|m| m.hash) {
        let mut dump = Command::new("bpftool");
        dump.args(["-j", "map", "dump", "id", &m.id.to_string()]);
        let Ok(text) = run_capture(dump) else {
            continue;
        };
        let Ok(d) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        counts.insert(m.name.clone(), d.as_array().map_or(0, |a| a.len() as u64));
        if m.name == "CONNS" {
            conns = conns_keys(&d);
        }
    }
    (counts, conns)
}

/// Whether `(pid, fd)` still names a socket.
fn is_live_socket(pid: u32, fd: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
}

// ---------------------------------------------------------------------------------------------
// Samples

#[derive(Clone, Debug, Default)]
struct Sample {
    t_s: f64,
    rss_kib: u64,
    rss_anon_kib: u64,
    hwm_kib: u64,
    conns_total: u64,
    conns_run: u64,
    maps: BTreeMap<String, u64>,
    queue_bytes: f64,
    queue_spans: f64,
    created: f64,
    exported: f64,
    dropped: f64,
    kernel_drops: f64,
    delivered: u64,
    collector_up: bool,
}

/// Pids of this run: the servers and everything they forked, the load generators, the churn
/// client of the moment.
fn run_pids(roots: &[u32], churn: &Mutex<Vec<ChurnRun>>) -> HashSet<u32> {
    let mut pids: HashSet<u32> = procs::tree(roots).into_iter().collect();
    if let Ok(v) = churn.lock() {
        pids.extend(v.iter().rev().take(2).map(|r| r.pid));
    }
    pids
}

fn sample(
    t0: Instant,
    receiver: &Receiver,
    maps: &[BpfMap],
    pids: &HashSet<u32>,
    tally: &Mutex<Tally>,
    collector_up: bool,
) -> Sample {
    let p = proc_sample(receiver.pid()).unwrap_or_default();
    let m = receiver.metrics().unwrap_or_default();
    let (counts, keys) = map_entries(maps);
    Sample {
        t_s: t0.elapsed().as_secs_f64(),
        rss_kib: p.vm_rss_kib,
        rss_anon_kib: p.rss_anon_kib,
        hwm_kib: p.vm_hwm_kib,
        conns_total: keys.len() as u64,
        conns_run: keys.iter().filter(|(pid, _)| pids.contains(pid)).count() as u64,
        maps: counts,
        queue_bytes: m.get("ebpf_receiver_export_queue_bytes"),
        queue_spans: m.get("ebpf_receiver_export_queue_spans"),
        created: m.sum("ebpf_receiver_spans_created_total"),
        exported: m.get("ebpf_receiver_spans_exported_total"),
        dropped: m.sum("ebpf_receiver_spans_dropped_total"),
        kernel_drops: m.sum("ebpf_receiver_kernel_drops_total")
            - m.get("ebpf_receiver_kernel_drops_total{reason=\"capture_truncated\"}")
            - m.get("ebpf_receiver_kernel_drops_total{reason=\"disabled\"}"),
        delivered: tally.lock().map(|t| t.ours()).unwrap_or(0),
        collector_up,
    }
}

fn write_csv(path: &Path, samples: &[Sample], map_names: &[String]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(
        f,
        "t_s,rss_kib,rss_anon_kib,hwm_kib,conns_total,conns_run,queue_bytes,queue_spans,spans_created,spans_exported,spans_dropped,kernel_drops,spans_delivered,collector_up"
    )?;
    for n in map_names {
        write!(f, ",map_{n}")?;
    }
    writeln!(f)?;
    for s in samples {
        write!(
            f,
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.t_s,
            s.rss_kib,
            s.rss_anon_kib,
            s.hwm_kib,
            s.conns_total,
            s.conns_run,
            s.queue_bytes,
            s.queue_spans,
            s.created,
            s.exported,
            s.dropped,
            s.kernel_drops,
            s.delivered,
            u8::from(s.collector_up)
        )?;
        for n in map_names {
            write!(f, ",{}", s.maps.get(n).copied().unwrap_or(0))?;
        }
        writeln!(f)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Ground truth

/// Requests the servers served, by protocol, from their own counters.
#[derive(Clone, Debug, Default)]
struct Served {
    redis: u64,
    nginx: u64,
    upstream: u64,
    postgres: u64,
    dns: u64,
}

fn served(
    dir: &Path,
    redis: &Redis,
    nginx: &Nginx,
    pg: &Postgres,
    dns: &Dnsmasq,
    n: u32,
) -> Result<Served> {
    let stats = clients::redis::commandstats(dir, &format!("commandstats-{n}"), redis)?;
    Ok(Served {
        redis: stats
            .iter()
            .filter(|(c, _)| c != "info")
            .map(|(_, k)| k)
            .sum(),
        nginx: nginx.access_log()?.len() as u64,
        upstream: nginx.upstream_requests()?.len() as u64,
        postgres: pg
            .logged_statements()?
            .iter()
            .filter(|(_, s)| s.starts_with("statement:"))
            .count() as u64,
        dns: dns.query_log()?.len() as u64,
    })
}

/// Expected spans by `(protocol, side)` for the requests served between `a` and `b`.
fn expected(a: &Served, b: &Served) -> BTreeMap<(&'static str, &'static str), u64> {
    let d = |x: u64, y: u64| y.saturating_sub(x);
    let redis = d(a.redis, b.redis);
    let http = d(a.nginx, b.nginx) + d(a.upstream, b.upstream);
    let pg = d(a.postgres, b.postgres);
    let dns = d(a.dns, b.dns);
    let mut m = BTreeMap::new();
    for (proto, n) in [
        ("redis", redis),
        ("http", http),
        ("postgresql", pg),
        ("dns", dns),
    ] {
        m.insert((proto, "server"), n);
        m.insert((proto, "client"), n);
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Flatness

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// `(first third mean, last third mean, within bound)`; the first third starts after the
/// warm-up (a tenth of the run, at most five minutes).
fn flat(
    samples: &[Sample],
    total_s: f64,
    f: impl Fn(&Sample) -> f64,
    floor: f64,
) -> (f64, f64, bool) {
    let warm = (total_s / 10.0).min(300.0);
    let third = total_s / 3.0;
    let first: Vec<f64> = samples
        .iter()
        .filter(|s| s.t_s >= warm && s.t_s < third)
        .map(&f)
        .collect();
    let last: Vec<f64> = samples
        .iter()
        .filter(|s| s.t_s >= total_s - third && s.t_s <= total_s)
        .map(&f)
        .collect();
    let (a, b) = (mean(&first), mean(&last));
    let ok = (b - a).abs() <= (a.abs() * FLAT).max(floor);
    (a, b, ok)
}

/// Least-squares slope of `f` over the samples in `[from_s, to_s)`, per hour; `None` with
/// fewer than three samples.
fn slope_per_hour(
    samples: &[Sample],
    from_s: f64,
    to_s: f64,
    f: impl Fn(&Sample) -> f64,
) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= from_s && s.t_s < to_s)
        .map(|s| (s.t_s, f(s)))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 3600.0)
}

// ---------------------------------------------------------------------------------------------

fn run_id() -> String {
    Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| (unix_now_ns() / 1_000_000_000).to_string())
}

fn mkfifo(path: &Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!(
            "mkfifo `{}`: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Runs the soak; `Ok(true)` when every promise held.
pub fn run(opts: &Options) -> Result<bool> {
    let total = Duration::from_secs_f64((opts.minutes * 60.0).max(30.0));
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| paths::target_dir().join("soak").join(run_id()));
    std::fs::create_dir_all(&out)?;
    println!(
        "[soak] {:.1} min in {} (samples every {} s); Redis {REDIS_RATE}/s and HTTP {HTTP_RATE}/s from loadgen, a churn client every {} ms, the Collector restarted at half time",
        total.as_secs_f64() / 60.0,
        out.display(),
        opts.sample_secs,
        CHURN_PERIOD.as_millis()
    );

    // Servers.
    let redis = Redis::start(&out.join("redis"))?;
    let nginx = Nginx::start(&out.join("nginx"))?;
    let pg = Postgres::start_with(
        &out.join("pg"),
        &PgOptions {
            log_statements: true,
            ..PgOptions::default()
        },
    )?;
    let dns = Dnsmasq::start(&out.join("dns"))?;
    let targets = Targets {
        redis_port: redis.port,
        redis_pid: redis.pid(),
        nginx_port: nginx.port,
        nginx_pid: nginx.pid(),
        upstream_port: nginx.upstream_port,
        upstream_pid: nginx.upstream_pid(),
        pg_port: pg.port,
        dns_addr: dns.addr.to_string(),
    };
    println!("[soak] servers up: {targets:?}");

    // The Collector writes into a FIFO the reader thread drains.
    let fifo = out.join("spans.fifo");
    let _ = std::fs::remove_file(&fifo);
    mkfifo(&fifo)?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let reader = spawn_reader(fifo.clone(), targets.clone(), Arc::clone(&tally))?;
    let mut collector = SoakCollector::start(&out, &fifo)?;
    let endpoint = format!("http://127.0.0.1:{}", collector.otlp_port);

    // The receiver: shipped defaults, tracing this run only (the machine is shared: other
    // people's load would fill the same export queue): the servers' processes, and this
    // harness, so that every process it starts from now on (load generators, churn clients)
    // and every process the servers fork (PostgreSQL backends, dnsmasq's TCP children) is
    // traced as it starts (`targets.pids` follows forks).
    let mut traced = vec![std::process::id()];
    traced.extend(procs::tree(&[
        redis.pid(),
        nginx.pid(),
        nginx.upstream_pid(),
        pg.pid(),
        dns.pid(),
    ]));
    let metrics_port = free_port()?;
    let mut receiver = Receiver::start_with_exporter(
        &out,
        &endpoint,
        metrics_port,
        "max_batch_delay_ms: 100",
        &format!(
            "targets:\n  pids: [{}]\n",
            traced
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )?;
    let maps = receiver_maps(receiver.pid())?;
    let map_names: Vec<String> = maps
        .iter()
        .filter(|m| m.hash)
        .map(|m| m.name.clone())
        .collect();
    println!(
        "[soak] receiver ready (pid {}); BPF hash maps: {}",
        receiver.pid(),
        maps.iter()
            .filter(|m| m.hash)
            .map(|m| format!("{} (max {})", m.name, m.max_entries))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = served(&out, &redis, &nginx, &pg, &dns, 0)?;

    // Load.
    let secs = total.as_secs();
    let loadgen =
        |proto: &str, port: u16, rate: u64, path: Option<&str>| -> Result<clients::RunningClient> {
            let mut c = Command::new(&opts.loadgen);
            c.args(["--proto", proto, "--addr", &format!("127.0.0.1:{port}")])
                .args(["--rate", &rate.to_string(), "--connections", "4"])
                .args(["--duration-s", &secs.to_string()]);
            if let Some(p) = path {
                c.args(["--path", p]);
            }
            clients::spawn(&out, &format!("loadgen-{proto}"), c)
        };
    let load_redis = loadgen("redis", redis.port, REDIS_RATE, None)?;
    let load_http = loadgen("http", nginx.port, HTTP_RATE, Some("/api/status/200"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let churn_runs = Arc::new(Mutex::new(Vec::new()));
    let churn = spawn_churn(
        ChurnTargets {
            redis_port: redis.port,
            nginx_port: nginx.port,
            pg_port: pg.port,
            dns_addr: dns.addr.to_string(),
        },
        Arc::clone(&stop),
        Arc::clone(&churn_runs),
    );
    let mut roots = vec![
        redis.pid(),
        nginx.pid(),
        nginx.upstream_pid(),
        pg.pid(),
        dns.pid(),
        load_redis.pid(),
        load_http.pid(),
    ];

    // Sampling, and the Collector restart at half time.
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut restarted = None;
    let mut accepted_before_restart = 0.0;
    let mut last_print = Instant::now() - Duration::from_secs(3600);
    let period = Duration::from_secs_f64(opts.sample_secs.max(1.0));
    let mut receiver_died = None;
    while t0.elapsed() < total {
        let tick = Instant::now();
        if restarted.is_none() && t0.elapsed() >= total / 2 {
            println!(
                "[soak] {:>6.0} s  Collector: SIGTERM, down for {COLLECTOR_DOWN:?}, restart",
                t0.elapsed().as_secs_f64()
            );
            accepted_before_restart = collector.restart(COLLECTOR_DOWN)?;
            restarted = Some(t0.elapsed().as_secs_f64());
        }
        if let Err(e) = receiver.ensure_running() {
            receiver_died = Some(format!("{e:#}"));
            break;
        }
        let pids = run_pids(&roots, &churn_runs);
        let s = sample(t0, &receiver, &maps, &pids, &tally, true);
        if last_print.elapsed() >= Duration::from_secs(30)
            || opts.minutes <= 5.0 && last_print.elapsed() >= Duration::from_secs(10)
        {
            last_print = Instant::now();
            let churned = churn_runs.lock().map(|v| v.len()).unwrap_or(0);
            println!(
                "[soak] {:>6.0} s  RSS {:>6.1} MiB  CONNS {:>5} (run {:>4})  queue {:>7.1} KiB  spans created {:>9.0} exported {:>9.0} dropped {:>4.0}  delivered {:>9}  churn {churned}",
                s.t_s,
                mib(s.rss_kib as f64),
                s.conns_total,
                s.conns_run,
                s.queue_bytes / 1024.0,
                s.created,
                s.exported,
                s.dropped,
                s.delivered
            );
        }
        samples.push(s);
        let spent = tick.elapsed();
        if spent < period {
            std::thread::sleep(period - spent);
        }
    }
    let total_s = t0.elapsed().as_secs_f64();

    // The end: clients stop, everything drains, the kernel's entries are purged.
    stop.store(true, Ordering::Relaxed);
    let _ = churn.join();
    let mut load_summaries = Vec::new();
    for l in [load_redis, load_http] {
        let r = l.finish(Duration::from_secs(60))?;
        load_summaries.push(serde_json::from_str::<Value>(r.stdout.trim()).unwrap_or(Value::Null));
    }
    roots.truncate(5);
    let clients_gone = Instant::now();
    let after = served(&out, &redis, &nginx, &pg, &dns, 1)?;
    let want = expected(&before, &after);
    let want_total: u64 = want.values().sum();
    // Until the queue is empty and the delivered spans stop growing (at most 90 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (0u64, Instant::now());
    loop {
        let m = receiver.metrics().unwrap_or_default();
        let delivered = tally.lock().map(|t| t.ours()).unwrap_or(0);
        if delivered != last.0 {
            last = (delivered, Instant::now());
        }
        let quiet = m.get("ebpf_receiver_export_queue_spans") == 0.0
            && last.1.elapsed() > Duration::from_secs(3);
        if (quiet && (delivered >= want_total || last.1.elapsed() > Duration::from_secs(10)))
            || Instant::now() >= deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The receiver purges entries of exited processes every 10 s.
    let purge_wait = Duration::from_secs(22).saturating_sub(clients_gone.elapsed());
    std::thread::sleep(purge_wait);
    let run_pids_end: HashSet<u32> = procs::tree(&roots).into_iter().collect();
    let churn_pids: HashSet<u32> = churn_runs
        .lock()
        .map(|v| v.iter().map(|r| r.pid).collect())
        .unwrap_or_default();
    let (final_maps, keys) = map_entries(&maps);
    let final_metrics = receiver.metrics().unwrap_or_default();
    let final_proc = proc_sample(receiver.pid()).unwrap_or_default();
    let stale: Vec<(u32, u32)> = keys
        .iter()
        .copied()
        .filter(|&(pid, fd)| !is_live_socket(pid, fd))
        .collect();
    let stale_of_run: Vec<(u32, u32)> = stale
        .iter()
        .copied()
        .filter(|(pid, _)| churn_pids.contains(pid) || run_pids_end.contains(pid))
        .collect();
    let clients_left: Vec<(u32, u32)> = keys
        .iter()
        .copied()
        .filter(|(pid, _)| churn_pids.contains(pid) && !run_pids_end.contains(pid))
        .collect();
    let conns_run_end = keys
        .iter()
        .filter(|(pid, _)| run_pids_end.contains(pid))
        .count();
    let receiver_alive = receiver.ensure_running().is_ok() && receiver_died.is_none();
    let accepted_after = collector.accepted();

    // Figures.
    let t = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?;
    let mut ok = true;
    let mut lines = Vec::new();
    let fail = |ok: &mut bool, lines: &mut Vec<String>, msg: String| {
        *ok = false;
        lines.push(format!("FAIL {msg}"));
    };
    let runs = churn_runs.lock().map(|v| v.clone()).unwrap_or_default();
    let churn_ok = runs.iter().filter(|r| r.ok).count();
    let mut pid_seen = HashSet::new();
    let reused = runs.iter().filter(|r| !pid_seen.insert(r.pid)).count();
    let mut per_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in &runs {
        let e = per_kind.entry(r.kind).or_default();
        e.0 += 1;
        e.1 += usize::from(r.ok);
    }
    lines.push(format!(
        "churn: {} short-lived clients ({churn_ok} succeeded: {}), {reused} of them on a pid an earlier one of this run had; loadgen: {}",
        runs.len(),
        per_kind
            .iter()
            .map(|(k, (n, ok))| format!("{k} {ok}/{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        load_summaries
            .iter()
            .map(|s| format!("{} requests ({} errors)", s["requests"], s["errors"]))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut got_total = 0u64;
    let mut completeness = BTreeMap::new();
    for proto in PROTOCOLS {
        for side in ["server", "client"] {
            let w = want.get(&(proto, side)).copied().unwrap_or(0);
            let g = t.spans.get(&(proto, side)).copied().unwrap_or(0);
            got_total += g.min(w);
            let c = if w == 0 { 1.0 } else { g as f64 / w as f64 };
            completeness.insert(
                format!("{proto}/{side}"),
                json!({"requests": w, "spans": g, "completeness": c}),
            );
            lines.push(format!(
                "completeness {proto:<10} {side:<6}: {g:>8} spans / {w:>8} requests = {:.4} %",
                100.0 * c
            ));
            if w == 0 {
                fail(
                    &mut ok,
                    &mut lines,
                    format!("{proto}/{side}: no requests served"),
                );
            } else if c < COMPLETENESS {
                fail(
                    &mut ok,
                    &mut lines,
                    format!(
                        "{proto}/{side}: completeness {:.4} % < {:.1} %",
                        100.0 * c,
                        100.0 * COMPLETENESS
                    ),
                );
            } else if g > w {
                fail(
                    &mut ok,
                    &mut lines,
                    format!(
                        "{proto}/{side}: {g} spans for {w} requests (duplicates or bogus spans)"
                    ),
                );
            }
        }
    }
    let overall = if want_total == 0 {
        0.0
    } else {
        got_total as f64 / want_total as f64
    };
    lines.push(format!(
        "completeness overall: {got_total} / {want_total} = {:.4} %; {} duplicate span ids; {} spans of other processes on the host; Collector accepted {:.0} + {:.0} spans over {} starts",
        100.0 * overall,
        t.duplicates,
        t.foreign,
        accepted_before_restart,
        accepted_after,
        collector.starts
    ));
    if t.duplicates > 0 {
        fail(
            &mut ok,
            &mut lines,
            format!("{} span ids delivered twice", t.duplicates),
        );
    }
    let mut flatness = BTreeMap::new();
    for (name, (a, b, good), unit) in [
        (
            "rss",
            flat(&samples, total_s, |s| s.rss_kib as f64, FLAT_FLOOR_RSS_KIB),
            "KiB",
        ),
        (
            "rss_anon",
            flat(
                &samples,
                total_s,
                |s| s.rss_anon_kib as f64,
                FLAT_FLOOR_RSS_KIB,
            ),
            "KiB",
        ),
        (
            "conns_run",
            flat(
                &samples,
                total_s,
                |s| s.conns_run as f64,
                FLAT_FLOOR_ENTRIES,
            ),
            "entries",
        ),
        (
            "queue_bytes",
            flat(&samples, total_s, |s| s.queue_bytes, FLAT_FLOOR_QUEUE_BYTES),
            "bytes",
        ),
        (
            "conns_total",
            flat(
                &samples,
                total_s,
                |s| s.conns_total as f64,
                FLAT_FLOOR_ENTRIES,
            ),
            "entries",
        ),
    ] {
        let change = if a == 0.0 { 0.0 } else { 100.0 * (b - a) / a };
        flatness.insert(
            name,
            json!({"first_third": a, "last_third": b, "change_percent": change, "flat": good}),
        );
        lines.push(format!(
            "flat {name:<12}: first third {a:>12.1} {unit}, last third {b:>12.1} {unit} ({change:+.2} %){}",
            match name {
                "conns_total" => " (whole host: reported, not a promise)",
                "rss_anon" => " (the allocations part of RSS: reported)",
                _ => "",
            }
        ));
        if !good && name != "conns_total" && name != "rss_anon" {
            fail(
                &mut ok,
                &mut lines,
                format!(
                    "{name} not flat: {a:.1} → {b:.1} {unit} ({change:+.2} %, bound ±{:.0} %)",
                    100.0 * FLAT
                ),
            );
        }
    }
    // The trend within each stretch the restart separates: a leak grows, a step does not.
    let warm = (total_s / 10.0).min(300.0);
    let restart_at = restarted.unwrap_or(total_s);
    let mib_of = |s: &Sample| s.rss_kib as f64 / 1024.0;
    let before_slope = slope_per_hour(&samples, warm, restart_at, mib_of);
    let after_slope = slope_per_hour(&samples, restart_at + 30.0, total_s + 1.0, mib_of);
    let fmt_slope = |s: Option<f64>| s.map_or("-".to_string(), |v| format!("{v:+.2} MiB/h"));
    lines.push(format!(
        "rss trend (reported): {} from the warm-up to the restart, {} from 30 s after it to the end",
        fmt_slope(before_slope),
        fmt_slope(after_slope)
    ));
    lines.push(format!(
        "after every client exited: CONNS {} entries ({conns_run_end} of this run's servers, {} of its exited clients, {} naming a closed socket of this run, {} naming a closed socket elsewhere on the host); maps {:?}",
        keys.len(),
        clients_left.len(),
        stale_of_run.len(),
        stale.len() - stale_of_run.len(),
        final_maps
    ));
    if !clients_left.is_empty() || !stale_of_run.is_empty() {
        fail(
            &mut ok,
            &mut lines,
            format!(
                "CONNS entries left behind: clients {clients_left:?}, closed sockets {stale_of_run:?}"
            ),
        );
    }
    let dropped = final_metrics.sum("ebpf_receiver_spans_dropped_total");
    let kernel = samples.last().map_or(0.0, |s| s.kernel_drops);
    lines.push(format!(
        "receiver: RSS {:.1} MiB at the end (VmHWM {:.1} MiB), spans created {:.0}, exported {:.0}, dropped {dropped:.0} ({}), kernel drops {kernel:.0}, connections tracked {:.0}",
        mib(final_proc.vm_rss_kib as f64),
        mib(final_proc.vm_hwm_kib as f64),
        final_metrics.sum("ebpf_receiver_spans_created_total"),
        final_metrics.get("ebpf_receiver_spans_exported_total"),
        final_metrics.family("ebpf_receiver_spans_dropped_total").replace('\n', ", "),
        final_metrics.get("ebpf_receiver_connections_tracked")
    ));
    if !receiver_alive {
        fail(
            &mut ok,
            &mut lines,
            format!(
                "the receiver stopped: {}",
                receiver_died
                    .clone()
                    .unwrap_or_else(|| receiver.log_tail(20))
            ),
        );
    }
    drop(t);

    // Outputs.
    write_csv(&out.join("samples.csv"), &samples, &map_names)?;
    let summary = json!({
        "minutes": total_s / 60.0,
        "collector_restart_at_s": restarted,
        "completeness": completeness,
        "completeness_overall": overall,
        "flatness": flatness,
        "rss_slope_mib_per_hour": {"before_restart": before_slope, "after_restart": after_slope},
        "conns_after_clients_exited": {
            "total": keys.len(), "run_servers": conns_run_end, "exited_clients": clients_left.len(),
            "closed_sockets_of_run": stale_of_run.len(), "closed_sockets_elsewhere": stale.len() - stale_of_run.len(),
        },
        "maps_at_end": final_maps,
        "churn_clients": runs.len(), "churn_ok": churn_ok, "pids_reused": reused,
        "loadgen": load_summaries,
        "receiver_rss_kib_end": final_proc.vm_rss_kib, "receiver_hwm_kib": final_proc.vm_hwm_kib,
        "spans_dropped": dropped, "kernel_drops": kernel,
        "passed": ok,
        "lines": lines,
    });
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let chart = Command::new(paths::python())
        .arg(paths::clients_dir().join("soak_charts.py"))
        .arg(out.join("samples.csv"))
        .arg(out.join("soak.png"))
        .arg(restarted.map_or(String::new(), |r| format!("{r:.1}")))
        .output();
    match chart {
        Ok(o) if o.status.success() => {
            lines.push(format!("chart: {}", out.join("soak.png").display()))
        }
        Ok(o) => lines.push(format!(
            "chart failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => lines.push(format!("chart failed: {e}")),
    }

    // Stop: the receiver first (it flushes), then the Collector, then the reader.
    receiver.stop();
    collector.guard.stop();
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) {
        let _ = f.write_all(b"STOP\n");
    }
    let _ = reader.join();
    let _ = std::fs::remove_file(&fifo);

    println!();
    for l in &lines {
        println!("[soak] {l}");
    }
    println!(
        "[soak] {} after {:.1} min: {}",
        if ok { "PASSED" } else { "FAILED" },
        total_s / 60.0,
        out.display()
    );
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conns_keys_from_raw_and_formatted_dumps() {
        let raw: Value = serde_json::from_str(
            r#"[{"key":["0x2a","0x00","0x00","0x00","0x07","0x00","0x00","0x00"],"value":[]},
                {"formatted":{"key":{"pid":9,"fd":3}}}]"#,
        )
        .expect("json");
        assert_eq!(conns_keys(&raw), vec![(42, 7), (9, 3)]);
    }

    #[test]
    fn flatness_compares_the_first_and_last_thirds_after_warm_up() {
        let samples: Vec<Sample> = (0..90)
            .map(|i| Sample {
                t_s: i as f64,
                // A warm-up ramp in the first 9 s, then flat with a bump in the middle.
                rss_kib: if i < 9 {
                    1000 + i * 100
                } else if (40..50).contains(&i) {
                    5000
                } else {
                    2000
                },
                ..Sample::default()
            })
            .collect();
        let (a, b, ok) = flat(&samples, 90.0, |s| s.rss_kib as f64, 0.0);
        assert_eq!((a, b), (2000.0, 2000.0));
        assert!(ok);
        let growing: Vec<Sample> = (0..90)
            .map(|i| Sample {
                t_s: i as f64,
                rss_kib: 1000 + i * 10,
                ..Sample::default()
            })
            .collect();
        assert!(!flat(&growing, 90.0, |s| s.rss_kib as f64, 0.0).2);
    }

    #[test]
    fn slope_is_per_hour_and_ignores_a_step_outside_the_stretch() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t_s: f64::from(i),
                // 1 KiB per second, then a 2 MiB step at 60 s.
                rss_kib: 1000 + i as u64 + if i >= 60 { 2048 } else { 0 },
                ..Sample::default()
            })
            .collect();
        let kib = |s: &Sample| s.rss_kib as f64;
        let before = slope_per_hour(&samples, 0.0, 60.0, kib).expect("slope");
        assert!((before - 3600.0).abs() < 1e-6, "{before}");
        let after = slope_per_hour(&samples, 60.0, 120.0, kib).expect("slope");
        assert!((after - 3600.0).abs() < 1e-6, "{after}");
        assert_eq!(slope_per_hour(&samples, 0.0, 2.0, kib), None);
    }

    #[test]
    fn expected_spans_are_the_served_deltas_on_both_sides() {
        let a = Served {
            redis: 10,
            nginx: 5,
            upstream: 2,
            postgres: 1,
            dns: 0,
        };
        let b = Served {
            redis: 110,
            nginx: 25,
            upstream: 12,
            postgres: 7,
            dns: 3,
        };
        let e = expected(&a, &b);
        assert_eq!(e[&("redis", "server")], 100);
        assert_eq!(e[&("http", "client")], 30);
        assert_eq!(e[&("postgresql", "client")], 6);
        assert_eq!(e[&("dns", "server")], 3);
    }
}
