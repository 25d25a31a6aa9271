//! Cost of the probes on untraced syscalls: `dd if=/dev/zero of=/dev/null bs=1 count=1000000`
//! (1M read + 1M write syscalls on fds that are not sockets) without and with the probes
//! loaded, same process, printed as figures. Root only; ignored by default.
//!
//! Run: `sudo -E cargo test --release -p ebpf-receiver --test bpf_cost -- --ignored --nocapture`.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ebpf_receiver::bpf::{BpfSettings, Probes};

const RUNS: usize = 4;
const SYSCALL_PAIRS: f64 = 1_000_000.0;

fn dd() -> Duration {
    let start = Instant::now();
    let status = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(status.success());
    start.elapsed()
}

fn runs() -> Vec<Duration> {
    (0..RUNS).map(|_| dd()).collect()
}

fn ms(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2] + s[(s.len() - 1) / 2]) / 2.0
}

#[test]
#[ignore = "benchmark: prints figures, root only"]
fn dd_cost_with_and_without_probes() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "must run as root");
    let _ = dd(); // warm up
    let without = runs();
    let probes = Probes::load(&BpfSettings {
        max_capture_bytes: 4096,
        data_ring_bytes: 4 << 20,
        control_ring_bytes: 256 << 10,
        max_connections: 65536,
        self_pid: std::process::id(),
        pids: Vec::new(),
        exclude_pids: Vec::new(),
        exclude_ports: Vec::new(),
    })
    .expect("load probes");
    let with = runs();
    drop(probes);
    let again = runs();
    let base = (median(&without) + median(&again)) / 2.0;
    let added_ns = (median(&with) - base) / SYSCALL_PAIRS * 1e9;
    println!("dd bs=1 count=1000000, wall ms per run ({RUNS} runs each)");
    println!("  without probes:        {}", ms(&without));
    println!("  with probes:           {}", ms(&with));
    println!("  without (after drop):  {}", ms(&again));
    println!(
        "  added ≈ {added_ns:.0} ns per read+write pair ({:.0} ns per syscall), ratio {:.2}",
        added_ns / 2.0,
        median(&with) / base
    );
}
