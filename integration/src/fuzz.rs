//! `cargo xtask fuzz [SECONDS]`: the hostile-bytes run (issue 8, R2).
//!
//! 1. Installs what it needs, idempotently: the pinned nightly ([`bootstrap::NIGHTLY`]) and
//!    `cargo-fuzz` ([`CARGO_FUZZ_VERSION`]).
//! 2. Runs the property test at its full size (`receiver/tests/hostile_bytes.rs` with
//!    `HOSTILE_CASES`, default 100,000 random and 100,000 mutated streams per parser, release
//!    build) and prints its figures.
//! 3. Builds every fuzz target of `receiver/fuzz` and runs each for SECONDS (default 60) with
//!    `-rss_limit_mb=256 -timeout=1`, a working corpus under `target/fuzz/corpus/<target>`
//!    (grown run after run) and the committed seeds (`receiver/fuzz/seeds/<target>`, the crash
//!    classes of peer agents) as a read-only second corpus, printing progress every 10 s.
//! 4. Reports per target: executions, exec/s, corpus size, peak RSS and crashes (the artifact
//!    path of each: crash, OOM, timeout or leak inputs land in `target/fuzz/artifacts/<target>/`);
//!    writes the table to `target/fuzz/report.md`; exits non-zero on any crash or failure.
//!
//! A crash input becomes a regression test by copying it into `receiver/fuzz/seeds/<target>/`
//! (`hostile_bytes.rs` replays every file there through its target's driver).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{bootstrap, paths};

/// The cargo-fuzz release installed (`cargo install cargo-fuzz --version … --locked`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Per-target memory limit and per-input time limit handed to libFuzzer.
pub const RSS_LIMIT_MB: u32 = 256;
pub const TIMEOUT_S: u32 = 1;

/// What `cargo xtask fuzz` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds per fuzz target.
    pub seconds: u64,
    /// Only these targets (all when empty).
    pub targets: Vec<String>,
    /// Random and mutated streams per parser in the property test; 0 skips it.
    pub cases: u64,
}

/// One fuzz target's figures.
#[derive(Clone, Debug, Default)]
pub struct TargetReport {
    pub name: String,
    pub executions: u64,
    pub exec_per_s: u64,
    pub corpus: usize,
    pub new_units: u64,
    pub peak_rss_mb: u64,
    pub seconds: f64,
    /// Crash, OOM, timeout and leak inputs written by this run.
    pub crashes: Vec<PathBuf>,
    /// libFuzzer's exit status when it was not 0.
    pub failed: Option<String>,
}

fn say(msg: &str) {
    println!("[fuzz] {msg}");
    let _ = std::io::stdout().flush();
}

fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{}", bootstrap::NIGHTLY));
    c
}

/// `cargo-fuzz` for the pinned nightly, installed once.
pub fn cargo_fuzz() -> Result<()> {
    let have = nightly_cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        println!("[bootstrap] cargo-fuzz: ok (cached)");
        return Ok(());
    }
    println!(
        "[bootstrap] cargo-fuzz {CARGO_FUZZ_VERSION}: installing… (cargo install, a few minutes)"
    );
    let status = nightly_cargo()
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ])
        .status()
        .context("cannot run cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    paths::workspace_root().join("receiver/fuzz")
}

/// Work space of the runs: `target/fuzz/{build,corpus,artifacts,logs}`.
fn work_dir() -> PathBuf {
    paths::target_dir().join("fuzz")
}

/// The `[[bin]]` names of `receiver/fuzz/Cargo.toml`, in file order.
pub fn targets() -> Result<Vec<String>> {
    let manifest = fuzz_dir().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read `{}`", manifest.display()))?;
    Ok(bin_names(&text))
}

fn bin_names(manifest: &str) -> Vec<String> {
    manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|section| {
            section.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .collect()
}

/// `cargo xtask fuzz`.
pub fn run(opts: &Options) -> Result<ExitCode> {
    let started = Instant::now();
    bootstrap::nightly()?;
    cargo_fuzz()?;
    let all = targets()?;
    let chosen: Vec<String> = if opts.targets.is_empty() {
        all.clone()
    } else {
        for t in &opts.targets {
            if !all.contains(t) {
                bail!("unknown fuzz target `{t}` ({})", all.join(", "));
            }
        }
        opts.targets.clone()
    };
    let mut ok = true;
    let props = if opts.cases > 0 {
        let r = property_test(opts.cases)?;
        ok &= r.0;
        Some(r)
    } else {
        say("property test skipped (--cases 0)");
        None
    };

    say(&format!(
        "building {} fuzz target(s) (cargo +{} fuzz build, release with debug assertions)",
        chosen.len(),
        bootstrap::NIGHTLY
    ));
    let t0 = Instant::now();
    let mut build = cargo_fuzz_cmd("build");
    // `cargo fuzz build` takes one target or none (all).
    if let [only] = chosen.as_slice() {
        build.arg(only);
    }
    let status = build.status().context("cannot run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    say(&format!("built in {:.0} s", t0.elapsed().as_secs_f64()));

    let mut reports = Vec::new();
    for (i, t) in chosen.iter().enumerate() {
        say(&format!(
            "{}/{}: {t} for {} s (-rss_limit_mb={RSS_LIMIT_MB} -timeout={TIMEOUT_S})",
            i + 1,
            chosen.len(),
            opts.seconds
        ));
        let r = fuzz_one(t, opts.seconds)?;
        ok &= r.crashes.is_empty() && r.failed.is_none();
        reports.push(r);
    }
    let table = report_table(&reports);
    println!();
    println!("{table}");
    if let Some((_, figures)) = &props {
        println!("{figures}");
    }
    let total = started.elapsed();
    println!(
        "[fuzz] total {:.0} s; {}",
        total.as_secs_f64(),
        if ok { "no crash" } else { "FAILED" }
    );
    let report = work_dir().join("report.md");
    let _ = std::fs::create_dir_all(work_dir());
    let mut md = format!("# cargo xtask fuzz {}\n\n{table}\n", opts.seconds);
    if let Some((_, figures)) = &props {
        md.push_str("\n```\n");
        md.push_str(figures);
        md.push_str("\n```\n");
    }
    std::fs::write(&report, md).with_context(|| format!("cannot write `{}`", report.display()))?;
    say(&format!("report: {}", report.display()));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo +nightly fuzz <sub>` in `receiver/` with our build settings: no sanitizer (the
/// parsers are safe Rust; a panic or an overflow is what we look for, and debug assertions
/// and overflow checks stay on), the probes not built (only the parsers are fuzzed), the
/// build under `target/fuzz/build`.
fn cargo_fuzz_cmd(sub: &str) -> Command {
    let mut c = nightly_cargo();
    c.current_dir(paths::workspace_root().join("receiver"))
        .args(["fuzz", sub, "--sanitizer", "none", "--target-dir"])
        .arg(work_dir().join("build"))
        .env("EBPF_RECEIVER_SKIP_PROBES", "1")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// The full-size property test, release build: (passed, its figures).
fn property_test(cases: u64) -> Result<(bool, String)> {
    say(&format!(
        "property test: {cases} random + {cases} mutated streams per parser (receiver/tests/hostile_bytes.rs, release)"
    ));
    let t0 = Instant::now();
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(paths::workspace_root())
        .args([
            "test",
            "--release",
            "-p",
            "ebpf-receiver",
            "--test",
            "hostile_bytes",
            "--",
        ])
        .args(["--nocapture", "--test-threads=2"])
        .env("HOSTILE_CASES", cases.to_string())
        .stdout(Stdio::piped());
    let mut child = c.spawn().context("cannot run cargo test")?;
    let mut figures = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("[hostile]") {
                figures.push(line);
            }
        }
    }
    let status = child.wait()?;
    figures.push(format!(
        "[hostile] property test {} in {:.0} s (build included)",
        if status.success() { "passed" } else { "FAILED" },
        t0.elapsed().as_secs_f64()
    ));
    Ok((status.success(), figures.join("\n")))
}

/// Crash, OOM, timeout and leak inputs in `dir`.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        ["crash-", "oom-", "timeout-", "leak-", "slow-unit-"]
                            .iter()
                            .any(|k| n.starts_with(k))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().count())
        .unwrap_or(0)
}

/// A libFuzzer status line (`#4096 pulse cov: 312 ft: 1024 corp: 60/2Kb exec/s: 2048 rss: 40Mb`):
/// (executions, the rest).
fn status_line(line: &str) -> Option<(u64, &str)> {
    let rest = line.strip_prefix('#')?;
    let (n, tail) = rest.split_once(|c: char| c.is_whitespace())?;
    Some((n.parse().ok()?, tail.trim()))
}

/// `stat::name: value` lines of `-print_final_stats=1`.
fn final_stat(line: &str, name: &str) -> Option<u64> {
    let v = line
        .strip_prefix("stat::")?
        .strip_prefix(name)?
        .strip_prefix(':')?;
    v.trim().parse().ok()
}

fn fuzz_one(target: &str, seconds: u64) -> Result<TargetReport> {
    let corpus = work_dir().join("corpus").join(target);
    let artifacts_dir = work_dir().join("artifacts").join(target);
    let logs = work_dir().join("logs");
    for d in [&corpus, &artifacts_dir, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create `{}`", d.display()))?;
    }
    let seeds = fuzz_dir().join("seeds").join(target);
    let before = artifacts(&artifacts_dir);
    let log_path = logs.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create `{}`", log_path.display()))?;

    let mut c = cargo_fuzz_cmd("run");
    c.arg(target).arg(&corpus);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    c.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={TIMEOUT_S}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts_dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = c.spawn().context("cannot run cargo fuzz run")?;
    let mut r = TargetReport {
        name: target.to_string(),
        ..TargetReport::default()
    };
    let mut last_print = Instant::now();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if let Some((n, tail)) = status_line(&line) {
                r.executions = r.executions.max(n);
                if last_print.elapsed() >= Duration::from_secs(10) {
                    last_print = Instant::now();
                    say(&format!(
                        "  {target} {:>4.0} s: #{n} {tail}",
                        t0.elapsed().as_secs_f64()
                    ));
                }
            }
            if let Some(v) = final_stat(&line, "number_of_executed_units") {
                r.executions = v;
            }
            if let Some(v) = final_stat(&line, "average_exec_per_sec") {
                r.exec_per_s = v;
            }
            if let Some(v) = final_stat(&line, "new_units_added") {
                r.new_units = v;
            }
            if let Some(v) = final_stat(&line, "peak_rss_mb") {
                r.peak_rss_mb = v;
            }
            if line.contains("panicked at") || line.starts_with("==") && line.contains("ERROR") {
                say(&format!("  {target}: {line}"));
            }
        }
    }
    let status = child.wait()?;
    r.seconds = t0.elapsed().as_secs_f64();
    if r.exec_per_s == 0 && r.seconds > 0.0 {
        r.exec_per_s = (r.executions as f64 / r.seconds) as u64;
    }
    r.corpus = count_files(&corpus) + count_files(&seeds);
    r.crashes = artifacts(&artifacts_dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if !status.success() {
        r.failed = Some(format!("{status} (log: {})", log_path.display()));
    }
    say(&format!(
        "  {target}: {} executions in {:.0} s ({} exec/s), corpus {}, {} crash(es){}",
        r.executions,
        r.seconds,
        r.exec_per_s,
        r.corpus,
        r.crashes.len(),
        r.failed
            .as_deref()
            .map(|f| format!(", exit {f}"))
            .unwrap_or_default()
    ));
    for p in &r.crashes {
        say(&format!("  {target}: crash input {}", p.display()));
    }
    Ok(r)
}

fn report_table(reports: &[TargetReport]) -> String {
    let mut s = String::from(
        "| target | executions | exec/s | corpus | new units | peak RSS MiB | seconds | crashes |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in reports {
        let crashes = if r.crashes.is_empty() && r.failed.is_none() {
            "0".to_string()
        } else {
            let mut parts: Vec<String> =
                r.crashes.iter().map(|p| p.display().to_string()).collect();
            if let Some(f) = &r.failed {
                parts.push(format!("exit {f}"));
            }
            format!("{}: {}", r.crashes.len(), parts.join(", "))
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} |\n",
            r.name,
            r.executions,
            r.exec_per_s,
            r.corpus,
            r.new_units,
            r.peak_rss_mb,
            r.seconds,
            crashes
        ));
    }
    let total: u64 = reports.iter().map(|r| r.executions).sum();
    s.push_str(&format!(
        "| **all** | {total} | | | | | | {} |\n",
        reports.iter().map(|r| r.crashes.len()).sum::<usize>()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fuzz_target_is_listed_and_has_seeds() {
        let names = targets().unwrap();
        for want in [
            "mysql_framer",
            "postgres_framer",
            "redis_framer",
            "http1_framer",
            "dns_framer",
            "sql_sanitizer",
            "infer",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        for n in &names {
            assert!(
                fuzz_dir()
                    .join("fuzz_targets")
                    .join(format!("{n}.rs"))
                    .is_file(),
                "{n}"
            );
            assert!(
                count_files(&fuzz_dir().join("seeds").join(n)) > 0,
                "no seeds for {n}"
            );
        }
    }

    #[test]
    fn libfuzzer_lines_are_read() {
        assert_eq!(
            status_line("#262144\tpulse  cov: 1234 ft: 5678 corp: 90/12Kb exec/s: 8738 rss: 50Mb"),
            Some((
                262144,
                "pulse  cov: 1234 ft: 5678 corp: 90/12Kb exec/s: 8738 rss: 50Mb"
            ))
        );
        assert_eq!(status_line("INFO: Seed: 1"), None);
        assert_eq!(
            final_stat(
                "stat::number_of_executed_units: 4242",
                "number_of_executed_units"
            ),
            Some(4242)
        );
        assert_eq!(
            final_stat("stat::average_exec_per_sec:     17", "average_exec_per_sec"),
            Some(17)
        );
        assert_eq!(
            final_stat("stat::peak_rss_mb: 40", "average_exec_per_sec"),
            None
        );
        assert_eq!(
            bin_names(
                "[package]\nname = \"x\"\n[[bin]]\nname = \"a\"\npath = \"p\"\n\n[[bin]]\nname = \"b\"\n"
            ),
            ["a", "b"]
        );
    }
}
