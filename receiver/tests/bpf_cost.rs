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
use ebpf_receiver::model::Protocol;

const ROUNDS: usize = 3;
const RUNS: usize = 3;
const SYSCALL_PAIRS: f64 = 1_000_000.0;

/// Children's user+system CPU time so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One dd run: (wall, CPU).
fn dd() -> (Duration, Duration) {
    let cpu0 = children_cpu();
    let start = Instant::now();
    let status = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(status.success());
    (start.elapsed(), children_cpu() - cpu0)
}

fn min_ms(v: &[(Duration, Duration)], cpu: bool) -> f64 {
    v.iter()
        .map(|(w, c)| if cpu { c } else { w }.as_secs_f64() * 1e3)
        .fold(f64::INFINITY, f64::min)
}

fn all_ms(v: &[(Duration, Duration)]) -> String {
    v.iter()
        .map(|(w, _)| format!("{:.0}", w.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "benchmark: prints figures, root only"]
fn dd_cost_with_and_without_probes() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "must run as root");
    let settings = BpfSettings {
        max_capture_bytes: 4096,
        data_ring_bytes: 4 << 20,
        control_ring_bytes: 256 << 10,
        max_connections: 65536,
        self_pid: std::process::id(),
        pids: Vec::new(),
        exclude_pids: Vec::new(),
        exclude_ports: Vec::new(),
        enabled_protocols: Protocol::ALL.to_vec(),
    };
    let _ = dd(); // warm up
    // Interleaved rounds so background load hits both sides alike.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        without.extend((0..RUNS).map(|_| dd()));
        let probes = Probes::load(&settings).expect("load probes");
        with.extend((0..RUNS).map(|_| dd()));
        drop(probes);
    }
    // Per-program run time with kernel.bpf_stats_enabled (one more loaded run).
    const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let old = std::fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
    let probes = Probes::load(&settings).expect("load probes");
    std::fs::write(BPF_STATS, "1").expect("enable bpf stats");
    let _ = dd();
    std::fs::write(BPF_STATS, old.trim()).expect("restore bpf stats");
    println!("per-program average run time during one dd run (kernel.bpf_stats_enabled):");
    for p in probes.program_stats().expect("program stats") {
        if p.run_count > 0 {
            println!(
                "  {:<20} runs {:>8}  avg {:>5.0} ns",
                p.name,
                p.run_count,
                p.run_time.as_nanos() as f64 / p.run_count as f64
            );
        }
    }
    drop(probes);
    println!(
        "dd bs=1 count=1000000 ({} runs each, interleaved in {ROUNDS} rounds)",
        ROUNDS * RUNS
    );
    println!("  wall ms without probes: {}", all_ms(&without));
    println!("  wall ms with probes:    {}", all_ms(&with));
    for (label, cpu) in [("wall", false), ("cpu ", true)] {
        let (a, b) = (min_ms(&without, cpu), min_ms(&with, cpu));
        println!(
            "  {label} min: without {a:.0} ms, with {b:.0} ms, ratio {:.2}, added ≈ {:.0} ns per read+write pair ({:.0} ns per syscall)",
            b / a,
            (b - a) / SYSCALL_PAIRS * 1e6,
            (b - a) / SYSCALL_PAIRS * 1e6 / 2.0
        );
    }
}
