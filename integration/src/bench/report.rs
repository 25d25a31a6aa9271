//! The report: `results.json` (every run), `summary.json` (medians and ranges per workload,
//! mode, placement and configuration), `report.md`, PNG charts drawn by
//! `integration/clients/bench_charts.py` (matplotlib in the harness venv), and a one-screen
//! table on stdout with the targets and whether each is met.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::configs::{Config, Env};
use super::syscalls::{self, SyscallCost};
use super::{Options, RunRecord};
use crate::paths;

pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median and range.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(v: &[f64]) -> Option<Stat> {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        Some(Stat {
            median: median(&v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Figures of one workload × mode × placement × configuration over its repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub workload: String,
    pub mode: String,
    pub placement: String,
    pub config: String,
    pub runs: usize,
    pub note: Option<String>,
    pub throughput: Option<Stat>,
    pub target_rate: Option<f64>,
    pub p50_us: Option<Stat>,
    pub p99_us: Option<Stat>,
    pub p999_us: Option<Stat>,
    /// CPU µs per request of the traced server processes, the load generator, both.
    pub server_us: Option<Stat>,
    pub client_us: Option<Stat>,
    pub app_us: Option<Stat>,
    /// CPU µs per request of the configuration's own processes (receiver, bpftrace, tshark).
    pub tool_us: Option<Stat>,
    pub collector_us: Option<Stat>,
    /// Receiver CPU µs per span the Collector accepted.
    pub tool_us_per_span: Option<Stat>,
    pub hwm_mib: Option<Stat>,
    pub bpf_maps_mib: Option<Stat>,
    pub events_per_req: Option<Stat>,
    pub bytes_per_req: Option<Stat>,
    pub wakeups_per_s: Option<Stat>,
    pub kernel_drops: Option<f64>,
    pub spans_dropped: Option<f64>,
    pub completeness: Option<Stat>,
    pub tshark_dropped: Option<u64>,
    pub tshark_packets_per_req: Option<Stat>,
    pub bulk_mbit_s: Option<Stat>,
    /// iperf3 (client + server) CPU, % of one core.
    pub bulk_cpu_pct: Option<Stat>,
}

fn per_req(v: f64, r: &RunRecord) -> f64 {
    if r.requests == 0 {
        f64::NAN
    } else {
        v / r.requests as f64
    }
}

pub fn group(records: &[RunRecord], sides: f64) -> Vec<Group> {
    let mut keys: Vec<(String, String, String, String)> = Vec::new();
    for r in records {
        let k = (
            r.workload.clone(),
            r.mode.clone(),
            r.placement.clone(),
            r.config.clone(),
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(w, m, p, c)| {
            let rs: Vec<&RunRecord> = records
                .iter()
                .filter(|r| r.workload == w && r.mode == m && r.placement == p && r.config == c)
                .collect();
            let ok: Vec<&RunRecord> = rs.iter().copied().filter(|r| r.requests > 0).collect();
            let st = |f: &dyn Fn(&RunRecord) -> Option<f64>| {
                Stat::of(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let sum = |f: &dyn Fn(&RunRecord) -> Option<f64>| {
                let v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| v.iter().sum())
            };
            Group {
                workload: w,
                mode: m,
                placement: p,
                config: c,
                runs: ok.len(),
                note: rs.iter().find_map(|r| r.note.clone()),
                throughput: st(&|r| Some(r.throughput)),
                target_rate: ok.iter().find_map(|r| r.target_rate),
                p50_us: st(&|r| r.p50_us),
                p99_us: st(&|r| r.p99_us),
                p999_us: st(&|r| r.p999_us),
                server_us: st(&|r| Some(per_req(r.server_cpu_s * 1e6, r))),
                client_us: st(&|r| Some(per_req(r.client_cpu_s * 1e6, r))),
                app_us: st(&|r| Some(per_req((r.server_cpu_s + r.client_cpu_s) * 1e6, r))),
                tool_us: st(&|r| r.tool_cpu_s.map(|c| per_req(c * 1e6, r))),
                collector_us: st(&|r| {
                    r.collector_spans
                        .map(|_| per_req(r.collector_cpu_s * 1e6, r))
                }),
                tool_us_per_span: st(&|r| match (r.tool_cpu_s, r.collector_spans) {
                    (Some(c), Some(s)) if s > 0.0 => Some(c * 1e6 / s),
                    _ => None,
                }),
                hwm_mib: st(&|r| r.receiver_hwm_kib.map(|k| k as f64 / 1024.0)),
                bpf_maps_mib: st(&|r| r.bpf_map_bytes.map(|b| b as f64 / 1048576.0)),
                events_per_req: st(&|r| match (r.data_events, r.control_events) {
                    (Some(d), Some(c)) => Some(per_req(d + c, r)),
                    _ => None,
                }),
                bytes_per_req: st(&|r| r.data_bytes.map(|b| per_req(b, r))),
                wakeups_per_s: st(&|r| r.ring_wakeups.map(|w| w / r.window_s.max(1e-9))),
                kernel_drops: sum(&|r| r.kernel_drops),
                spans_dropped: sum(&|r| r.spans_dropped),
                completeness: st(&|r| r.collector_spans.map(|s| per_req(s, r) / sides)),
                tshark_dropped: {
                    let v: Vec<u64> = ok.iter().filter_map(|r| r.tshark_dropped).collect();
                    (!v.is_empty()).then(|| v.iter().sum())
                },
                tshark_packets_per_req: st(&|r| r.tshark_packets.map(|p| per_req(p as f64, r))),
                bulk_mbit_s: st(&|r| r.bulk_bytes.map(|b| b * 8.0 / 1e6 / r.duration_s.max(1e-9))),
                bulk_cpu_pct: st(&|r| r.bulk_cpu_s.map(|c| c * 100.0 / r.duration_s.max(1e-9))),
            }
        })
        .collect()
}

/// Per-program cost from the attribution run.
#[derive(Clone, Debug, Serialize)]
pub struct ProgCost {
    pub name: String,
    pub runs: u64,
    pub total_ns: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Attribution {
    pub workload: String,
    pub requests: u64,
    pub programs: Vec<ProgCost>,
}

/// What the report says about the run itself.
#[derive(Clone, Debug, Serialize)]
pub struct Meta {
    pub command: String,
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory: String,
    pub commit: String,
    pub tools: Vec<(String, String)>,
    pub reps: usize,
    pub duration_s: f64,
    pub open_fraction: f64,
    pub scope: String,
    pub bulk_rate: String,
    pub quick: bool,
    pub elapsed_min: f64,
    pub tracepoints: usize,
    pub no_inference_unavailable: Option<String>,
    pub tshark_resp: bool,
    /// The replay benchmark's totals, when it ran.
    pub replay: Option<crate::replay::Summary>,
}

fn first_line(mut c: Command) -> String {
    c.output()
        .ok()
        .map(|o| {
            let t = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("Running as user"))
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|| "not found".into())
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

impl Meta {
    pub fn collect(opts: &Options, env: &Env, elapsed: Duration) -> Meta {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let mem = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .next()
            .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
            .and_then(|k| k.parse::<f64>().ok())
            .map(|k| format!("{:.1} GiB", k / 1048576.0))
            .unwrap_or_default();
        let mut git = Command::new("git");
        git.current_dir(paths::workspace_root()).args([
            "describe",
            "--always",
            "--dirty",
            "--abbrev=12",
        ]);
        let pg = super::super::servers::postgres::bin_dir()
            .map(|(_, b)| b.join("postgres").to_string_lossy().into_owned())
            .unwrap_or_else(|_| "postgres".into());
        let tools = vec![
            ("nginx".to_string(), first_line(cmd("nginx", &["-v"]))),
            ("wrk".into(), first_line(cmd("wrk", &["-v"]))),
            (
                "redis-server".into(),
                first_line(cmd("redis-server", &["--version"])),
            ),
            (
                "mariadbd".into(),
                first_line(cmd("mariadbd", &["--version"])),
            ),
            (
                "sysbench".into(),
                first_line(cmd("sysbench", &["--version"])),
            ),
            ("postgres".into(), first_line(cmd(&pg, &["--version"]))),
            ("pgbench".into(), first_line(cmd("pgbench", &["--version"]))),
            ("iperf3".into(), first_line(cmd("iperf3", &["--version"]))),
            (
                "bpftrace".into(),
                first_line(cmd("bpftrace", &["--version"])),
            ),
            ("tshark".into(), first_line(cmd("tshark", &["-v"]))),
            (
                "otelcol".into(),
                first_line(cmd(
                    &paths::collector_bin().to_string_lossy(),
                    &["--version"],
                )),
            ),
        ];
        Meta {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            cpu,
            cpus: super::procs::online_cpus(),
            memory: mem,
            commit: first_line(git),
            tools,
            reps: opts.reps,
            duration_s: opts.duration.as_secs_f64(),
            open_fraction: opts.open_fraction,
            scope: opts.scope.name().into(),
            bulk_rate: opts.bulk_rate.clone(),
            quick: opts.quick,
            elapsed_min: elapsed.as_secs_f64() / 60.0,
            tracepoints: env.tracepoints.len(),
            no_inference_unavailable: env.no_inference_unavailable.clone(),
            tshark_resp: super::configs::tshark_has_dissector("resp"),
            replay: None,
        }
    }
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One progress line for a run.
pub fn one_line(r: &RunRecord) -> String {
    if r.requests == 0 {
        return format!("unavailable ({})", r.note.clone().unwrap_or_default());
    }
    let mut s = format!(
        "{:>9.0} req/s  app {:>5.1} µs/req",
        r.throughput,
        (r.server_cpu_s + r.client_cpu_s) * 1e6 / r.requests as f64
    );
    if let Some(p) = r.p99_us {
        let _ = write!(s, "  p50 {:.0} p99 {:.0} µs", r.p50_us.unwrap_or(0.0), p);
    }
    if let Some(c) = r.tool_cpu_s {
        let _ = write!(s, "  tool {:>5.1} µs/req", c * 1e6 / r.requests as f64);
    }
    if let Some(b) = r.data_bytes {
        let _ = write!(s, "  {:.0} B/req", b / r.requests as f64);
    }
    if let Some(sp) = r.collector_spans {
        let _ = write!(s, "  spans {:.4}", sp / r.requests as f64);
    }
    if let Some(d) = r.kernel_drops
        && d > 0.0
    {
        let _ = write!(s, "  DROPS {d}");
    }
    if let Some(d) = r.tshark_dropped
        && d > 0
    {
        let _ = write!(s, "  tshark dropped {d}");
    }
    if let Some(n) = &r.note {
        let _ = write!(s, "  ({n})");
    }
    s
}

/// A target of the issue and what this run measured.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRow {
    pub figure: String,
    pub target: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

fn find<'a>(groups: &'a [Group], w: &str, m: &str, p: &str, c: Config) -> Option<&'a Group> {
    groups
        .iter()
        .find(|g| g.workload == w && g.mode == m && g.placement == p && g.config == c.name())
}

fn med(s: &Option<Stat>) -> Option<f64> {
    s.map(|s| s.median).filter(|v| v.is_finite())
}

/// Δ% of `f` between the receiver and the baseline of the same workload/mode/placement.
fn delta_pct(
    groups: &[Group],
    w: &str,
    m: &str,
    p: &str,
    cfg: Config,
    f: &dyn Fn(&Group) -> Option<f64>,
) -> Option<f64> {
    let b = f(find(groups, w, m, p, Config::Baseline)?)?;
    let r = f(find(groups, w, m, p, cfg)?)?;
    (b > 0.0).then(|| (r / b - 1.0) * 100.0)
}

pub fn targets(groups: &[Group], syscall: Option<&SyscallCost>, meta: &Meta) -> Vec<TargetRow> {
    let p = "contended";
    let mut rows = Vec::new();
    let none = |figure: &str, target: &str, why: &str| TargetRow {
        figure: figure.into(),
        target: target.into(),
        measured: why.into(),
        met: None,
    };
    // The receiver configurations the loss, latency and completeness rows are given for: the
    // full pipeline to the Collector (the target's configuration) and, when run, the same
    // receiver exporting to the sink (its own cost, the Collector's taken off the CPUs).
    let sink_ran = groups
        .iter()
        .any(|g| g.config == Config::ReceiverSink.name());
    let pipelines: Vec<(Config, &str)> = if sink_ran {
        vec![
            (Config::Receiver, ""),
            (Config::ReceiverSink, " (receiver → sink)"),
        ]
    } else {
        vec![(Config::Receiver, "")]
    };
    // Throughput loss.
    for &(cfg, suffix) in &pipelines {
        for (w, figure, limit) in [
            (
                "nginx",
                "throughput loss, nginx keep-alive, closed loop",
                3.0,
            ),
            (
                "redis",
                "throughput loss, Redis GET/SET, no pipelining",
                5.0,
            ),
        ] {
            let figure = format!("{figure}{suffix}");
            let target = format!("≤ {limit} %");
            match delta_pct(groups, w, "closed", p, cfg, &|g| med(&g.throughput)) {
                Some(d) => rows.push(TargetRow {
                    figure,
                    target,
                    measured: format!("{:+.1} % (medians)", d),
                    met: Some(-d <= limit),
                }),
                None => rows.push(none(&figure, &target, "not run")),
            }
        }
    }
    // Added latency at half load: the worst workload.
    for &(cfg, suffix) in &pipelines {
        let mut worst: Option<(f64, f64, String)> = None;
        for g in groups
            .iter()
            .filter(|g| g.mode == "open" && g.placement == p && g.config == cfg.name())
        {
            let Some(b) = find(groups, &g.workload, "open", p, Config::Baseline) else {
                continue;
            };
            if let (Some(r50), Some(b50), Some(r99), Some(b99)) = (
                med(&g.p50_us),
                med(&b.p50_us),
                med(&g.p99_us),
                med(&b.p99_us),
            ) {
                let (d50, d99) = (r50 - b50, r99 - b99);
                if worst
                    .as_ref()
                    .is_none_or(|(w50, w99, _)| d99 > *w99 || d50 > *w50)
                {
                    worst = Some((d50, d99, g.workload.clone()));
                }
            }
        }
        let fig = format!("added latency at half load (worst workload){suffix}");
        let tgt = "p50 ≤ +3 µs, p99 ≤ +15 µs";
        match worst {
            Some((d50, d99, w)) => rows.push(TargetRow {
                figure: fig,
                target: tgt.into(),
                measured: format!("p50 {d50:+.1} µs, p99 {d99:+.1} µs ({w})"),
                met: Some(d50 <= 3.0 && d99 <= 15.0),
            }),
            None => rows.push(none(&fig, tgt, "no open-loop run")),
        }
    }
    // Traced application CPU per request (server side), worst closed-loop workload.
    let mut worst: Option<(f64, String)> = None;
    for g in groups
        .iter()
        .filter(|g| g.mode == "closed" && g.placement == p && g.config == Config::Receiver.name())
    {
        if let Some(d) = delta_pct(groups, &g.workload, "closed", p, Config::Receiver, &|g| {
            med(&g.server_us)
        }) && worst.as_ref().is_none_or(|(w, _)| d > *w)
        {
            worst = Some((d, g.workload.clone()));
        }
    }
    let fig = "traced server CPU per request (worst workload)";
    match worst {
        Some((d, w)) => rows.push(TargetRow {
            figure: fig.into(),
            target: "≤ +10 %".into(),
            measured: format!("{d:+.1} % ({w})"),
            met: Some(d <= 10.0),
        }),
        None => rows.push(none(fig, "≤ +10 %", "not run")),
    }
    // Receiver CPU per span: worst closed-loop workload.
    for &(cfg, suffix) in &pipelines {
        let per_span: Vec<(f64, String)> = groups
            .iter()
            .filter(|g| g.mode == "closed" && g.placement == p && g.config == cfg.name())
            .filter_map(|g| Some((med(&g.tool_us_per_span)?, g.workload.clone())))
            .collect();
        let fig = format!("receiver CPU per span{suffix}");
        match per_span
            .iter()
            .cloned()
            .fold(None, |a: Option<(f64, String)>, b| match a {
                Some(a) if a.0 >= b.0 => Some(a),
                _ => Some(b),
            }) {
            Some((v, w)) => {
                let best = per_span.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
                rows.push(TargetRow {
                    figure: fig,
                    target: "≤ 4 µs".into(),
                    measured: format!("{best:.1}–{v:.1} µs (worst: {w})"),
                    met: Some(v <= 4.0),
                })
            }
            None => rows.push(none(&fig, "≤ 4 µs", "not run")),
        }
    }
    // The same pipeline with no kernel: recorded ring streams, one core.
    let fig = "replay spans/s per core";
    match &meta.replay {
        Some(r) => rows.push(TargetRow {
            figure: fig.into(),
            target: "≥ 250k".into(),
            measured: format!(
                "{:.0}k ({:.0} ns/span{})",
                r.spans_per_s_per_core / 1e3,
                r.ns_per_span,
                r.instructions_per_span
                    .map(|i| format!(", {i:.0} instructions/span"))
                    .unwrap_or_default()
            ),
            met: Some(r.spans_per_s_per_core >= 250_000.0),
        }),
        None => rows.push(none(fig, "≥ 250k", "not run")),
    }
    // Memory: the largest VmHWM of the open-loop (fixed, moderate rate) receiver runs; the
    // largest of any run is shown beside it.
    let hwm_of = |open_only: bool| {
        groups
            .iter()
            .filter(|g| g.config == Config::Receiver.name() && (!open_only || g.mode == "open"))
            .filter_map(|g| Some((g.hwm_mib?.max, g.workload.clone(), g.mode.clone())))
            .fold(None, |a: Option<(f64, String, String)>, b| match a {
                Some(a) if a.0 >= b.0 => Some(a),
                _ => Some(b),
            })
    };
    let maps = groups
        .iter()
        .filter(|g| g.config == Config::Receiver.name())
        .filter_map(|g| g.bpf_maps_mib.map(|s| s.max))
        .fold(f64::NAN, f64::max);
    let fig = "receiver memory (VmHWM, open loop) + BPF maps";
    let tgt = "≤ 32 MiB RSS + ≤ 16 MiB BPF maps";
    match (hwm_of(true), hwm_of(false)) {
        (Some((h, w, _)), Some((all, aw, am))) => rows.push(TargetRow {
            figure: fig.into(),
            target: tgt.into(),
            measured: format!(
                "{h:.1} MiB ({w}) + {maps:.1} MiB; any run: {all:.1} MiB ({aw} {am})"
            ),
            met: Some(h <= 32.0 && maps <= 16.0),
        }),
        (None, Some((all, aw, am))) => rows.push(TargetRow {
            figure: fig.into(),
            target: tgt.into(),
            measured: format!("no open loop; any run: {all:.1} MiB ({aw} {am}) + {maps:.1} MiB"),
            met: Some(all <= 32.0 && maps <= 16.0),
        }),
        _ => rows.push(none(fig, tgt, "not run")),
    }
    // Bytes per small request: the median over single-request workloads.
    let small: Vec<f64> = groups
        .iter()
        .filter(|g| {
            g.mode == "closed"
                && g.placement == p
                && g.config == Config::Receiver.name()
                && ["nginx", "redis", "mysql-point-select", "pgbench"]
                    .contains(&g.workload.as_str())
        })
        .filter_map(|g| med(&g.bytes_per_req))
        .collect();
    let fig = "kernel→user bytes per small request";
    if small.is_empty() {
        rows.push(none(fig, "≤ 300 B median", "not run"));
    } else {
        let m = median(&small);
        let max = small.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        rows.push(TargetRow {
            figure: fig.into(),
            target: "≤ 300 B median".into(),
            measured: format!("{m:.0} B median of workloads (max {max:.0} B)"),
            met: Some(m <= 300.0),
        });
    }
    // Loss and completeness over every receiver run.
    for &(cfg, suffix) in &pipelines {
        let rec: Vec<&Group> = groups.iter().filter(|g| g.config == cfg.name()).collect();
        let fig = format!("loss: kernel drops, completeness{suffix}");
        if rec.is_empty() {
            rows.push(none(&fig, "0 lost, ≥ 99.9 %", "not run"));
            continue;
        }
        let drops: f64 = rec.iter().filter_map(|g| g.kernel_drops).sum::<f64>()
            + rec.iter().filter_map(|g| g.spans_dropped).sum::<f64>();
        let (cmin, cw) = rec
            .iter()
            .filter_map(|g| Some((g.completeness?.min, g.workload.clone())))
            .fold((f64::INFINITY, String::new()), |a, b| {
                if b.0 < a.0 { b } else { a }
            });
        rows.push(TargetRow {
            figure: fig,
            target: "0 lost, ≥ 99.9 %".into(),
            measured: format!(
                "{drops:.0} lost, lowest completeness {:.2} % ({cw})",
                cmin * 100.0
            ),
            met: Some(drops == 0.0 && cmin >= 0.999),
        });
    }
    // Inference on vs off, mixed workload.
    let fig = "inference on vs off, mixed: bytes, receiver CPU";
    let tgt = "≥ 10× fewer bytes, ≥ 3× less CPU, same spans";
    if let Some(why) = &meta.no_inference_unavailable {
        rows.push(none(fig, tgt, "no-inference unavailable"));
        let _ = why;
    } else {
        let pick = |m: &str| {
            Some((
                find(groups, "mixed", m, p, Config::Receiver)?,
                find(groups, "mixed", m, p, Config::NoInference)?,
            ))
        };
        match pick("open").or_else(|| pick("closed")) {
            Some((on, off)) => {
                let bytes_on = on.bytes_per_req.map(|s| s.median).unwrap_or(f64::NAN);
                let bytes_off = off.bytes_per_req.map(|s| s.median).unwrap_or(f64::NAN);
                let cpu_on = med(&on.tool_us).unwrap_or(f64::NAN);
                let cpu_off = med(&off.tool_us).unwrap_or(f64::NAN);
                let (br, cr) = (bytes_off / bytes_on, cpu_off / cpu_on);
                let s_on = med(&on.completeness).unwrap_or(f64::NAN);
                let s_off = med(&off.completeness).unwrap_or(f64::NAN);
                rows.push(TargetRow {
                    figure: fig.into(),
                    target: tgt.into(),
                    measured: format!(
                        "{br:.1}× bytes, {cr:.1}× CPU, spans/request {s_on:.3} vs {s_off:.3} ({})",
                        on.mode
                    ),
                    met: Some(br >= 10.0 && cr >= 3.0 && (s_on - s_off).abs() < 0.001),
                });
            }
            None => rows.push(none(fig, tgt, "mixed not run")),
        }
    }
    // Per syscall.
    match syscall {
        Some(s) => {
            let floor = s.added_ns(syscalls::EMPTY).unwrap_or(f64::NAN);
            for (name, label, margin) in [
                (syscalls::UNTRACED, "untraced process, per syscall", 10.0),
                (
                    syscalls::TRACED,
                    "traced process, I/O on non-socket fds",
                    20.0,
                ),
            ] {
                let v = s.added_ns(name).unwrap_or(f64::NAN);
                rows.push(TargetRow {
                    figure: label.into(),
                    target: format!("≤ floor + {margin:.0} ns"),
                    measured: format!("{v:+.0} ns vs empty programs {floor:+.0} ns"),
                    met: (v.is_finite() && floor.is_finite()).then_some(v <= floor + margin),
                });
            }
        }
        None => {
            rows.push(none(
                "untraced process, per syscall",
                "≤ floor + 10 ns",
                "not run",
            ));
            rows.push(none(
                "traced process, I/O on non-socket fds",
                "≤ floor + 20 ns",
                "not run",
            ));
        }
    }
    // vs tshark.
    let ratios: Vec<(f64, String, u64)> = groups
        .iter()
        .filter(|g| g.mode == "closed" && g.placement == p && g.config == Config::Tshark.name())
        .filter_map(|g| {
            let r = find(groups, &g.workload, "closed", p, Config::Receiver)?;
            Some((
                med(&g.tool_us)? / med(&r.tool_us)?,
                g.workload.clone(),
                g.tshark_dropped.unwrap_or(0),
            ))
        })
        .collect();
    let fig = "vs tshark on loopback: CPU per request";
    if ratios.is_empty() {
        rows.push(none(fig, "≥ 10× less CPU, 0 capture drops", "not run"));
    } else {
        let (min, w, _) = ratios
            .iter()
            .cloned()
            .fold((f64::INFINITY, String::new(), 0), |a, b| {
                if b.0 < a.0 { b } else { a }
            });
        let tdrops: u64 = ratios.iter().map(|r| r.2).sum();
        let our_drops: f64 = groups
            .iter()
            .filter(|g| g.config == Config::Receiver.name() && g.mode == "closed")
            .filter_map(|g| g.kernel_drops)
            .sum();
        rows.push(TargetRow {
            figure: fig.into(),
            target: "≥ 10× less CPU, 0 capture drops".into(),
            measured: format!(
                "tshark/receiver ≥ {min:.1}× ({w}); receiver drops {our_drops:.0}, tshark drops {tdrops}"
            ),
            met: Some(min >= 10.0 && our_drops == 0.0),
        });
    }
    rows
}

fn fmt_stat(s: &Option<Stat>, prec: usize) -> String {
    match s {
        Some(s) if s.median.is_finite() => {
            if s.min == s.max {
                format!("{:.*}", prec, s.median)
            } else {
                format!(
                    "{:.*} ({:.*}–{:.*})",
                    prec, s.median, prec, s.min, prec, s.max
                )
            }
        }
        _ => "–".into(),
    }
}

fn fmt_med(s: &Option<Stat>, prec: usize) -> String {
    match med(s) {
        Some(v) => format!("{v:.prec$}"),
        None => "–".into(),
    }
}

fn fmt_delta(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:+.1}{unit}"),
        _ => "–".into(),
    }
}

fn met_str(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT MET",
        None => "–",
    }
}

/// Writes summary.json, report.md, charts; prints the one-screen table.
pub fn write(
    out: &Path,
    meta: &Meta,
    records: &[RunRecord],
    syscall: Option<&SyscallCost>,
    attribution: Option<&[Attribution]>,
) -> Result<()> {
    let sides = if meta.scope == "both" { 2.0 } else { 1.0 };
    let groups = group(records, sides);
    let targets = targets(&groups, syscall, meta);
    #[derive(Serialize)]
    struct Summary<'a> {
        meta: &'a Meta,
        groups: &'a [Group],
        targets: &'a [TargetRow],
        syscall: Option<&'a SyscallCost>,
        attribution: Option<&'a [Attribution]>,
    }
    write_json(
        &out.join("summary.json"),
        &Summary {
            meta,
            groups: &groups,
            targets: &targets,
            syscall,
            attribution,
        },
    )?;
    let charts = draw_charts(out);
    let md = markdown(meta, &groups, &targets, syscall, attribution, &charts);
    std::fs::write(out.join("report.md"), md).context("writing report.md")?;
    print_screen(meta, &groups, &targets, out, &charts);
    Ok(())
}

/// Runs the chart script; returns the PNG file names it wrote (empty with a note on failure).
fn draw_charts(out: &Path) -> Vec<String> {
    let script = paths::clients_dir().join("bench_charts.py");
    let r = Command::new(paths::python())
        .arg(&script)
        .arg(out.join("summary.json"))
        .arg(out)
        .output();
    match r {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with(".png"))
            .map(String::from)
            .collect(),
        Ok(o) => {
            eprintln!(
                "[bench] charts failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("[bench] charts failed: {e}");
            Vec::new()
        }
    }
}

fn markdown(
    meta: &Meta,
    groups: &[Group],
    targets: &[TargetRow],
    syscall: Option<&SyscallCost>,
    attribution: Option<&[Attribution]>,
    charts: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# ebpf-receiver benchmark\n");
    let _ = writeln!(
        s,
        "`{}` — {}{}, {:.1} min.\n",
        meta.command,
        meta.commit,
        if meta.quick {
            " — **quick smoke run: one repetition, short runs; figures are indicative only**"
        } else {
            ""
        },
        meta.elapsed_min
    );
    let _ = writeln!(
        s,
        "Machine: Linux {}, {} × {}, {}. Tools: {}.\n",
        meta.kernel,
        meta.cpus,
        meta.cpu,
        meta.memory,
        meta.tools
            .iter()
            .map(|(k, v)| format!("{k} `{v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "- Every workload runs real software on loopback. Configurations run **interleaved** \
         (A B C … A B C …), {} repetition(s) of {:.0} s each; tables give the median and min–max.\n\
         - **Closed loop**: the tool's maximum throughput. **Open loop**: a fixed rate of {:.0} % of \
         the baseline's median maximum (measured in the same run); latency from the scheduled send \
         time (coordinated omission corrected: `loadgen` for HTTP/Redis, `pgbench -R`, sysbench \
         `--rate` with its queue time).\n\
         - Tracing scope: **{}**. `server`: `targets.pids` names the workload's server processes (and \
         the mixed workload's iperf3 client and server) and nothing else; pgbench's PostgreSQL forks a \
         backend per connection, which a pid list cannot name, so pgbench runs as `host`. `both`: the \
         load generator too. `host`: every process but the harness, the Collector and the load \
         generator (`targets.exclude_pids`), as deployed; spans of other processes then count in \
         completeness. The receiver runs with the shipped defaults otherwise, exporting to the stock Collector \
         (OTLP in, debug exporter at basic verbosity; spans counted by `otelcol_receiver_accepted_spans`).\n\
         - **Placement** `contended`: nothing pinned. `pinned`: the server's processes on the last CPU, \
         the load generator, receiver (or bpftrace/tshark) and Collector on the others (`taskset -a -p` \
         on every thread of each process tree; the held load generator `exec`s through `taskset -c`). \
         Pinned runs compare baseline and receiver only.\n\
         - CPU: `utime+stime` (plus reaped children) from `/proc/<pid>/stat` over each process tree: \
         the server (nginx, redis-server, mariadbd, the postmaster and its backends; iperf3 apart), the \
         load generator (read from its unreaped `/proc` entry), the configuration's processes from \
         the release of the load to the end of the receiver's drain, and the export peer: the \
         Collector, or for `receiver-sink` the accept-and-count sink (`receiver/examples/otlp_sink.rs`, \
         which decodes and discards; the Collector then idles). The kernel \
         probes' cost lands in the traced processes: their CPU per request above the baseline.\n\
         - Receiver memory: `VmHWM`; BPF map memory: `memlock` of the maps it holds \
         (`/proc/<pid>/fdinfo`, what `bpftool map show` prints). Events/bytes per request, ring \
         wakeups and drops: deltas of the receiver's metrics \
         (`ebpf_receiver_ring_wakeups_total` {}).\n\
         - Completeness: spans the export peer accepted ÷ requests the load generator completed{}.\n\
         - Empty programs: bpftrace with an empty action on each of the {} tracepoints \
         `ebpf-receiver check --list-tracepoints` prints. tshark: `-i lo -f 'tcp port P' -d \
         tcp.port==P,<proto> -Y <proto> -T fields` to /dev/null; its CPU includes dumpcap. \
         tshark {} a RESP (Redis) dissector (`tshark -G protocols`).\n",
        meta.reps,
        meta.duration_s,
        meta.open_fraction * 100.0,
        meta.scope,
        if groups.iter().any(|g| med(&g.wakeups_per_s).is_some()) {
            "present"
        } else {
            "absent from this receiver: column empty"
        },
        if meta.scope == "both" {
            " × 2 sides"
        } else {
            ""
        },
        meta.tracepoints,
        if meta.tshark_resp { "has" } else { "has no" },
    );
    if let Some(why) = &meta.no_inference_unavailable {
        let _ = writeln!(
            s,
            "- **`no-inference` unavailable**: `ebpf.kernel_inference: false` is not accepted by this \
             receiver ({why}); its rows say so.\n"
        );
    }
    let _ = writeln!(
        s,
        "- Mixed workload: redis (as `redis`) while `iperf3 -c -b {}` moves bulk TCP on loopback \
         (traced, no supported protocol).\n",
        meta.bulk_rate
    );

    let _ = writeln!(s, "## Targets (issue 7, contended placement)\n");
    let _ = writeln!(s, "| figure | target | measured | |\n|---|---|---|---|");
    for t in targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            t.figure,
            t.target,
            t.measured,
            met_str(t.met)
        );
    }
    let _ = writeln!(s);

    let mut workloads: Vec<&str> = Vec::new();
    for g in groups {
        if !workloads.contains(&g.workload.as_str()) {
            workloads.push(&g.workload);
        }
    }
    for w in workloads {
        let _ = writeln!(s, "## {w}\n");
        for (m, p) in [
            ("closed", "contended"),
            ("open", "contended"),
            ("closed", "pinned"),
            ("open", "pinned"),
        ] {
            let rows: Vec<&Group> = groups
                .iter()
                .filter(|g| g.workload == w && g.mode == m && g.placement == p)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let base = rows.iter().find(|g| g.config == Config::Baseline.name());
            if m == "closed" {
                let _ = writeln!(s, "### closed loop, {p}\n");
                let _ = writeln!(
                    s,
                    "| config | req/s | Δ | server µs/req | Δ | client µs/req | tool µs/req | cores per 10k req/s | export peer µs/req | events/req | bytes/req | wakeups/s | drops | completeness | VmHWM MiB | BPF maps MiB |\n\
                     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                );
            } else {
                let _ = writeln!(
                    s,
                    "### open loop at {:.0} ops/s, {p}\n",
                    rows.iter().find_map(|g| g.target_rate).unwrap_or(0.0)
                );
                let _ = writeln!(
                    s,
                    "| config | req/s | p50 µs | Δ | p99 µs | Δ | p99.9 µs | Δ | server µs/req | Δ | tool µs/req | bytes/req | drops | completeness | VmHWM MiB |\n\
                     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                );
            }
            for g in &rows {
                if g.runs == 0 {
                    let _ = writeln!(
                        s,
                        "| {} | unavailable: {} |",
                        g.config,
                        g.note.clone().unwrap_or_default().replace('|', "/")
                    );
                    continue;
                }
                // Changes against the baseline ("–" on the baseline's own row).
                let base = base.filter(|b| b.config != g.config);
                let d = |f: &dyn Fn(&Group) -> Option<f64>| -> Option<f64> {
                    let b = f(base?)?;
                    let v = f(g)?;
                    Some((v / b - 1.0) * 100.0)
                };
                let da =
                    |f: &dyn Fn(&Group) -> Option<f64>| -> Option<f64> { Some(f(g)? - f(base?)?) };
                let cores = med(&g.tool_us).map(|u| format!("{:.3}", u / 100.0));
                let drops = match (g.kernel_drops, g.tshark_dropped) {
                    (Some(k), _) => format!("{k:.0}"),
                    (None, Some(t)) => format!("{t} (capture)"),
                    _ => "–".into(),
                };
                if m == "closed" {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        g.config,
                        fmt_stat(&g.throughput, 0),
                        fmt_delta(d(&|g| med(&g.throughput)), " %"),
                        fmt_stat(&g.server_us, 2),
                        fmt_delta(d(&|g| med(&g.server_us)), " %"),
                        fmt_med(&g.client_us, 2),
                        fmt_stat(&g.tool_us, 2),
                        cores.unwrap_or_else(|| "–".into()),
                        fmt_med(&g.collector_us, 2),
                        fmt_med(&g.events_per_req, 2),
                        fmt_med(&g.bytes_per_req, 0),
                        fmt_med(&g.wakeups_per_s, 0),
                        drops,
                        g.completeness
                            .map(|c| format!("{:.4} ({:.4}–{:.4})", c.median, c.min, c.max))
                            .unwrap_or_else(|| "–".into()),
                        fmt_med(&g.hwm_mib, 1),
                        fmt_med(&g.bpf_maps_mib, 1),
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        g.config,
                        fmt_med(&g.throughput, 0),
                        fmt_stat(&g.p50_us, 0),
                        fmt_delta(da(&|g| med(&g.p50_us)), ""),
                        fmt_stat(&g.p99_us, 0),
                        fmt_delta(da(&|g| med(&g.p99_us)), ""),
                        fmt_stat(&g.p999_us, 0),
                        fmt_delta(da(&|g| med(&g.p999_us)), ""),
                        fmt_stat(&g.server_us, 2),
                        fmt_delta(d(&|g| med(&g.server_us)), " %"),
                        fmt_stat(&g.tool_us, 2),
                        fmt_med(&g.bytes_per_req, 0),
                        drops,
                        g.completeness
                            .map(|c| format!("{:.4}", c.median))
                            .unwrap_or_else(|| "–".into()),
                        fmt_med(&g.hwm_mib, 1),
                    );
                }
            }
            let bulk: Vec<String> = rows
                .iter()
                .filter_map(|g| {
                    Some(format!(
                        "{} {:.0} Mbit/s, iperf3 CPU {:.0} % of a core",
                        g.config,
                        g.bulk_mbit_s?.median,
                        med(&g.bulk_cpu_pct).unwrap_or(f64::NAN)
                    ))
                })
                .collect();
            if !bulk.is_empty() {
                let _ = writeln!(s, "\nBulk traffic (medians): {}.", bulk.join("; "));
            }
            if let Some(t) = rows
                .iter()
                .find(|g| g.config == Config::Tshark.name())
                .and_then(|g| med(&g.tshark_packets_per_req))
            {
                let _ = writeln!(s, "\ntshark: {t:.2} packets per request captured.");
            }
            let _ = writeln!(s);
        }
    }

    let _ = writeln!(
        s,
        "## Cost per syscall (`dd if=/dev/zero of=/dev/null bs=1 count=1000000`)\n"
    );
    match syscall {
        Some(c) => {
            let _ = writeln!(
                s,
                "dd's user+system CPU (from `wait4`), {} runs per configuration, interleaved round by round; added ns per syscall = (median − median of `none`) ÷ 2,000,000 syscalls.\n",
                c.rows.first().map_or(0, |r| r.cpu_ms.len())
            );
            let _ = writeln!(
                s,
                "| configuration | CPU ms median (min–max) | wall ms median | added ns/syscall (range) |\n|---|---|---|---|"
            );
            for r in &c.rows {
                let st = Stat::of(&r.cpu_ms);
                let range = c.added_range(&r.config);
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {} |",
                    r.config,
                    fmt_stat(&st, 0),
                    median(&r.wall_ms),
                    if r.config == syscalls::NONE {
                        "–".to_string()
                    } else {
                        format!(
                            "{:+.0} ({:+.0} … {:+.0})",
                            c.added_ns(&r.config).unwrap_or(f64::NAN),
                            range.map_or(f64::NAN, |r| r.0),
                            range.map_or(f64::NAN, |r| r.1)
                        )
                    }
                );
            }
            let _ = writeln!(s);
        }
        None => {
            let _ = writeln!(s, "Not run (`--no-syscall-cost`).\n");
        }
    }

    let _ = writeln!(
        s,
        "## Per-program cost (attribution run, `kernel.bpf_stats_enabled=1`)\n"
    );
    match attribution {
        Some(a) if !a.is_empty() => {
            let _ = writeln!(
                s,
                "One closed-loop run per workload with the receiver; bpf_stats adds about 2 × 20 ns per program run, so these runs are kept out of the figures above. `run_time_ns`/`run_cnt` deltas from the receiver's program fds.\n"
            );
            for at in a {
                let total: u64 = at.programs.iter().map(|p| p.total_ns).sum();
                let _ = writeln!(
                    s,
                    "**{}**: {} requests, {:.2} µs of kernel programs per request.\n",
                    at.workload,
                    at.requests,
                    total as f64 / at.requests.max(1) as f64 / 1e3
                );
                let _ = writeln!(
                    s,
                    "| program | runs per request | avg ns per run | ns per request |\n|---|---|---|---|"
                );
                for p in &at.programs {
                    let _ = writeln!(
                        s,
                        "| {} | {:.2} | {:.0} | {:.0} |",
                        p.name,
                        p.runs as f64 / at.requests.max(1) as f64,
                        p.total_ns as f64 / p.runs.max(1) as f64,
                        p.total_ns as f64 / at.requests.max(1) as f64
                    );
                }
                let _ = writeln!(s);
            }
        }
        _ => {
            let _ = writeln!(s, "Not run (`--no-attribution`).\n");
        }
    }

    let _ = writeln!(s, "## Charts\n");
    if charts.is_empty() {
        let _ = writeln!(
            s,
            "None drawn (matplotlib missing from the harness venv? see the console).\n"
        );
    }
    for c in charts {
        let _ = writeln!(s, "![{c}]({c})\n");
    }
    let _ = writeln!(
        s,
        "Files: `results.json` (every run), `summary.json` (these tables), `runs/<workload>-<mode>-<placement>-<config>-<rep>/` (command, tool output, receiver config and log)."
    );
    s
}

fn print_screen(
    meta: &Meta,
    groups: &[Group],
    targets: &[TargetRow],
    out: &Path,
    charts: &[String],
) {
    println!();
    println!(
        "== ebpf-receiver bench: {} rep(s) × {:.0} s, scope {}, {:.1} min{} ==",
        meta.reps,
        meta.duration_s,
        meta.scope,
        meta.elapsed_min,
        if meta.quick {
            " (QUICK: indicative only)"
        } else {
            ""
        }
    );
    println!(
        "{:<20} {:>10} {:>7} {:>9} {:>7} {:>9} {:>8} {:>7} {:>9}",
        "closed, contended",
        "base req/s",
        "Δ thr",
        "srv µs/rq",
        "Δ srv",
        "recv µs/rq",
        "B/req",
        "drops",
        "complete"
    );
    let mut seen = Vec::new();
    for g in groups
        .iter()
        .filter(|g| g.mode == "closed" && g.placement == "contended")
    {
        if seen.contains(&g.workload) {
            continue;
        }
        seen.push(g.workload.clone());
        let b = find(groups, &g.workload, "closed", "contended", Config::Baseline);
        let r = find(groups, &g.workload, "closed", "contended", Config::Receiver);
        let pct = |f: &dyn Fn(&Group) -> Option<f64>| -> String {
            match (b.and_then(f), r.and_then(f)) {
                (Some(x), Some(y)) if x > 0.0 => format!("{:+.1}%", (y / x - 1.0) * 100.0),
                _ => "–".into(),
            }
        };
        println!(
            "{:<20} {:>10} {:>7} {:>9} {:>7} {:>9} {:>8} {:>7} {:>9}",
            g.workload,
            b.map_or("–".into(), |b| fmt_med(&b.throughput, 0)),
            pct(&|g| med(&g.throughput)),
            b.map_or("–".into(), |b| fmt_med(&b.server_us, 2)),
            pct(&|g| med(&g.server_us)),
            r.map_or("–".into(), |r| fmt_med(&r.tool_us, 2)),
            r.map_or("–".into(), |r| fmt_med(&r.bytes_per_req, 0)),
            r.and_then(|r| r.kernel_drops)
                .map_or("–".into(), |d| format!("{d:.0}")),
            r.and_then(|r| med(&r.completeness))
                .map_or("–".into(), |c| format!("{:.2}%", c * 100.0)),
        );
    }
    println!();
    println!(
        "{:<48} {:<30} {:<56} met?",
        "target (issue 7)", "goal", "measured"
    );
    // One line per target on a wide terminal; report.md has the full texts.
    let cut = |s: &str, n: usize| {
        if s.chars().count() <= n {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        }
    };
    for t in targets {
        println!(
            "{:<48} {:<30} {:<56} {}",
            cut(&t.figure, 48),
            cut(&t.target, 30),
            cut(&t.measured, 56),
            met_str(t.met)
        );
    }
    if let Some(why) = &meta.no_inference_unavailable {
        println!("note: no-inference unavailable: {why}");
    }
    println!();
    println!("report: {}", out.join("report.md").display());
    if !charts.is_empty() {
        println!("charts: {}", charts.join(", "));
    }
}

/// Groups in a map keyed by workload (used by tests).
pub fn by_workload(groups: &[Group]) -> BTreeMap<String, Vec<&Group>> {
    let mut m: BTreeMap<String, Vec<&Group>> = BTreeMap::new();
    for g in groups {
        m.entry(g.workload.clone()).or_default().push(g);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(config: &str, rep: usize, thr: f64, server: f64, tool: Option<f64>) -> RunRecord {
        RunRecord {
            workload: "nginx".into(),
            mode: "closed".into(),
            placement: "contended".into(),
            config: config.into(),
            rep,
            requests: (thr * 5.0) as u64,
            ops: (thr * 5.0) as u64,
            duration_s: 5.0,
            throughput: thr,
            server_cpu_s: server,
            client_cpu_s: 0.5,
            tool_cpu_s: tool,
            collector_cpu_s: 0.1,
            window_s: 6.0,
            data_bytes: tool.map(|_| thr * 5.0 * 200.0),
            data_events: tool.map(|_| thr * 5.0 * 2.0),
            control_events: tool.map(|_| 0.0),
            kernel_drops: tool.map(|_| 0.0),
            spans_dropped: tool.map(|_| 0.0),
            collector_spans: tool.map(|_| thr * 5.0),
            receiver_hwm_kib: tool.map(|_| 20 * 1024),
            bpf_map_bytes: tool.map(|_| 10 << 20),
            ..RunRecord::default()
        }
    }

    #[test]
    fn groups_and_targets() {
        let mut v = Vec::new();
        for rep in 1..=3 {
            v.push(rec("baseline", rep, 10_000.0, 1.0, None));
            v.push(rec("receiver", rep, 9_800.0, 1.05, Some(0.1)));
        }
        let g = group(&v, 1.0);
        assert_eq!(g.len(), 2);
        let r = &g[1];
        assert_eq!(r.runs, 3);
        assert!((r.bytes_per_req.expect("bytes").median - 200.0).abs() < 1e-9);
        assert!((r.completeness.expect("c").median - 1.0).abs() < 1e-9);
        let meta = Meta {
            command: String::new(),
            kernel: String::new(),
            cpu: String::new(),
            cpus: 2,
            memory: String::new(),
            commit: String::new(),
            tools: vec![],
            reps: 3,
            duration_s: 5.0,
            open_fraction: 0.5,
            scope: "server".into(),
            bulk_rate: "1G".into(),
            quick: false,
            elapsed_min: 1.0,
            tracepoints: 37,
            no_inference_unavailable: Some("x".into()),
            tshark_resp: true,
            replay: None,
        };
        let t = targets(&g, None, &meta);
        let thr = &t[0];
        assert_eq!(thr.met, Some(true), "{thr:?}");
        assert!(thr.measured.starts_with("-2.0"));
        let md = markdown(&meta, &g, &t, None, None, &[]);
        assert!(md.contains("## nginx"));
        assert!(md.contains("| receiver |"));
        assert_eq!(by_workload(&g).len(), 1);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
