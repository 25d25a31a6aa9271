//! `cargo xtask bench [WORKLOAD...]`: what the receiver costs the traced applications and
//! itself, side by side with the traditional pipeline, empty programs and tshark, in one run.
//!
//! For each workload ([`workloads`]) and CPU placement, the configurations ([`configs`]) run
//! interleaved (A B C … A B C …) for `reps` repetitions, first closed loop (maximum
//! throughput), then open loop at `open_fraction` × the baseline's median maximum. Each run:
//!
//! 1. the load generator is spawned **held** (`sh -c 'read _ && exec …'`), so its pid is known
//!    before the configuration starts (the receiver's `targets` name or exclude it, see
//!    [`Scope`]);
//! 2. the configuration starts (receiver ready, bpftrace attached, tshark capturing), and for
//!    `mixed` the iperf3 bulk client;
//! 3. CPU of every process tree is sampled ([`procs`]), the generator is released, and waited
//!    for until it exits (its final CPU is read from its unreaped `/proc/<pid>/stat`);
//! 4. the receiver drains (its span counters stop moving and its export queue is empty), then
//!    CPU, memory (VmHWM), BPF map memory and metrics are sampled again and the configuration
//!    stops; the Collector's `otelcol_receiver_accepted_spans` delta gives completeness.
//!
//! Then the per-syscall cost (`dd bs=1`), the per-program attribution run
//! (`kernel.bpf_stats_enabled=1`), and the report ([`report`]) under `target/bench/<run>/`.

pub mod configs;
pub mod hist;
pub mod loadgen;
pub mod procs;
pub mod report;
pub mod syscalls;
pub mod workloads;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::paths;
use crate::process::{Output, ProcessGuard, free_port};
use crate::receiver::{LOSS_COUNTERS, Metrics, http_get};
use configs::{Config, Env, StartArgs};
use workloads::{Servers, Target, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// No pinning: the scheduler puts everything on both CPUs.
    Contended,
    /// Server on the last CPU; load generator, receiver/tool and Collector on CPU 0.
    Pinned,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Contended => "contended",
            Placement::Pinned => "pinned",
        }
    }

    /// `(server cpus, everything else)` as taskset lists; `None` = all CPUs.
    pub fn cpus(self) -> (Option<String>, Option<String>) {
        match self {
            Placement::Contended => (None, None),
            Placement::Pinned => {
                let last = procs::online_cpus().saturating_sub(1);
                if last == 0 {
                    (None, None)
                } else {
                    (
                        Some(last.to_string()),
                        Some(if last == 1 {
                            "0".to_string()
                        } else {
                            format!("0-{}", last - 1)
                        }),
                    )
                }
            }
        }
    }
}

/// What the receiver traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only the workload's server processes (and the mixed workload's bulk traffic):
    /// `targets.pids`. Workloads whose server forks a process per connection (PostgreSQL) fall
    /// back to `Host` (a forked backend is not in the pid list).
    Server,
    /// The same plus the load generator.
    Both,
    /// Every process on the host but the harness, the Collector and the load generator
    /// (`targets.exclude_pids`): the real deployment; on a busy machine other processes' spans
    /// count in completeness.
    Host,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Server => "server",
            Scope::Both => "both",
            Scope::Host => "host",
        }
    }
}

/// Everything `cargo xtask bench` can be told.
#[derive(Clone, Debug)]
pub struct Options {
    pub workloads: Vec<Workload>,
    pub configs: Vec<Config>,
    /// Configurations of the open-loop runs (by default without tshark, a closed-loop
    /// comparison, and without no-inference except for `mixed`, where it is the point).
    pub open_configs: Vec<Config>,
    pub modes: Vec<Mode>,
    pub placements: Vec<Placement>,
    /// Workloads that also run pinned (when `placements` has `Pinned`).
    pub pinned_workloads: Vec<Workload>,
    pub reps: usize,
    pub duration: Duration,
    /// Open-loop rate as a fraction of the baseline's median closed-loop throughput.
    pub open_fraction: f64,
    pub scope: Scope,
    /// iperf3 `-b` of the mixed workload's bulk traffic.
    pub bulk_rate: String,
    pub syscall_cost: bool,
    pub attribution: bool,
    /// Run the replay benchmark (no kernel) and report it beside the live runs.
    pub replay: bool,
    pub quick: bool,
    /// Where the report goes; `target/bench/<run id>` when `None`.
    pub out_dir: Option<PathBuf>,
}

impl Options {
    /// The default full run (about 50 minutes on a 2-vCPU VM: 3 s runs, 5 repetitions, the
    /// pinned placement for nginx and redis only) or, with `quick`, a smoke run.
    pub fn defaults(quick: bool) -> Options {
        Options {
            workloads: Workload::ALL.to_vec(),
            configs: Config::ALL.to_vec(),
            open_configs: vec![
                Config::Baseline,
                Config::Receiver,
                Config::ReceiverSink,
                Config::EmptyPrograms,
            ],
            modes: vec![Mode::Closed, Mode::Open],
            placements: if quick {
                vec![Placement::Contended]
            } else {
                vec![Placement::Contended, Placement::Pinned]
            },
            pinned_workloads: vec![Workload::Nginx, Workload::Redis],
            reps: if quick { 1 } else { 5 },
            duration: Duration::from_secs(if quick { 2 } else { 3 }),
            open_fraction: 0.5,
            scope: Scope::Server,
            bulk_rate: "1G".to_string(),
            syscall_cost: true,
            replay: true,
            attribution: true,
            quick,
            out_dir: None,
        }
    }

    /// Placements a workload runs in.
    pub fn placements_for(&self, w: Workload) -> Vec<Placement> {
        self.placements
            .iter()
            .copied()
            .filter(|p| *p == Placement::Contended || self.pinned_workloads.contains(&w))
            .collect()
    }

    /// Runs of one workload and placement (for the plan and progress).
    fn runs_per(&self, w: Workload, p: Placement) -> usize {
        let mut n = 0;
        for m in &self.modes {
            if *m == Mode::Open && !w.has_open_loop() {
                continue;
            }
            // Pinned: baseline and receiver only (the comparison the placement is for).
            let cfgs = self.configs_for(*m, p, w).len();
            n += cfgs * self.reps;
        }
        n
    }

    /// Configurations of a mode, placement and workload.
    pub fn configs_for(&self, m: Mode, p: Placement, w: Workload) -> Vec<Config> {
        let mut base: Vec<Config> = match m {
            Mode::Closed => self.configs.clone(),
            Mode::Open => self.open_configs.clone(),
        };
        if m == Mode::Open && w == Workload::Mixed && !base.contains(&Config::NoInference) {
            base.push(Config::NoInference);
        }
        base.sort();
        base.into_iter()
            .filter(|c| self.configs.contains(c))
            .filter(|c| {
                p == Placement::Contended
                    || self.placements == [Placement::Pinned]
                    || matches!(c, Config::Baseline | Config::Receiver)
            })
            .collect()
    }
}

/// One measured run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub workload: String,
    pub mode: String,
    pub placement: String,
    pub config: String,
    pub rep: usize,
    pub requests: u64,
    pub ops: u64,
    pub errors: u64,
    pub duration_s: f64,
    /// Requests per second.
    pub throughput: f64,
    /// Open loop: target operations per second.
    pub target_rate: Option<f64>,
    /// Open loop: latency µs.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub mean_us: Option<f64>,
    /// CPU seconds during the load: server trees, load generator (with its children).
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
    /// CPU seconds of the configuration's own process tree (receiver, bpftrace, tshark+dumpcap),
    /// from just before the load to the end of the drain.
    pub tool_cpu_s: Option<f64>,
    pub collector_cpu_s: f64,
    /// Seconds from the release of the load to the end of the drain.
    pub window_s: f64,
    pub receiver_rss_kib: Option<u64>,
    pub receiver_hwm_kib: Option<u64>,
    pub bpf_map_bytes: Option<u64>,
    pub data_events: Option<f64>,
    pub control_events: Option<f64>,
    pub data_bytes: Option<f64>,
    pub ring_wakeups: Option<f64>,
    pub kernel_drops: Option<f64>,
    pub spans_dropped: Option<f64>,
    pub spans_exported: Option<f64>,
    pub collector_spans: Option<f64>,
    pub tshark_packets: Option<u64>,
    pub tshark_dropped: Option<u64>,
    /// Mixed workload: bytes the bulk client moved, CPU seconds of iperf3 (client and server).
    pub bulk_bytes: Option<f64>,
    pub bulk_cpu_s: Option<f64>,
    /// Open loop (loadgen): requests sent more than 1 ms after their scheduled time.
    pub late_sends: Option<u64>,
    pub note: Option<String>,
}

/// A load generator waiting on its stdin before it `exec`s (pid known in advance).
struct Held {
    guard: ProcessGuard,
    stdin: Option<std::process::ChildStdin>,
    stdout: PathBuf,
}

impl Held {
    fn spawn(name: &str, cmd: &Command, dir: &Path, cpus: Option<&str>) -> Result<Held> {
        let mut c = Command::new("sh");
        c.arg("-c").arg("read _ && exec \"$@\"").arg("sh");
        if let Some(list) = cpus {
            c.args(["taskset", "-c", list]);
        }
        c.arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => {
                    c.env(k, v);
                }
                None => {
                    c.env_remove(k);
                }
            }
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        let stdout = dir.join(format!("{name}.out"));
        // ProcessGuard gives the child stdin from us; a pipe is needed to release it.
        let (reader, writer) = std::io::pipe()?;
        let guard = ProcessGuard::spawn_with_stdin(
            name,
            c,
            Output::Split {
                stdout: stdout.clone(),
                stderr: dir.join(format!("{name}.err")),
            },
            Stdio::from(reader),
        )?;
        Ok(Held {
            guard,
            stdin: Some(std::process::ChildStdin::from(std::os::fd::OwnedFd::from(
                writer,
            ))),
            stdout,
        })
    }

    fn pid(&self) -> u32 {
        self.guard.pid()
    }

    fn release(&mut self) -> Result<()> {
        let mut s = self.stdin.take().context("released twice")?;
        s.write_all(b"go\n")?;
        Ok(())
    }
}

/// Where a receiver configuration exports: the bench Collector (OTLP/gRPC in, the debug
/// exporter at basic verbosity, warnings only, internal metrics on a loopback port where
/// `otelcol_receiver_accepted_spans` counts spans cheaply), or the accept-and-count sink of
/// `receiver-sink` (`otlp_sink_accepted_spans_total`).
struct Peer {
    guard: ProcessGuard,
    otlp_port: u16,
    metrics_port: u16,
    /// Prefix of the accepted-spans samples on its metrics port.
    spans_metric: &'static str,
}

impl Peer {
    fn collector(dir: &Path) -> Result<Peer> {
        let otlp_port = free_port()?;
        let metrics_port = free_port()?;
        let mut c = Command::new(paths::collector_bin());
        c.arg("--config")
            .arg(paths::collector_config_dir().join("bench.yaml"))
            .env("BENCH_OTLP_PORT", otlp_port.to_string())
            .env("BENCH_METRICS_PORT", metrics_port.to_string());
        let guard = ProcessGuard::spawn(
            "otelcol (bench)",
            c,
            Output::File(dir.join("collector.log")),
        )?;
        Peer::ready(
            guard,
            otlp_port,
            metrics_port,
            "otelcol_receiver_accepted_spans",
        )
    }

    /// `BENCH_SINK_BIN` (xtask builds `receiver/examples/otlp_sink.rs`).
    fn sink(dir: &Path) -> Result<Peer> {
        let bin = std::env::var_os("BENCH_SINK_BIN")
            .context("BENCH_SINK_BIN is not set (`cargo xtask bench` builds the sink)")?;
        let otlp_port = free_port()?;
        let metrics_port = free_port()?;
        let mut c = Command::new(bin);
        c.arg(otlp_port.to_string()).arg(metrics_port.to_string());
        let guard = ProcessGuard::spawn("otlp sink", c, Output::File(dir.join("sink.log")))?;
        Peer::ready(
            guard,
            otlp_port,
            metrics_port,
            "otlp_sink_accepted_spans_total",
        )
    }

    fn ready(
        mut guard: ProcessGuard,
        otlp_port: u16,
        metrics_port: u16,
        spans_metric: &'static str,
    ) -> Result<Peer> {
        crate::process::wait_tcp(
            "the OTLP port",
            std::net::SocketAddr::from(([127, 0, 0, 1], otlp_port)),
            &mut guard,
        )?;
        let peer = Peer {
            guard,
            otlp_port,
            metrics_port,
            spans_metric,
        };
        crate::process::poll_until(
            "the export peer's metrics",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || Ok(peer.metrics().ok().map(|_| ())),
        )?;
        Ok(peer)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    fn metrics(&self) -> Result<Metrics> {
        let (code, body) = http_get(self.metrics_port, "/metrics")?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(Metrics::parse(&body))
    }

    /// Spans accepted so far.
    fn accepted_spans(&self) -> f64 {
        self.metrics().map_or(0.0, |m| {
            m.samples
                .iter()
                .filter(|(k, _)| k.starts_with(self.spans_metric))
                .map(|(_, v)| v)
                .sum()
        })
    }

    fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// Progress and time estimate.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    fn line(&mut self, what: &str) {
        self.done += 1;
        let el = self.started.elapsed().as_secs_f64();
        let left = if self.done > 0 {
            el / self.done as f64 * (self.total.saturating_sub(self.done)) as f64
        } else {
            0.0
        };
        println!(
            "[bench] {:>3}/{:<3} {:>5.1} min, ≈{:>4.1} min left  {what}",
            self.done,
            self.total,
            el / 60.0,
            left / 60.0
        );
    }
}

/// Runs the whole benchmark; returns the report directory.
pub fn run(opts: &Options, receiver_bin: &Path) -> Result<PathBuf> {
    let run_id = run_id();
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| paths::target_dir().join("bench").join(&run_id));
    std::fs::create_dir_all(out.join("runs"))?;
    // Servers' scratch lives outside the report (data dirs, sockets: short paths).
    let scratch = paths::scratch_dir("bench")?;
    println!("[bench] report directory {}", out.display());
    let started = Instant::now();

    let tracepoints = configs::list_tracepoints(receiver_bin)?;
    let no_inference_unavailable = configs::probe_no_inference(receiver_bin, &out);
    if let Some(why) = &no_inference_unavailable {
        println!("[bench] no-inference: UNAVAILABLE ({why}); reported as unavailable");
    }
    let collector = Peer::collector(&out)?;
    let sink = if opts.configs.contains(&Config::ReceiverSink) {
        Some(Peer::sink(&out)?)
    } else {
        None
    };
    let env = Env {
        receiver_bin: receiver_bin.to_path_buf(),
        collector_endpoint: collector.endpoint(),
        sink_endpoint: sink.as_ref().map(Peer::endpoint),
        tracepoints,
        no_inference_unavailable,
    };
    let mut servers = Servers::new(&scratch);

    let total: usize = opts
        .workloads
        .iter()
        .map(|w| {
            opts.placements_for(*w)
                .iter()
                .map(|p| opts.runs_per(*w, *p))
                .sum::<usize>()
        })
        .sum();
    // About 2.5 s per run for starting and stopping receivers, bpftrace and tshark, plus the
    // warm-ups, the syscall cost and the attribution run.
    let estimate_min = (total as f64 * (opts.duration.as_secs_f64() + 2.5)
        + opts.workloads.len() as f64 * (opts.duration.as_secs_f64() + 3.0) * 2.0
        + if opts.syscall_cost { 60.0 } else { 0.0 })
        / 60.0;
    println!(
        "[bench] plan: {} workload(s), {} runs of {:.0} s ({} repetition(s), configurations interleaved){}{}; about {:.0} min",
        opts.workloads.len(),
        total,
        opts.duration.as_secs_f64(),
        opts.reps,
        if opts.syscall_cost {
            ", the syscall cost"
        } else {
            ""
        },
        if opts.attribution {
            ", the attribution run"
        } else {
            ""
        },
        estimate_min
    );
    let mut progress = Progress {
        total,
        done: 0,
        started,
    };
    let mut records: Vec<RunRecord> = Vec::new();
    let mut ctx = Ctx {
        opts,
        env: &env,
        collector: &collector,
        sink: sink.as_ref(),
        out: &out,
        self_pid: std::process::id(),
    };

    for &w in &opts.workloads {
        println!("[bench] workload {}: {}", w.name(), w.describe());
        let target = servers
            .target(w)
            .with_context(|| format!("starting the servers of {}", w.name()))?;
        for p in opts.placements_for(w) {
            let (server_cpus, other_cpus) = p.cpus();
            procs::pin_tree(&target.pids, server_cpus.as_deref())?;
            procs::pin_tree(&ctx.peer_pids(), other_cpus.as_deref())?;
            // Warm-up and, for redis-benchmark (no duration option), the request count that
            // takes about `duration`.
            let size = ctx.calibrate(&mut servers, w, &target, p)?;
            let mut baseline_ops: Vec<f64> = Vec::new();
            for &m in &opts.modes {
                if m == Mode::Open && !w.has_open_loop() {
                    continue;
                }
                let rate = match m {
                    Mode::Closed => None,
                    Mode::Open => {
                        if baseline_ops.is_empty() {
                            let r = ctx.run_one(
                                &mut servers,
                                w,
                                &target,
                                Mode::Closed,
                                p,
                                Config::Baseline,
                                0,
                                None,
                                size,
                            )?;
                            baseline_ops.push(r.ops as f64 / r.duration_s.max(1e-9));
                        }
                        Some(report::median(&baseline_ops) * opts.open_fraction)
                    }
                };
                let cfgs = opts.configs_for(m, p, w);
                for rep in 1..=opts.reps {
                    for &cfg in &cfgs {
                        let label = format!(
                            "{} {} {} {:<14} rep {rep}/{}",
                            w.name(),
                            m.name(),
                            p.name(),
                            cfg.name(),
                            opts.reps
                        );
                        let r =
                            match ctx.run_one(&mut servers, w, &target, m, p, cfg, rep, rate, size)
                            {
                                Ok(r) => r,
                                Err(e) if cfg == Config::NoInference => RunRecord {
                                    workload: w.name().into(),
                                    mode: m.name().into(),
                                    placement: p.name().into(),
                                    config: cfg.name().into(),
                                    rep,
                                    note: Some(format!("{e:#}")),
                                    ..RunRecord::default()
                                },
                                Err(e) => {
                                    return Err(e.context(format!("run {label}")));
                                }
                            };
                        if m == Mode::Closed && cfg == Config::Baseline {
                            baseline_ops.push(r.ops as f64 / r.duration_s.max(1e-9));
                        }
                        progress.line(&format!("{label}: {}", report::one_line(&r)));
                        records.push(r);
                        report::write_json(&out.join("results.json"), &records)?;
                    }
                }
            }
        }
        procs::pin_tree(&target.pids, None)?;
    }
    procs::pin_tree(&ctx.peer_pids(), None)?;

    let syscall = if opts.syscall_cost {
        println!("[bench] cost per syscall: dd bs=1 (1M reads + 1M writes), interleaved");
        Some(syscalls::measure(&env, &out, opts.reps.clamp(2, 5))?)
    } else {
        None
    };
    let attribution = if opts.attribution {
        println!(
            "[bench] attribution run: kernel.bpf_stats_enabled=1, each workload once with the receiver"
        );
        Some(ctx.attribution(&mut servers)?)
    } else {
        None
    };
    drop(servers);
    drop(sink);
    drop(collector);
    paths::remove_scratch_dir(&scratch);

    let replay = if opts.replay {
        println!("[bench] replay benchmark: recorded ring streams, no kernel (then callgrind)");
        Some(crate::replay::measure(false)?)
    } else {
        None
    };
    let mut meta = report::Meta::collect(opts, &env, started.elapsed());
    meta.replay = replay;
    report::write(
        &out,
        &meta,
        &records,
        syscall.as_ref(),
        attribution.as_deref(),
    )?;
    Ok(out)
}

fn run_id() -> String {
    let out = Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    out.unwrap_or_else(|| format!("{}", crate::process::unix_now_ns() / 1_000_000_000))
}

struct Ctx<'a> {
    opts: &'a Options,
    env: &'a Env,
    collector: &'a Peer,
    sink: Option<&'a Peer>,
    out: &'a Path,
    self_pid: u32,
}

/// Counters of one receiver run that are read as deltas.
const DATA_EVENTS: &str = "ebpf_receiver_kernel_events_total{stream=\"data\"}";
const CONTROL_EVENTS: &str = "ebpf_receiver_kernel_events_total{stream=\"control\"}";
const DATA_BYTES: &str = "ebpf_receiver_kernel_bytes_total{stream=\"data\"}";
const WAKEUPS: &str = "ebpf_receiver_ring_wakeups_total";

impl Ctx<'_> {
    /// Where `cfg` exports (the Collector also for configurations that export nothing: its
    /// idle CPU is then what is measured).
    fn peer(&self, cfg: Config) -> &Peer {
        match (cfg, self.sink) {
            (Config::ReceiverSink, Some(s)) => s,
            _ => self.collector,
        }
    }

    fn peer_pids(&self) -> Vec<u32> {
        let mut v = vec![self.collector.pid()];
        v.extend(self.sink.map(Peer::pid));
        v
    }

    /// One unrecorded baseline run (warm-up); returns redis-benchmark's `-n` for `duration`.
    fn calibrate(
        &mut self,
        servers: &mut Servers,
        w: Workload,
        t: &Target,
        p: Placement,
    ) -> Result<u64> {
        let probe_n: u64 = if matches!(w, Workload::RedisP16) {
            200_000
        } else {
            40_000
        };
        let r = self.run_one(
            servers,
            w,
            t,
            Mode::Closed,
            p,
            Config::Baseline,
            0,
            None,
            probe_n,
        )?;
        let per_test = if matches!(w, Workload::Redis | Workload::RedisP16 | Workload::Mixed) {
            // Two tests (SET, GET) share the duration.
            let rps = r.requests as f64 / r.duration_s.max(1e-9);
            ((rps * self.opts.duration.as_secs_f64() / 2.0) as u64).max(1000)
        } else {
            0
        };
        println!(
            "[bench]   warm-up ({}): {:.0} req/s{}",
            p.name(),
            r.throughput,
            if per_test > 0 {
                format!("; redis-benchmark -n {per_test} per test")
            } else {
                String::new()
            }
        );
        Ok(per_test)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_one(
        &mut self,
        servers: &mut Servers,
        w: Workload,
        t: &Target,
        m: Mode,
        p: Placement,
        cfg: Config,
        rep: usize,
        rate: Option<f64>,
        size: u64,
    ) -> Result<RunRecord> {
        let name = format!(
            "{}-{}-{}-{}-{rep}",
            w.name(),
            m.name(),
            p.name(),
            cfg.name()
        );
        let dir = self.out.join("runs").join(&name);
        std::fs::create_dir_all(&dir)?;
        let (_, other_cpus) = p.cpus();
        let duration = self.opts.duration;
        let log_prefix = dir.join("pgbench_log");
        let cmd = match m {
            Mode::Closed => servers.closed_command(w, t, duration, size)?,
            Mode::Open => servers.open_command(
                w,
                t,
                duration,
                rate.context("open loop without a rate")?,
                &log_prefix,
            )?,
        };
        std::fs::write(dir.join("command.txt"), format!("{cmd:?}\n"))?;
        let mut held = Held::spawn("load", &cmd, &dir, other_cpus.as_deref())?;
        // The mixed workload's bulk client, held like the load generator (its pid is traced).
        let mut bulk = match t.bulk_port {
            Some(port) => {
                let c = workloads::iperf_client(port, duration, &self.opts.bulk_rate);
                Some(Held::spawn("iperf3", &c, &dir, other_cpus.as_deref())?)
            }
            None => None,
        };
        let (include, exclude) = self.scope_pids(t, held.pid(), bulk.as_ref().map(Held::pid));
        let active = configs::start(
            cfg,
            self.env,
            &StartArgs {
                dir: &dir,
                exclude_pids: &exclude,
                include_pids: &include,
                port: t.port,
                tshark: w.tshark_decode(),
                cpus: other_cpus.as_deref(),
            },
        )?;
        let tool_roots = active.roots();
        let m0 = active.metrics();
        let server0 = procs::tree_cpu(&t.pids);
        let bulk0 = procs::tree_cpu(&t.bulk_pids);
        let tool0 = procs::tree_cpu(&tool_roots);
        let peer = self.peer(cfg);
        let col0 = procs::tree_cpu(&[peer.pid()]);
        let spans0 = peer.accepted_spans();
        let t0 = Instant::now();
        if let Some(b) = bulk.as_mut() {
            b.release()?;
        }
        held.release()?;
        let limit = duration * 4 + Duration::from_secs(120);
        procs::wait_exited_unreaped(held.pid(), limit)
            .with_context(|| format!("load generator of {name}"))?;
        let wall = t0.elapsed().as_secs_f64();
        let client_cpu = procs::tree_cpu(&[held.pid()]);
        let server_cpu = procs::tree_cpu(&t.pids) - server0;
        let status = held.guard.wait_timeout(Duration::from_secs(10))?;
        let stdout = std::fs::read_to_string(&held.stdout).unwrap_or_default();
        if !status.success() {
            bail!(
                "load generator failed ({status}): {}\n{}",
                held.guard.log_tail(20),
                tail(&stdout, 10)
            );
        }
        let outcome =
            workloads::parse_outcome(w, m == Mode::Open, &stdout, wall, &log_prefix, size)
                .with_context(|| format!("output of {name} (see {})", dir.display()))?;
        let (bulk_bytes, bulk_cpu) = match bulk.as_mut() {
            Some(b) => {
                let client =
                    procs::wait_exited_unreaped(b.pid(), duration + Duration::from_secs(30))
                        .map(|()| procs::tree_cpu(&[b.pid()]))
                        .unwrap_or(f64::NAN);
                let _ = b.guard.wait_timeout(Duration::from_secs(10));
                let server = procs::tree_cpu(&t.bulk_pids) - bulk0;
                let text = std::fs::read_to_string(&b.stdout).unwrap_or_default();
                (workloads::iperf_bytes(&text), Some(client + server))
            }
            None => (None, None),
        };
        drop(bulk);
        // The receiver drains what the load produced.
        if let Some(r) = active.receiver() {
            drain(r);
        }
        let window = t0.elapsed().as_secs_f64();
        let tool_cpu = (!tool_roots.is_empty()).then(|| procs::tree_cpu(&tool_roots) - tool0);
        let col_cpu = procs::tree_cpu(&[peer.pid()]) - col0;
        let m1 = active.metrics();
        let (mem, maps) = match active.receiver() {
            Some(r) => {
                let (rss, hwm) = crate::load::proc_sample(r.pid())
                    .map_or((0, 0), |p| (p.vm_rss_kib, p.vm_hwm_kib));
                let (maps, _) = procs::bpf_objects(r.pid());
                (
                    Some((rss, hwm)),
                    Some(maps.iter().map(|m| m.memlock).sum::<u64>()),
                )
            }
            None => (None, None),
        };
        let stopped = active.stop();
        let spans1 = peer.accepted_spans();
        let d = |k: &str| match (&m0, &m1) {
            (Some(a), Some(b)) => Some(b.get(k) - a.get(k)),
            _ => None,
        };
        let drops = match (&m0, &m1) {
            (Some(a), Some(b)) => Some(
                LOSS_COUNTERS
                    .iter()
                    .map(|k| b.get(k) - a.get(k))
                    .sum::<f64>(),
            ),
            _ => None,
        };
        let wakeups = match (&m0, &m1) {
            (Some(a), Some(b)) if b.has(WAKEUPS) => Some(b.get(WAKEUPS) - a.get(WAKEUPS)),
            _ => None,
        };
        let family_delta = |name: &str| match (&m0, &m1) {
            (Some(a), Some(b)) => Some(b.sum(name) - a.sum(name)),
            _ => None,
        };
        let mut note = None;
        if stopped.receiver_clean_exit == Some(false) {
            note = Some("receiver did not exit cleanly".to_string());
        }
        if outcome.errors > 0 {
            note = Some(format!("{} load errors", outcome.errors));
        }
        if let Some(late) = outcome.late_sends
            && late * 100 > outcome.requests.max(1)
        {
            note = Some(format!(
                "{late} of {} requests sent > 1 ms late: the rate was not sustained (latency includes queueing)",
                outcome.requests
            ));
        }
        let rec = RunRecord {
            workload: w.name().into(),
            mode: m.name().into(),
            placement: p.name().into(),
            config: cfg.name().into(),
            rep,
            requests: outcome.requests,
            ops: outcome.ops,
            errors: outcome.errors,
            duration_s: outcome.duration_s,
            throughput: outcome.requests as f64 / outcome.duration_s.max(1e-9),
            target_rate: rate,
            p50_us: outcome.latency_us.map(|l| l[0]),
            p99_us: outcome.latency_us.map(|l| l[1]),
            p999_us: outcome.latency_us.map(|l| l[2]),
            mean_us: outcome.latency_us.map(|l| l[3]),
            server_cpu_s: server_cpu,
            client_cpu_s: client_cpu,
            tool_cpu_s: tool_cpu,
            collector_cpu_s: col_cpu,
            window_s: window,
            receiver_rss_kib: mem.map(|m| m.0),
            receiver_hwm_kib: mem.map(|m| m.1),
            bpf_map_bytes: maps,
            data_events: d(DATA_EVENTS),
            control_events: d(CONTROL_EVENTS),
            data_bytes: d(DATA_BYTES),
            ring_wakeups: wakeups,
            kernel_drops: drops,
            spans_dropped: family_delta("ebpf_receiver_spans_dropped_total"),
            spans_exported: family_delta("ebpf_receiver_spans_exported_total"),
            collector_spans: cfg.is_receiver().then_some(spans1 - spans0),
            tshark_packets: stopped.tshark_packets,
            tshark_dropped: stopped.tshark_dropped,
            bulk_bytes,
            bulk_cpu_s: bulk_cpu,
            late_sends: outcome.late_sends,
            note,
        };
        // Keep small artefacts only (the per-run dirs hold configs, logs and tool output).
        Ok(rec)
    }

    /// `(targets.pids, targets.exclude_pids)` for a run, see [`Scope`].
    fn scope_pids(&self, t: &Target, load: u32, bulk: Option<u32>) -> (Vec<u32>, Vec<u32>) {
        let mut scope = self.opts.scope;
        if t.forks_per_connection && scope != Scope::Host {
            scope = Scope::Host;
        }
        let mut harness = vec![self.self_pid];
        harness.extend(self.peer_pids());
        match scope {
            Scope::Host => {
                let mut ex = harness;
                if self.opts.scope != Scope::Both {
                    ex.push(load);
                }
                (Vec::new(), ex)
            }
            Scope::Server | Scope::Both => {
                let mut inc: Vec<u32> = procs::tree(&t.pids);
                inc.extend(procs::tree(&t.bulk_pids));
                inc.extend(bulk);
                if scope == Scope::Both {
                    inc.push(load);
                }
                (inc, harness)
            }
        }
    }

    /// Per-program cost: each workload once, closed loop, receiver on, bpf_stats enabled.
    fn attribution(&mut self, servers: &mut Servers) -> Result<Vec<report::Attribution>> {
        const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
        let old = std::fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
        std::fs::write(BPF_STATS, "1").context("enabling kernel.bpf_stats_enabled")?;
        let result = (|| -> Result<Vec<report::Attribution>> {
            let mut out = Vec::new();
            for &w in &self.opts.workloads {
                let t = servers.target(w)?;
                let size = self.calibrate(servers, w, &t, Placement::Contended)?;
                let dir = self
                    .out
                    .join("runs")
                    .join(format!("{}-attribution", w.name()));
                std::fs::create_dir_all(&dir)?;
                let cmd = servers.closed_command(w, &t, self.opts.duration, size)?;
                let mut held = Held::spawn("load", &cmd, &dir, None)?;
                let (include, exclude) = self.scope_pids(&t, held.pid(), None);
                let active = configs::start(
                    Config::Receiver,
                    self.env,
                    &StartArgs {
                        dir: &dir,
                        exclude_pids: &exclude,
                        include_pids: &include,
                        port: t.port,
                        tshark: w.tshark_decode(),
                        cpus: None,
                    },
                )?;
                let pid = active.roots()[0];
                let (_, p0) = procs::bpf_objects(pid);
                held.release()?;
                procs::wait_exited_unreaped(
                    held.pid(),
                    self.opts.duration * 4 + Duration::from_secs(120),
                )?;
                let (_, p1) = procs::bpf_objects(pid);
                let names = procs::bpf_prog_names();
                let _ = held.guard.wait_timeout(Duration::from_secs(10));
                let stdout = std::fs::read_to_string(&held.stdout).unwrap_or_default();
                let outcome = workloads::parse_outcome(
                    w,
                    false,
                    &stdout,
                    1.0,
                    &dir.join("pgbench_log"),
                    size,
                )?;
                drop(active);
                let mut progs = Vec::new();
                for b in &p1 {
                    let a = p0.iter().find(|a| a.id == b.id);
                    let runs = b.run_cnt - a.map_or(0, |a| a.run_cnt);
                    let ns = b.run_time_ns - a.map_or(0, |a| a.run_time_ns);
                    if runs == 0 {
                        continue;
                    }
                    let name = names
                        .get(&b.id)
                        .cloned()
                        .unwrap_or_else(|| format!("prog {}", b.id));
                    progs.push(report::ProgCost {
                        name,
                        runs,
                        total_ns: ns,
                    });
                }
                progs.sort_by_key(|p| std::cmp::Reverse(p.total_ns));
                println!(
                    "[bench]   {}: {} requests, kernel programs {:.2} µs per request",
                    w.name(),
                    outcome.requests,
                    progs.iter().map(|p| p.total_ns).sum::<u64>() as f64
                        / outcome.requests.max(1) as f64
                        / 1e3
                );
                out.push(report::Attribution {
                    workload: w.name().into(),
                    requests: outcome.requests,
                    programs: progs,
                });
            }
            Ok(out)
        })();
        let _ = std::fs::write(BPF_STATS, old.trim());
        result
    }
}

/// Waits until the receiver's span counters stop moving and its export queue is empty (at most
/// 30 s).
fn drain(r: &crate::receiver::Receiver) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = f64::NAN;
    let mut stable = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(m) = r.metrics() else {
            return;
        };
        let key = m.sum("ebpf_receiver_spans_created_total")
            + m.sum("ebpf_receiver_spans_exported_total")
            + m.sum("ebpf_receiver_spans_dropped_total")
            + m.get(DATA_EVENTS);
        let queue = m.get("ebpf_receiver_export_queue_bytes");
        if key == last && queue == 0.0 {
            stable += 1;
            if stable >= 3 {
                return;
            }
        } else {
            stable = 0;
        }
        last = key;
    }
}

fn tail(s: &str, n: usize) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(o: &Options) -> usize {
        o.workloads
            .iter()
            .map(|w| {
                o.placements_for(*w)
                    .iter()
                    .map(|p| o.runs_per(*w, *p))
                    .sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn default_plan() {
        let o = Options::defaults(false);
        // Contended: 7 workloads × 6 configurations closed, 6 open with 4 (mixed: 5), 5 reps;
        // pinned: nginx and redis, baseline and receiver, both modes.
        assert_eq!(total(&o), 210 + 125 + 40);
        assert_eq!(
            o.configs_for(Mode::Open, Placement::Contended, Workload::Mixed),
            [
                Config::Baseline,
                Config::Receiver,
                Config::ReceiverSink,
                Config::NoInference,
                Config::EmptyPrograms
            ]
        );
        assert_eq!(
            o.configs_for(Mode::Closed, Placement::Pinned, Workload::Nginx),
            [Config::Baseline, Config::Receiver]
        );
        assert_eq!(o.placements_for(Workload::Pgbench), [Placement::Contended]);
        let q = Options::defaults(true);
        assert_eq!(q.reps, 1);
        assert_eq!(total(&q), 42 + 25);
    }

    #[test]
    fn pinned_cpus_split_the_machine() {
        let (server, rest) = Placement::Pinned.cpus();
        if procs::online_cpus() >= 2 {
            assert!(server.is_some() && rest.is_some());
        }
        assert_eq!(Placement::Contended.cpus(), (None, None));
    }
}
