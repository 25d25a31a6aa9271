//! `cargo xtask run [--demo]`, `cargo xtask test`, `cargo xtask bench`, `cargo xtask fuzz`, `cargo xtask soak`: the
//! project's front door.
//! Each command first installs what is missing ([`integration::bootstrap`]).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use integration::collector::Collector;
use integration::process::{Output, ProcessGuard, is_root};
use integration::receiver::Receiver;
use integration::servers::mariadb::MariaDb;
use integration::{bench, bootstrap, paths};

#[derive(Parser)]
#[command(about = "ebpf-receiver tasks: run, test, bench, fuzz, soak")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build, then run the stock Collector (spans printed to the console) and the receiver
    /// tracing the whole host. Needs root. Ctrl-C stops everything.
    Run {
        /// Also start a local MariaDB (port 3307) and a small query loop.
        #[arg(long)]
        demo: bool,
        /// Receiver configuration.
        #[arg(long, default_value = "config/receiver.yaml")]
        config: PathBuf,
    },
    /// Unit tests, then every end-to-end test file `integration/tests/*_e2e.rs` (root), one
    /// after the other, each with `--test-threads=1`; a per-file summary at the end.
    Test {
        /// Only run e2e tests whose name contains this (in every file).
        #[arg(long)]
        filter: Option<String>,
        /// Only run e2e files whose name contains this (e.g. `mysql`, `harness`).
        #[arg(long)]
        file: Option<String>,
    },
    /// The benchmark: real servers and load generators on loopback, with and without the
    /// receiver, against the traditional pipeline, empty programs and tshark; closed and open
    /// loop; report and charts under target/bench/<run>/. Needs root.
    Bench(BenchArgs),
    /// Hostile bytes (issue 8, R2): the property test at full size (100k random + 100k mutated
    /// streams per parser), then every `cargo fuzz` target of receiver/fuzz for SECONDS each
    /// with its seed corpus; reports executions, exec/s, corpus and crashes. No root needed.
    Fuzz {
        /// Seconds per fuzz target.
        #[arg(default_value_t = 60)]
        seconds: u64,
        /// Only these targets, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// Random and mutated streams per parser in the property test (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        cases: u64,
    },
    /// The soak (issue 8, R13): mixed protocols with connection churn and a Collector restart
    /// for MINUTES (default 30); RSS, BPF map entries and the export queue must stay flat,
    /// every span arrive and every CONNS entry go away. Report and chart under
    /// target/soak/<run>/; exit non-zero when a promise fails. Needs root.
    Soak {
        /// Length of the run in minutes.
        #[arg(default_value_t = 30.0)]
        minutes: f64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 5.0)]
        sample_secs: f64,
        /// Report directory (default target/soak/<date-time>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Workloads to run (default: all): nginx, redis, redis-p16, mysql-point-select,
    /// mysql-read-write, pgbench, mixed. `replay [record] [gzip]` runs the replay benchmark
    /// instead (integration/src/replay.rs: recorded ring streams, no kernel).
    workloads: Vec<String>,
    /// Smoke run: one repetition of 2 s, contended placement only.
    #[arg(long)]
    quick: bool,
    /// Repetitions of each configuration (interleaved), default 5 (1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds per run, default 3 (2 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Configurations, comma-separated: baseline, receiver, receiver-sink, no-inference,
    /// empty-programs, tshark.
    #[arg(long, value_delimiter = ',')]
    configs: Vec<String>,
    /// Modes, comma-separated: closed, open.
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    /// Placements, comma-separated: contended, pinned. Default: contended for every workload,
    /// pinned too for nginx and redis (contended only with --quick); given explicitly, every
    /// selected workload runs in each.
    #[arg(long, value_delimiter = ',')]
    placements: Vec<String>,
    /// Also run tshark in the open-loop mode.
    #[arg(long)]
    open_tshark: bool,
    /// Open-loop rate as a fraction of the baseline's median maximum.
    #[arg(long, default_value_t = 0.5)]
    open_fraction: f64,
    /// Trace the load generator too (default: the server side only).
    #[arg(long, conflicts_with = "trace_host")]
    trace_both: bool,
    /// Trace every process but the harness, the Collector and the load generator (as deployed;
    /// default: only the workload's server processes).
    #[arg(long)]
    trace_host: bool,
    /// iperf3 bitrate of the mixed workload's bulk traffic.
    #[arg(long, default_value = "1G")]
    bulk_rate: String,
    /// Skip the dd per-syscall cost.
    #[arg(long)]
    no_syscall_cost: bool,
    /// Skip the replay benchmark (recorded ring streams, no kernel).
    #[arg(long)]
    no_replay: bool,
    /// Skip the bpf_stats attribution run.
    #[arg(long)]
    no_attribution: bool,
    /// Report directory (default target/bench/<date-time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

const ROOT_HINT: &str = "the receiver loads eBPF programs (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, \
CAP_SYS_RESOURCE); run as root, e.g. `sudo -E cargo xtask ...`";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { demo, config } => run(demo, &config),
        Cmd::Test { filter, file } => test(filter.as_deref(), file.as_deref()),
        Cmd::Bench(args) if args.workloads.first().is_some_and(|w| w == "replay") => {
            integration::replay::run(&args.workloads[1..])
        }
        Cmd::Bench(args) => bench(&args),
        Cmd::Fuzz {
            seconds,
            targets,
            cases,
        } => integration::fuzz::run(&integration::fuzz::Options {
            seconds,
            targets,
            cases,
        }),
        Cmd::Soak {
            minutes,
            sample_secs,
            out,
        } => soak(minutes, sample_secs, out),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(paths::workspace_root());
    c
}

fn status(mut cmd: Command) -> Result<bool> {
    println!("[xtask] {}", render(&cmd));
    Ok(cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?
        .success())
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `cargo build --release -p ebpf-receiver` (build.rs compiles the eBPF programs).
fn build_receiver() -> Result<PathBuf> {
    build_release(&["-p", "ebpf-receiver"], "release/ebpf-receiver")
}

// ---------------------------------------------------------------------------------------------
// test

fn test(filter: Option<&str>, file: Option<&str>) -> Result<ExitCode> {
    bootstrap::all()?;
    println!("[xtask] unit tests");
    let mut unit = cargo();
    unit.args(["test", "--workspace"]);
    let unit_ok = status(unit)?;
    if !unit_ok {
        // cargo's own summary above is the last word.
        return Ok(ExitCode::FAILURE);
    }
    if !is_root() {
        if std::env::var("EBPF_RECEIVER_SKIP_ROOT_TESTS").is_ok_and(|v| v == "1") {
            println!(
                "[xtask] integration tests SKIPPED explicitly (EBPF_RECEIVER_SKIP_ROOT_TESTS=1; they need root)"
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "[xtask] integration tests need root: run as root or set EBPF_RECEIVER_SKIP_ROOT_TESTS=1 to skip them explicitly"
        );
        return Ok(ExitCode::FAILURE);
    }
    let files = e2e_files()?;
    let files: Vec<E2eFile> = match file {
        Some(f) => files.into_iter().filter(|e| e.stem.contains(f)).collect(),
        None => files,
    };
    if files.is_empty() {
        bail!(
            "no e2e test file matches: expected integration/tests/*_e2e.rs{}",
            file.map(|f| format!(" containing `{f}`"))
                .unwrap_or_default()
        );
    }
    println!(
        "[xtask] integration tests (real servers, real clients, the stock Collector, the receiver): {}",
        files
            .iter()
            .map(|f| f.stem.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let bin = build_receiver()?;
    let started = Instant::now();
    let mut results = Vec::new();
    for f in &files {
        let t0 = Instant::now();
        let mut e2e = cargo();
        e2e.args([
            "test",
            "-p",
            "integration",
            "--features",
            "e2e",
            "--test",
            &f.stem,
            "--",
        ])
        .args(["--test-threads=1", "--nocapture"])
        .env("EBPF_RECEIVER_BIN", &bin)
        .env("OTELCOL_BIN", paths::collector_bin())
        .env("E2E_PYTHON", paths::python());
        // A failed check is an `anyhow` error: without its backtrace its message is the last
        // thing before `FAILED`, where a CI log excerpt shows it. Panics keep theirs.
        if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
            e2e.env("RUST_LIB_BACKTRACE", "0");
        }
        if let Some(flt) = filter {
            e2e.arg(flt);
        }
        let ok = status(e2e)?;
        results.push((f.stem.clone(), ok, t0.elapsed()));
    }
    println!();
    println!("[xtask] end-to-end summary:");
    for (stem, ok, took) in &results {
        println!(
            "[xtask]   {:<4} {stem:<24} {:>7.1} s",
            if *ok { "ok" } else { "FAIL" },
            took.as_secs_f64()
        );
    }
    println!(
        "[xtask]   e2e total {:.1} s{}",
        started.elapsed().as_secs_f64(),
        filter
            .map(|f| format!(" (test filter `{f}`)"))
            .unwrap_or_default()
    );
    Ok(if results.iter().all(|(_, ok, _)| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// An end-to-end test file `integration/tests/<stem>.rs` (`<stem>` ends in `_e2e`).
struct E2eFile {
    stem: String,
}

/// Every `integration/tests/*_e2e.rs`, sorted. Each must be declared in `integration/Cargo.toml`
/// as a `[[test]]` with `required-features = ["e2e"]`, so a plain `cargo test --workspace` (no
/// root) never builds or runs it; a file that is not is an error naming the fix.
fn e2e_files() -> Result<Vec<E2eFile>> {
    let dir = paths::workspace_root().join("integration/tests");
    let manifest_path = paths::workspace_root().join("integration/Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read `{}`", manifest_path.display()))?;
    let gated = gated_tests(&manifest);
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list `{}`", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        if !stem.ends_with("_e2e") {
            continue;
        }
        if !gated
            .iter()
            .any(|(n, p)| n == stem && p == &format!("tests/{name}"))
        {
            missing.push(format!(
                "[[test]]\nname = \"{stem}\"\npath = \"tests/{name}\"\nrequired-features = [\"e2e\"]"
            ));
        }
        out.push(E2eFile {
            stem: stem.to_string(),
        });
    }
    if !missing.is_empty() {
        bail!(
            "e2e test files not declared with `required-features = [\"e2e\"]` in integration/Cargo.toml \
             (without it `cargo test --workspace` would run them without root); add:\n\n{}",
            missing.join("\n\n")
        );
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    Ok(out)
}

/// `(name, path)` of the `[[test]]` sections of a Cargo manifest that require the `e2e` feature
/// (a line scan; the manifest is ours and simple).
fn gated_tests(manifest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for section in manifest.split("[[test]]").skip(1) {
        let section = section.split("\n[").next().unwrap_or("");
        let value = |key: &str| {
            section.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let unquote = |v: String| v.trim_matches('"').to_string();
        let (Some(name), Some(path), Some(features)) =
            (value("name"), value("path"), value("required-features"))
        else {
            continue;
        };
        if features.contains("\"e2e\"") {
            out.push((unquote(name), unquote(path)));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// bench

fn bench_options(a: &BenchArgs) -> Result<bench::Options> {
    let mut o = bench::Options::defaults(a.quick);
    if !a.workloads.is_empty() {
        o.workloads = a
            .workloads
            .iter()
            .map(|w| {
                bench::workloads::Workload::parse(w).with_context(|| {
                    format!(
                        "unknown workload `{w}` ({})",
                        bench::workloads::Workload::ALL
                            .iter()
                            .map(|w| w.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?;
    }
    if let Some(r) = a.reps {
        o.reps = r.max(1);
    }
    if let Some(d) = a.duration {
        if d.is_nan() || d < 1.0 {
            bail!("--duration must be at least 1 s");
        }
        o.duration = Duration::from_secs_f64(d);
    }
    if !a.configs.is_empty() {
        o.configs = a
            .configs
            .iter()
            .map(|c| {
                bench::configs::Config::parse(c)
                    .with_context(|| format!("unknown configuration `{c}`"))
            })
            .collect::<Result<_>>()?;
        if !o.configs.contains(&bench::configs::Config::Baseline) {
            o.configs.insert(0, bench::configs::Config::Baseline);
        }
        // Named explicitly: the open loop runs them too (tshark only with --open-tshark).
        o.open_configs = o
            .configs
            .iter()
            .copied()
            .filter(|c| *c != bench::configs::Config::Tshark)
            .collect();
    }
    if a.open_tshark {
        o.open_configs.push(bench::configs::Config::Tshark);
    }
    if !a.modes.is_empty() {
        o.modes = a
            .modes
            .iter()
            .map(|m| match m.as_str() {
                "closed" => Ok(bench::Mode::Closed),
                "open" => Ok(bench::Mode::Open),
                other => bail!("unknown mode `{other}` (closed, open)"),
            })
            .collect::<Result<_>>()?;
    }
    if !a.placements.is_empty() {
        o.placements = a
            .placements
            .iter()
            .map(|p| match p.as_str() {
                "contended" => Ok(bench::Placement::Contended),
                "pinned" => Ok(bench::Placement::Pinned),
                other => bail!("unknown placement `{other}` (contended, pinned)"),
            })
            .collect::<Result<_>>()?;
        // Asked for explicitly: every selected workload runs in every placement.
        o.pinned_workloads = o.workloads.clone();
    }
    if a.open_fraction.is_nan() || a.open_fraction <= 0.0 || a.open_fraction > 1.0 {
        bail!("--open-fraction must be in (0, 1]");
    }
    o.open_fraction = a.open_fraction;
    if a.trace_both {
        o.scope = bench::Scope::Both;
    }
    if a.trace_host {
        o.scope = bench::Scope::Host;
    }
    o.bulk_rate = a.bulk_rate.clone();
    o.syscall_cost = !a.no_syscall_cost;
    o.replay = !a.no_replay;
    o.attribution = !a.no_attribution;
    o.out_dir = a.out.clone();
    Ok(o)
}

/// `cargo build --release -p integration --bin loadgen`; its path.
fn build_loadgen() -> Result<PathBuf> {
    build_release(
        &["-p", "integration", "--bin", "loadgen"],
        "release/loadgen",
    )
}

/// The accept-and-count OTLP sink of the `receiver-sink` configuration.
fn build_sink() -> Result<PathBuf> {
    build_release(
        &["-p", "ebpf-receiver", "--example", "otlp_sink"],
        "release/examples/otlp_sink",
    )
}

/// `cargo build --release ARGS`; returns `target/OUTPUT`, which must exist afterwards.
fn build_release(args: &[&str], output: &str) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--release"]).args(args);
    if !status(c)? {
        bail!("`cargo build --release {}` failed", args.join(" "));
    }
    let bin = paths::target_dir().join(output);
    if !bin.exists() {
        bail!("`{}` missing after the build", bin.display());
    }
    Ok(bin)
}

fn soak(minutes: f64, sample_secs: f64, out: Option<PathBuf>) -> Result<ExitCode> {
    if !(minutes.is_finite() && minutes > 0.0) {
        bail!("MINUTES must be a positive number");
    }
    if !is_root() {
        bail!("`cargo xtask soak` needs root: {ROOT_HINT}");
    }
    bootstrap::all()?;
    let bin = build_receiver()?;
    let loadgen = build_loadgen()?;
    // SAFETY: single-threaded at this point; the harness reads it when it starts the receiver.
    unsafe { std::env::set_var("EBPF_RECEIVER_BIN", &bin) };
    let passed = integration::soak::run(&integration::soak::Options {
        minutes,
        sample_secs,
        out_dir: out,
        loadgen,
    })?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench(args: &BenchArgs) -> Result<ExitCode> {
    let opts = bench_options(args)?;
    if !is_root() {
        bail!("`cargo xtask bench` needs root: {ROOT_HINT}");
    }
    bootstrap::all()?;
    bootstrap::apt_packages(bootstrap::BENCH_APT_PACKAGES)?;
    let bin = build_receiver()?;
    // The fixed-rate load generator, next to this xtask binary.
    build_loadgen()?;
    let sink = if opts.configs.contains(&bench::configs::Config::ReceiverSink) {
        Some(build_sink()?)
    } else {
        None
    };
    // SAFETY: single-threaded at this point; the harness reads these variables later.
    unsafe {
        std::env::set_var("EBPF_RECEIVER_BIN", &bin);
        std::env::set_var(
            "BENCH_LOADGEN_BIN",
            paths::target_dir().join("release/loadgen"),
        );
        if let Some(sink) = &sink {
            std::env::set_var("BENCH_SINK_BIN", sink);
        }
    }
    let out = bench::run(&opts, &bin)?;
    println!("[bench] done: {}", out.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// run

/// The signal that asked us to stop (0 = none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn stop_requested() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

/// `telemetry.metrics_address` from the receiver config (a plain scan; the receiver validates
/// the file itself), default 127.0.0.1:9464.
fn metrics_address(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("metrics_address:"))
        .map(|v| {
            v.split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .to_string()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "127.0.0.1:9464".to_string())
}

const DEMO_PORT: u16 = 3307;
const SIDECAR_OTLP_PORT: u16 = 4317;

fn run(demo: bool, config: &Path) -> Result<ExitCode> {
    if !is_root() {
        bail!("`cargo xtask run` needs root: {ROOT_HINT}");
    }
    let config = if config.is_absolute() {
        config.to_path_buf()
    } else {
        paths::workspace_root().join(config)
    };
    if !config.exists() {
        bail!("receiver config `{}` not found", config.display());
    }
    bootstrap::all()?;
    let bin = build_receiver()?;
    install_signal_handlers();

    if std::net::TcpStream::connect(("127.0.0.1", SIDECAR_OTLP_PORT)).is_ok() {
        bail!(
            "127.0.0.1:{SIDECAR_OTLP_PORT} is already in use: stop the other Collector (or receiver) first"
        );
    }
    println!(
        "[xtask] starting the stock Collector with otel-collector-config/sidecar.yaml (debug exporter → this console)"
    );
    let mut collector = Collector::start_with_config(
        &paths::collector_config_dir().join("sidecar.yaml"),
        SIDECAR_OTLP_PORT,
        Output::Inherit,
    )?;

    // Declared before the receiver so they drop after it (the receiver flushes first).
    let mut demo_procs: Option<(MariaDb, ProcessGuard)> = None;
    if demo {
        let dir = paths::target_dir().join("demo");
        std::fs::create_dir_all(&dir)?;
        println!(
            "[xtask] demo: starting MariaDB on 127.0.0.1:{DEMO_PORT} (datadir {})",
            dir.join("data").display()
        );
        let db = MariaDb::start(&dir, DEMO_PORT, Output::File(dir.join("mariadbd.log")))?;
        let mut loop_cmd = Command::new(paths::python());
        loop_cmd
            .arg(paths::clients_dir().join("demo_loop.py"))
            .arg("--port")
            .arg(DEMO_PORT.to_string());
        let looper = ProcessGuard::spawn("demo query loop", loop_cmd, Output::Inherit)?;
        demo_procs = Some((db, looper));
    }

    println!(
        "[xtask] starting {} --config {}",
        bin.display(),
        config.display()
    );
    let metrics = metrics_address(&config);
    let metrics_port: u16 = metrics
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9464);
    let mut receiver = Receiver::start_with_config(&config, metrics_port, Output::Inherit)?;
    println!();
    println!("[xtask] running. Spans appear on this console (Collector debug exporter).");
    println!("[xtask]   receiver self-metrics: http://{metrics}/metrics   (/healthz, /readyz)");
    println!("[xtask]   Collector metrics:     http://127.0.0.1:8888/metrics");
    if demo {
        println!(
            "[xtask]   demo MariaDB: mariadb --protocol=tcp -h 127.0.0.1 -P {DEMO_PORT} -ue2e -pe2e e2e"
        );
    } else {
        println!("[xtask]   any MySQL/MariaDB traffic on this host becomes spans (try --demo)");
    }
    println!("[xtask] Ctrl-C stops everything.");

    let mut code = ExitCode::SUCCESS;
    while !stop_requested() {
        std::thread::sleep(Duration::from_millis(200));
        if let Err(e) = receiver.ensure_running() {
            eprintln!("[xtask] {e:#}");
            code = ExitCode::FAILURE;
            break;
        }
        if let Err(e) = collector.guard_mut().ensure_running() {
            eprintln!("[xtask] {e:#}");
            code = ExitCode::FAILURE;
            break;
        }
    }
    let sig = STOP_SIGNAL.load(Ordering::SeqCst);
    println!(
        "[xtask] stopping{}: receiver, demo, Collector",
        if sig != 0 {
            format!(" (signal {sig})")
        } else {
            String::new()
        }
    );
    receiver.stop();
    drop(demo_procs);
    drop(collector);
    println!("[xtask] stopped");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gated_tests_are_read_from_the_manifest() {
        let m = "[package]\nname = \"integration\"\n\n[features]\ne2e = []\n\n\
                 [[test]]\nname = \"mysql_e2e\"\npath = \"tests/mysql_e2e.rs\"\nrequired-features = [\"e2e\"]\n\n\
                 [[test]]\nname = \"plain\"\npath = \"tests/plain.rs\"\n\n\
                 [lints]\nworkspace = true\n";
        assert_eq!(
            gated_tests(m),
            [("mysql_e2e".to_string(), "tests/mysql_e2e.rs".to_string())]
        );
    }

    #[test]
    fn every_e2e_file_here_is_gated() {
        let files = e2e_files().expect("every e2e file declared with required-features");
        assert!(files.iter().any(|f| f.stem == "mysql_e2e"));
    }
}
