//! Builds the kernel programs (`ebpf/probes`) for `bpfel-unknown-none` with the pinned nightly
//! and bpf-linker, and leaves the object at `$OUT_DIR/ebpf-probes` for
//! `aya::include_bytes_aligned!`.
//!
//! aya-build's `build_ebpf` runs `cargo build --package <name>` from this crate's directory,
//! which cannot see `ebpf/probes` (a separate workspace, excluded from ours), so this runs the
//! equivalent command itself, from inside `ebpf/probes` so that its `rust-toolchain.toml` and
//! `.cargo/config.toml` (target, `-Z build-std=core`, `--cpu v3`, `--btf`) apply.
//!
//! `EBPF_RECEIVER_SKIP_PROBES=1` skips the build and embeds an empty object (for machines
//! without the nightly; `Probes::load` then fails with a clear error).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Must match `ebpf/probes/rust-toolchain.toml`.
const TOOLCHAIN: &str = "nightly-2026-05-20";
const TARGET: &str = "bpfel-unknown-none";
const OBJECT: &str = "ebpf-probes";
const SKIP: &str = "EBPF_RECEIVER_SKIP_PROBES";

/// Variables the outer cargo sets for this build that must not leak into the nested one (they
/// would select the stable toolchain, host flags or our target dir).
const LEAKY_ENV: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_PKG_NAME",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
];

fn main() -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("`CARGO_MANIFEST_DIR` not set")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").context("`OUT_DIR` not set")?);
    let ebpf = manifest_dir.join("..").join("ebpf");
    let probes = ebpf.join("probes");
    let common = ebpf.join("common");

    println!("cargo:rerun-if-env-changed={SKIP}");
    for path in [
        probes.join("src"),
        probes.join("Cargo.toml"),
        probes.join("Cargo.lock"),
        probes.join("rust-toolchain.toml"),
        probes.join(".cargo").join("config.toml"),
        common.join("src"),
        common.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let dst = out_dir.join(OBJECT);
    if env::var_os(SKIP).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        println!("cargo:warning={SKIP} is set: embedding an empty eBPF object");
        fs::write(&dst, []).with_context(|| format!("writing `{}`", dst.display()))?;
        return Ok(());
    }

    let target_dir = out_dir.join("probes-target");
    let object = build_probes(&probes, &target_dir)?;
    fs::copy(&object, &dst)
        .with_context(|| format!("copying `{}` to `{}`", object.display(), dst.display()))?;
    Ok(())
}

/// Runs `rustup run <nightly> cargo build --release` in `ebpf/probes`; returns the object path.
fn build_probes(probes: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        TOOLCHAIN,
        "cargo",
        "build",
        "--release",
        "--target",
        TARGET,
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(probes);
    for key in LEAKY_ENV {
        cmd.env_remove(key);
    }
    let output = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is rustup installed with `{TOOLCHAIN}`?)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "building the eBPF probes failed ({}); needs toolchain `{TOOLCHAIN}` with rust-src and \
             `bpf-linker` on PATH, or set {SKIP}=1\n{stderr}",
            output.status
        );
    }
    Ok(target_dir.join(TARGET).join("release").join(OBJECT))
}
