//! Where things are: the workspace, `target/`, built binaries, per-run scratch directories.
//!
//! Environment overrides (set by `cargo xtask`, defaults for a plain `cargo test`):
//! `EBPF_RECEIVER_BIN`, `OTELCOL_BIN`, `E2E_PYTHON`, `CARGO_TARGET_DIR`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The workspace root (parent of `integration/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The receiver binary under test.
pub fn receiver_bin() -> PathBuf {
    std::env::var_os("EBPF_RECEIVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/ebpf-receiver"))
}

/// Directory of the Collector build. Always `<workspace>/target/otelcol`, whatever
/// `CARGO_TARGET_DIR` says: `builder-config.yaml` names `../target/otelcol/build`.
pub fn otelcol_dir() -> PathBuf {
    workspace_root().join("target/otelcol")
}

/// The stock Collector built from `otel-collector-config/builder-config.yaml`.
pub fn collector_bin() -> PathBuf {
    std::env::var_os("OTELCOL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| otelcol_dir().join("build/otelcol-sidecar"))
}

/// The Collector configuration directory.
pub fn collector_config_dir() -> PathBuf {
    workspace_root().join("otel-collector-config")
}

/// The Python virtualenv holding the test clients' libraries.
pub fn venv_dir() -> PathBuf {
    target_dir().join("venv")
}

/// The Python interpreter for client scripts.
pub fn python() -> PathBuf {
    std::env::var_os("E2E_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_dir().join("bin/python"))
}

/// The client scripts (`integration/clients/`).
pub fn clients_dir() -> PathBuf {
    workspace_root().join("integration/clients")
}

/// Server-side helper scripts (`integration/servers/`, e.g. the HTTP upstream behind nginx).
pub fn servers_dir() -> PathBuf {
    workspace_root().join("integration/servers")
}

/// This process's run directory, `target/e2e/<run-id>` (run id = start time in ms + pid), shared
/// by every test of one test binary.
pub fn run_dir() -> PathBuf {
    static RUN_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let id = RUN_ID.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{now}-{}", std::process::id())
    });
    target_dir().join("e2e").join(id)
}

/// A fresh scratch directory `target/e2e/<run-id>/<name>`. Unix socket paths must stay under
/// 108 bytes, so keep `name` short.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = run_dir().join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot clear scratch dir `{}`", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create scratch dir `{}`", dir.display()))?;
    Ok(dir)
}

/// Removes a scratch directory, and its run directory once that is empty.
pub fn remove_scratch_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    if let Some(parent) = dir.parent() {
        // Fails (harmlessly) while other tests' directories remain.
        let _ = std::fs::remove_dir(parent);
    }
}
