//! Prerequisites, installed idempotently with visible progress: one function per prerequisite,
//! each printing `[bootstrap] <thing>: ok (cached)` when present or `installing…` before work.
//!
//! A fresh Debian bookworm machine with rustup, Go and Python is assumed; everything else is
//! installed here (apt packages need root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};

use crate::paths;
use crate::process::is_root;

/// The nightly that builds `ebpf/probes` (must match `ebpf/probes/rust-toolchain.toml`).
pub const NIGHTLY: &str = "nightly-2026-05-20";
/// LLVM that bpf-linker links against (matches the nightly's LLVM major version).
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
pub const BPF_LINKER_VERSION: &str = "0.13.0";
pub const OCB_VERSION: &str = "v0.161.0";
/// Debian packages: LLVM for bpf-linker; the real servers and clients of the e2e tests; venv
/// support for the Python clients.
///
/// The harness runs every server privately (own config, data dir and free port), never the
/// system services: `postgresql`, `redis-server` and `nginx` register services that a Debian
/// postinst may start on 5432/6379/80 (inside a container `policy-rc.d` usually forbids it); the
/// tests neither use nor collide with them. `dnsmasq-base` is the binary without the `dnsmasq`
/// service package.
pub const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    // MySQL: server and the `mariadb` CLI.
    "mariadb-server",
    "mariadb-client",
    // PostgreSQL: initdb/postgres and pgbench (/usr/lib/postgresql/<ver>/bin, from
    // postgresql-<ver>), psql.
    "postgresql",
    "postgresql-client",
    // Redis: redis-server; redis-cli and redis-benchmark.
    "redis-server",
    "redis-tools",
    // HTTP: nginx; curl and wrk as clients.
    "nginx",
    "curl",
    "wrk",
    // DNS: dnsmasq (binary only); dig.
    "dnsmasq-base",
    "bind9-dnsutils",
    "python3-venv",
];

/// Debian packages only `cargo xtask bench` needs: the load generators and tools it compares
/// (sysbench for MariaDB, iperf3 for the mixed workload's bulk traffic, bpftrace for the
/// empty-program floor, tshark for packet capture, bpftool for program names). `tshark` asks
/// whether non-root users may capture; the noninteractive install keeps the default (no).
pub const BENCH_APT_PACKAGES: &[&str] = &["sysbench", "iperf3", "bpftrace", "tshark", "bpftool"];

/// Python modules the client scripts import (from `integration/clients/requirements.txt`).
const PYTHON_MODULES: &str = "mysql.connector, requests, psycopg, redis, matplotlib";

fn say(thing: &str, state: &str) {
    println!("[bootstrap] {thing}: {state}");
}

/// Runs quietly; true on exit 0.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs with the console attached (visible progress); fails on non-zero exit.
fn run_visible(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Everything `cargo xtask run|test|bench` needs, in dependency order.
pub fn all() -> Result<()> {
    tracefs()?;
    apt_packages(APT_PACKAGES)?;
    nightly()?;
    bpf_linker()?;
    go_builder()?;
    collector()?;
    python_venv()?;
    Ok(())
}

/// tracefs at /sys/kernel/tracing (the probes attach to syscall tracepoints).
pub fn tracefs() -> Result<()> {
    let events = Path::new("/sys/kernel/tracing/events");
    if events.is_dir() {
        say("tracefs", "ok (cached)");
        return Ok(());
    }
    if !is_root() {
        say(
            "tracefs",
            "missing at /sys/kernel/tracing (needs root to mount; the receiver will fail)",
        );
        return Ok(());
    }
    say(
        "tracefs",
        "installing… (mount -t tracefs nodev /sys/kernel/tracing)",
    );
    run_visible(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    if !events.is_dir() {
        bail!("tracefs mounted but /sys/kernel/tracing/events is missing");
    }
    Ok(())
}

fn apt_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Debian packages (`apt-get update` once, only when something is missing).
pub fn apt_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !apt_installed(p)).collect();
    if missing.is_empty() {
        say(&format!("apt {}", pkgs.join(" ")), "ok (cached)");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {} — run as root or `apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    say(&format!("apt {}", missing.join(" ")), "installing…");
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        run_visible(Command::new("apt-get").arg("update"))?;
    }
    run_visible(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
}

/// The pinned nightly with rust-src (builds the eBPF programs).
pub fn nightly() -> Result<()> {
    let have_toolchain =
        succeeds(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--version"]));
    let have_src = have_toolchain
        && Command::new("rustup")
            .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.starts_with("rust-src"))
            });
    if have_toolchain && have_src {
        say(&format!("rust {NIGHTLY} + rust-src"), "ok (cached)");
        return Ok(());
    }
    say(&format!("rust {NIGHTLY} + rust-src"), "installing…");
    run_visible(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// bpf-linker, linked against the system LLVM 22.
pub fn bpf_linker() -> Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        say("bpf-linker", "ok (cached)");
        return Ok(());
    }
    say(
        &format!("bpf-linker {BPF_LINKER_VERSION}"),
        "installing… (cargo install, a few minutes)",
    );
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    // The last one is what was seen working on this kind of machine (default features, with
    // LLVM_PREFIX pointing at LLVM 22).
    let attempts: [&[&str]; 4] = [
        &["--locked", "--no-default-features", "--features", "llvm-22"],
        &["--no-default-features", "--features", "llvm-22"],
        &["--locked"],
        &[],
    ];
    let mut last = None;
    for extra in attempts {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(extra)
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_220_PREFIX", LLVM_PREFIX)
            .env("PATH", &path);
        match run_visible(&mut cmd) {
            Ok(()) => return Ok(()),
            Err(e) => {
                println!("[bootstrap] bpf-linker: attempt {extra:?} failed: {e:#}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("cargo install bpf-linker failed")))
}

fn go_bin() -> PathBuf {
    if succeeds(Command::new("go").arg("version")) {
        PathBuf::from("go")
    } else {
        PathBuf::from("/usr/local/go/bin/go")
    }
}

/// `$(go env GOPATH)/bin/builder`.
fn ocb_path() -> Result<PathBuf> {
    let out = Command::new(go_bin())
        .args(["env", "GOPATH"])
        .output()
        .context("Go is required (`go env GOPATH`)")?;
    let gopath = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let first = gopath.split(':').next().unwrap_or("").to_string();
    if first.is_empty() {
        bail!("`go env GOPATH` is empty");
    }
    Ok(PathBuf::from(first).join("bin/builder"))
}

/// The OpenTelemetry Collector Builder (OCB).
pub fn go_builder() -> Result<()> {
    let ocb = ocb_path()?;
    let version_ok = Command::new(&ocb)
        .arg("version")
        .output()
        // `builder version` prints `ocb version v0.161.0` (on stderr in this release).
        .is_ok_and(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            o.status.success() && text.contains(OCB_VERSION)
        });
    if version_ok {
        say(&format!("collector builder {OCB_VERSION}"), "ok (cached)");
        return Ok(());
    }
    say(
        &format!("collector builder {OCB_VERSION}"),
        "installing… (go install)",
    );
    run_visible(Command::new(go_bin()).args([
        "install",
        &format!("go.opentelemetry.io/collector/cmd/builder@{OCB_VERSION}"),
    ]))
}

/// Hex SHA-256 of a file.
fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// The stock Collector from `otel-collector-config/builder-config.yaml`, rebuilt only when the
/// manifest's hash differs from `target/otelcol/manifest.sha256`.
pub fn collector() -> Result<()> {
    let manifest = paths::collector_config_dir().join("builder-config.yaml");
    let hash_file = paths::otelcol_dir().join("manifest.sha256");
    let bin = paths::otelcol_dir().join("build/otelcol-sidecar");
    let hash = sha256_file(&manifest)?;
    let stored = std::fs::read_to_string(&hash_file).unwrap_or_default();
    if bin.exists() && stored.trim() == hash {
        say("otelcol-sidecar", "ok (cached)");
        return Ok(());
    }
    // A binary built before the hash file existed: adopt it when it is newer than the manifest.
    let newer = |a: &Path, b: &Path| -> bool {
        match (
            a.metadata().and_then(|m| m.modified()),
            b.metadata().and_then(|m| m.modified()),
        ) {
            (Ok(x), Ok(y)) => x >= y,
            _ => false,
        }
    };
    if bin.exists() && stored.is_empty() && newer(&bin, &manifest) {
        std::fs::write(&hash_file, format!("{hash}\n"))?;
        say(
            "otelcol-sidecar",
            "ok (cached; adopted existing build, hash recorded)",
        );
        return Ok(());
    }
    say(
        "otelcol-sidecar",
        "installing… (OCB build of the stock Collector, several minutes on a fresh machine)",
    );
    std::fs::create_dir_all(paths::otelcol_dir())?;
    let go_path = go_bin();
    let mut cmd = Command::new(ocb_path()?);
    cmd.arg("--config")
        .arg(&manifest)
        .current_dir(paths::collector_config_dir());
    // OCB runs `go`; make sure it finds it even when only /usr/local/go/bin/go exists.
    if go_path.is_absolute()
        && let Some(dir) = go_path.parent()
    {
        cmd.env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    run_visible(&mut cmd)?;
    if !bin.exists() {
        bail!(
            "the Collector build finished but `{}` is missing",
            bin.display()
        );
    }
    std::fs::write(&hash_file, format!("{hash}\n"))?;
    Ok(())
}

/// A venv under target/ with the Python client libraries (`integration/clients/requirements.txt`).
pub fn python_venv() -> Result<()> {
    let venv = paths::venv_dir();
    let python = venv.join("bin/python");
    let requirements = paths::clients_dir().join("requirements.txt");
    let stamp = venv.join("requirements.sha256");
    let hash = sha256_file(&requirements)?;
    let import_ok =
        succeeds(Command::new(&python).args(["-c", &format!("import {PYTHON_MODULES}")]));
    let label = format!("python venv + {PYTHON_MODULES}");
    if import_ok && std::fs::read_to_string(&stamp).unwrap_or_default().trim() == hash {
        say(&label, "ok (cached)");
        return Ok(());
    }
    say(&label, "installing…");
    if !python.exists() {
        let sys_python = if succeeds(Command::new("python3").arg("--version")) {
            "python3"
        } else {
            "/usr/bin/python3"
        };
        run_visible(Command::new(sys_python).arg("-m").arg("venv").arg(&venv))?;
    }
    run_visible(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, format!("{hash}\n"))?;
    Ok(())
}
