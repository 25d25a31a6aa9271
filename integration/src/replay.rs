//! `cargo xtask bench replay [record] [gzip]`: the replay benchmark (`receiver/benches/replay.rs`).
//!
//! - `cargo xtask bench replay`: builds the bench with the `profiling` profile (release code with
//!   symbols), runs it over `receiver/testdata/replay/*.rec` (ns per event and per span, spans/s
//!   per core, allocations per span), then, when valgrind is installed, once more per recording
//!   under `valgrind --tool=callgrind` and prints instructions per span (stable on a shared VM).
//! - `gzip`: also compress each request as `exporter.compression: gzip` would.
//! - `record` (root): records the recordings anew from the real workloads, each with the real
//!   server and load tool, the whole host traced (both ends), capped at 1 MiB each.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};

use crate::paths;

/// Where the recordings live.
pub fn recordings_dir() -> PathBuf {
    paths::workspace_root().join("receiver/testdata/replay")
}

/// Runs the subcommand; `words` are the words after `replay`.
pub fn run(words: &[String]) -> Result<ExitCode> {
    let has = |w: &str| words.iter().any(|x| x == w);
    if let Some(w) = words
        .iter()
        .find(|w| !["record", "gzip"].contains(&w.as_str()))
    {
        bail!("unknown word `{w}` after `bench replay` (known: record, gzip)");
    }
    if has("record") {
        record()?;
    }
    measure(has("gzip"))?;
    Ok(ExitCode::SUCCESS)
}

/// The replay benchmark's totals over every recording.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub ns_per_span: f64,
    pub spans_per_s_per_core: f64,
    pub allocs_per_span: f64,
    /// Callgrind instructions per span inside the measured pass (None without valgrind).
    pub instructions_per_span: Option<f64>,
}

/// Builds and runs the replay bench over every recording (printing its lines), then callgrind
/// when valgrind is installed; returns the totals.
pub fn measure(gzip: bool) -> Result<Summary> {
    let bin = build_bench()?;
    let mut args: Vec<String> = Vec::new();
    if gzip {
        args.push("--gzip".into());
    }
    println!("[replay] {} {}", bin.display(), args.join(" "));
    let out = Command::new(&bin)
        .args(&args)
        .output()
        .context("running the replay bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() {
        bail!(
            "the replay bench failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let total = stdout
        .lines()
        .find(|l| l.starts_with("[replay] total"))
        .context("the replay bench printed no total line")?;
    let num = |key: &str| {
        total
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no `{key}` in `{total}`"))
    };
    let mut summary = Summary {
        ns_per_span: num("ns_per_span=")?,
        spans_per_s_per_core: num("spans_per_s_per_core=")?,
        allocs_per_span: num("allocs_per_span=")?,
        instructions_per_span: None,
    };
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("[replay] valgrind not installed: no instruction counts");
        return Ok(summary);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(recordings_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rec"))
        .collect();
    files.sort();
    let (mut ir_total, mut spans_total) = (0u64, 0u64);
    for f in &files {
        let (ir, spans) = callgrind(&bin, f, &args)?;
        let name = f.file_stem().unwrap_or_default().to_string_lossy();
        println!(
            "[callgrind] {name:<14} instructions={ir} spans={spans} instructions_per_span={:.0}",
            ir as f64 / spans.max(1) as f64
        );
        ir_total += ir;
        spans_total += spans;
    }
    let per_span = ir_total as f64 / spans_total.max(1) as f64;
    println!(
        "[callgrind] {:<14} instructions={ir_total} spans={spans_total} instructions_per_span={per_span:.0}",
        "total"
    );
    summary.instructions_per_span = Some(per_span);
    Ok(summary)
}

/// `cargo bench --profile profiling --bench replay --no-run`; returns the executable.
fn build_bench() -> Result<PathBuf> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(paths::workspace_root())
        // The bench never loads probes: skip building them.
        .env("EBPF_RECEIVER_SKIP_PROBES", "1")
        .args([
            "bench",
            "--profile",
            "profiling",
            "-p",
            "ebpf-receiver",
            "--bench",
            "replay",
            "--no-run",
        ])
        .output()
        .context("running cargo")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("building the replay bench failed:\n{err}");
    }
    // "  Executable benches/replay.rs (target/profiling/deps/replay-…)"
    let exe = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Executable "))
        .filter_map(|l| l.rsplit_once('(').map(|(_, p)| p.trim_end_matches(')')))
        .next()
        .context("cargo printed no bench executable")?;
    let p = PathBuf::from(exe);
    Ok(if p.is_absolute() {
        p
    } else {
        paths::workspace_root().join(p)
    })
}

/// Instructions executed inside the measured pass, and the spans it produced.
fn callgrind(bin: &Path, file: &Path, extra: &[String]) -> Result<(u64, u64)> {
    let dir = paths::target_dir().join("bench/replay");
    std::fs::create_dir_all(&dir)?;
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let out_file = dir.join(format!("callgrind.{stem}.out"));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--toggle-collect=*measured_pass*")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(bin)
        .arg(file)
        .arg("--callgrind")
        .args(extra)
        .output()
        .context("running valgrind")?;
    if !out.status.success() {
        bail!(
            "valgrind failed on {}:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let spans = stdout
        .lines()
        .find(|l| l.starts_with("[replay] total"))
        .and_then(|l| field(l, "spans="))
        .context("no spans in the bench output")?;
    let text = std::fs::read_to_string(&out_file)?;
    let ir = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no instruction total in the callgrind output")?;
    Ok((ir, spans))
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

/// Records every workload anew into [`recordings_dir`].
fn record() -> Result<()> {
    use crate::process::is_root;
    if !is_root() {
        bail!("recording needs root (the receiver loads eBPF programs)");
    }
    crate::bootstrap::all()?;
    let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(paths::workspace_root())
        .args(["build", "--release", "-p", "ebpf-receiver"])
        .status()?;
    if !st.success() {
        bail!("building ebpf-receiver failed");
    }
    let dir = recordings_dir();
    std::fs::create_dir_all(&dir)?;
    for w in workloads::ALL {
        let path = dir.join(format!("{}.rec", w.name));
        println!("[replay] recording {} → {}", w.name, path.display());
        (w.run)(&path).with_context(|| format!("recording `{}`", w.name))?;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!("[replay] {}: {len} bytes", w.name);
    }
    Ok(())
}

mod workloads {
    use std::path::Path;
    use std::time::Duration;

    use anyhow::Result;

    use crate::clients;
    use crate::servers::dnsmasq::Dnsmasq;
    use crate::servers::mariadb::MariaDb;
    use crate::servers::nginx::Nginx;
    use crate::servers::postgres::Postgres;
    use crate::servers::redis::Redis;
    use crate::world::{Checks, World};

    pub struct Workload {
        pub name: &'static str,
        pub run: fn(&Path) -> Result<()>,
    }

    pub const ALL: &[Workload] = &[
        Workload {
            name: "mysql_cli",
            run: mysql_cli,
        },
        Workload {
            name: "redis_bench",
            run: redis_bench,
        },
        Workload {
            name: "redis_pipeline",
            run: redis_pipeline,
        },
        Workload {
            name: "http_wrk",
            run: http_wrk,
        },
        Workload {
            name: "pgbench",
            run: pgbench,
        },
        Workload {
            name: "dns_udp",
            run: dns_udp,
        },
    ];

    /// The receiver records while `load` runs; its recording stops at 1 MiB.
    fn with_recording<S: crate::servers::Server>(
        w: &mut World<S>,
        out: &Path,
        load: impl FnOnce(&World<S>) -> Result<()>,
    ) -> Result<()> {
        // SAFETY: xtask is single-threaded here; the variable only reaches the receiver child.
        unsafe { std::env::set_var("EBPF_RECEIVER_RECORD_EVENTS", out) };
        let started = w.start_receiver();
        // SAFETY: as above.
        unsafe { std::env::remove_var("EBPF_RECEIVER_RECORD_EVENTS") };
        started?;
        load(w)?;
        // Let the last spans through a drain, then SIGTERM flushes the recording.
        std::thread::sleep(Duration::from_millis(300));
        w.stop_receiver();
        Ok(())
    }

    fn mysql_cli(out: &Path) -> Result<()> {
        let port = crate::process::free_port()?;
        let mut w = World::start("record_mysql", |d| {
            MariaDb::start(d, port, crate::process::Output::File(d.join("mariadb.log")))
        })?;
        with_recording(&mut w, out, |w| {
            crate::load::run_load_cli(&w.dir, "cli", &w.server, 3000).map(|_| ())
        })?;
        w.done(Checks::default())
    }

    fn redis_bench(out: &Path) -> Result<()> {
        let mut w = World::start("record_redis", Redis::start)?;
        with_recording(&mut w, out, |w| {
            let opts = clients::redis::BenchOptions {
                tests: "set,get".into(),
                requests: 4000,
                clients: 4,
                pipeline: 1,
            };
            clients::redis::benchmark(&w.dir, "bench", &w.server, &opts).map(|_| ())
        })?;
        w.done(Checks::default())
    }

    fn redis_pipeline(out: &Path) -> Result<()> {
        let mut w = World::start("record_redis_p16", Redis::start)?;
        with_recording(&mut w, out, |w| {
            let opts = clients::redis::BenchOptions {
                tests: "set,get".into(),
                requests: 8000,
                clients: 4,
                pipeline: 16,
            };
            clients::redis::benchmark(&w.dir, "bench", &w.server, &opts).map(|_| ())
        })?;
        w.done(Checks::default())
    }

    fn http_wrk(out: &Path) -> Result<()> {
        let mut w = World::start("record_http", Nginx::start)?;
        with_recording(&mut w, out, |w| {
            let opts = clients::http::WrkOptions {
                threads: 1,
                connections: 4,
                duration: Duration::from_secs(10),
                max_requests_per_thread: Some(3000),
                ..Default::default()
            };
            clients::http::wrk(
                &w.dir,
                "wrk",
                &w.server.url(crate::servers::nginx::SMALL.path),
                &opts,
            )
            .map(|_| ())
        })?;
        w.done(Checks::default())
    }

    fn pgbench(out: &Path) -> Result<()> {
        let mut w = World::start("record_pg", |d| Postgres::start(&d.join("pg")))?;
        clients::postgres::pgbench_init(&w.server, 1)?;
        with_recording(&mut w, out, |w| {
            let opts = clients::postgres::PgbenchOptions {
                builtin: "select-only".into(),
                transactions: 1000,
                clients: 4,
                ..Default::default()
            };
            clients::postgres::pgbench(&w.dir, "pgbench", &w.server, &opts).map(|_| ())
        })?;
        w.done(Checks::default())
    }

    fn dns_udp(out: &Path) -> Result<()> {
        let opts = crate::servers::dnsmasq::DnsOptions {
            extra_args: vec!["--address=/load.replay.test/192.0.2.7".into()],
            ..Default::default()
        };
        let mut w = World::start("record_dns", |d| Dnsmasq::start_with(d, &opts))?;
        with_recording(&mut w, out, |w| {
            clients::dns::udp_load(&w.dir, "dns", &w.server, "load.replay.test", 3000, 16)
                .map(|_| ())
        })?;
        w.done(Checks::default())
    }
}
