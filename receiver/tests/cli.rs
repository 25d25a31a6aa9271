//! The command-line contract: `validate` and bad configurations exit 2 with `file:line:column`
//! and the dotted field path, before anything is loaded into the kernel.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ebpf-receiver"))
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ebpf-receiver-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_accepts_the_shipped_default_config() {
    let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/receiver.yaml");
    let out = bin()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn validate_rejects_an_unknown_key_with_its_location_and_exit_code_2() {
    let cfg = write_config(
        "typo.yaml",
        "exporter:\n  endpoint: http://localhost:4317\n  compresion: gzip\n",
    );
    let out = bin()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3:3", cfg.display())), "{err}");
    assert!(err.contains("`exporter.compresion`"), "{err}");
}

#[test]
fn running_with_a_bad_value_fails_before_loading_probes() {
    let cfg = write_config("bad.yaml", "ebpf:\n  max_capture_bytes: 0\n");
    // Would need root to load probes; the config error must come first either way.
    let out = bin().args(["--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(":2:3") && err.contains("`ebpf.max_capture_bytes`"),
        "{err}"
    );
}

#[test]
fn a_bad_environment_variable_is_a_configuration_error() {
    let out = bin()
        .args(["validate"])
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("OTEL_EXPORTER_OTLP_TIMEOUT"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flags_win_over_the_environment() {
    // An https endpoint from the environment is rejected, but the flag replaces it first.
    let out = bin()
        .args(["validate", "--endpoint", "http://127.0.0.1:4317"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bin()
        .args(["validate", "--endpoint", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn check_list_tracepoints_prints_category_colon_name_and_exits_0() {
    let out = bin()
        .args(["check", "--list-tracepoints"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"syscalls:sys_enter_read"), "{text}");
    assert!(
        lines.iter().all(|l| {
            let parts: Vec<&str> = l.split(':').collect();
            parts.len() == 2 && parts.iter().all(|p| !p.is_empty())
        }),
        "{text}"
    );
}
