//! What the probes cost processes that do I/O on fds that are not tracked sockets, in ns per
//! syscall, against the floor of any syscall-tracepoint design measured in the same run.
//!
//! Workloads, each a small C loop (compiled with `cc` at start) timed on its own CPU clock:
//! - `untraced`: 1-byte reads of /dev/zero and writes to /dev/null, no tracked socket;
//! - `traced`: the same, in a process that owns a tracked, inferred socket (it connected and
//!   sent a Redis `PING` first);
//! - `other`: `getppid`, a syscall none of our programs handles (what every other syscall of
//!   every process pays).
//!
//! Configurations, interleaved in rounds (the order rotates every round) so that background
//! load hits all of them alike:
//! - `baseline`: nothing attached;
//! - `bpftrace`: empty bpftrace programs on every tracepoint the receiver uses (the floor an
//!   outside observer measures; skipped when bpftrace is missing);
//! - `floor-tp`: our own empty program on the same tracepoints;
//! - `floor-raw`, `floor-btf`: empty raw / BTF raw tracepoints on `sys_enter` + `sys_exit`;
//! - `receiver`: the receiver's programs.
//!
//! Figure: the loop's CPU time per syscall, minus the baseline's (median over runs, and min:
//! background load on a shared machine only adds). A separate attribution run with `kernel.bpf_stats_enabled=1` prints each
//! program's average run time (stats add ~20 ns per run, so only there).
//!
//! Root only; ignored by default. Run:
//! `cargo test --release -p ebpf-receiver --test bpf_cost -- --ignored --nocapture`
//! (`BPF_COST_ROUNDS`, `BPF_COST_COUNT` override the defaults).

use std::{
    io::{BufRead, BufReader, Read},
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ebpf_receiver::bpf::{BpfSettings, Floor, FloorProbes, Probes};
use ebpf_receiver::model::Protocol;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Untraced,
    Traced,
    /// `getppid` in a Python loop: a syscall no program of ours handles.
    Other,
}

const WORKLOADS: [Workload; 3] = [Workload::Untraced, Workload::Traced, Workload::Other];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Untraced => "untraced",
            Workload::Traced => "traced",
            Workload::Other => "other",
        }
    }

    /// Syscalls one run makes (the ones the figure is divided by).
    fn syscalls(self, count: usize) -> f64 {
        match self {
            Workload::Untraced | Workload::Traced => 2.0 * count as f64,
            Workload::Other => count as f64,
        }
    }
}

/// The measured process: a syscall loop timed on its own CPU clock (process start-up excluded).
/// `loop rw N [PORT]`: N reads of 1 byte from /dev/zero and N writes of 1 byte to /dev/null,
/// after connecting to 127.0.0.1:PORT and sending a Redis `PING` when PORT is given (the process
/// then owns a tracked, inferred socket); `loop getppid N`: N getppid calls. Prints the loop's
/// CPU ns and wall ns.
const LOOP_C: &str = r#"
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static long long ns(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(int argc, char **argv) {
    long n = atol(argv[2]);
    int rw = strcmp(argv[1], "rw") == 0;
    if (argc > 3) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&a, sizeof a) != 0 || write(s, "PING\r\n", 6) != 6) return 2;
    }
    int in = open("/dev/zero", O_RDONLY), out = open("/dev/null", O_WRONLY);
    char c;
    long long c0 = ns(CLOCK_PROCESS_CPUTIME_ID), w0 = ns(CLOCK_MONOTONIC);
    for (long i = 0; i < n; i++) {
        if (rw) {
            if (read(in, &c, 1) != 1 || write(out, &c, 1) != 1) return 3;
        } else {
            syscall(SYS_getppid);
        }
    }
    printf("%lld %lld\n", ns(CLOCK_PROCESS_CPUTIME_ID) - c0, ns(CLOCK_MONOTONIC) - w0);
    return 0;
}
"#;

/// Compiles [`LOOP_C`] with the system C compiler (the one Rust links with).
fn build_loop() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bpf-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("loop.c");
    let bin = dir.join("loop");
    std::fs::write(&src, LOOP_C).expect("write loop.c");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(ok.success(), "cc failed");
    bin
}

/// One run: (wall, CPU) of the loop.
fn run(bin: &std::path::Path, w: Workload, count: usize, port: u16) -> (Duration, Duration) {
    let mut cmd = Command::new(bin);
    match w {
        Workload::Untraced => cmd.args(["rw", &count.to_string()]),
        Workload::Traced => cmd.args(["rw", &count.to_string(), &port.to_string()]),
        Workload::Other => cmd.args(["getppid", &count.to_string()]),
    };
    let out = cmd.stderr(Stdio::inherit()).output().expect("loop");
    assert!(out.status.success(), "loop failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().expect("figure"));
    let cpu = Duration::from_nanos(f.next().expect("cpu"));
    let wall = Duration::from_nanos(f.next().expect("wall"));
    (wall, cpu)
}

/// A listener that accepts and drains connections (the traced workload's peer); the test
/// process is never traced.
fn sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 1024];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Baseline,
    Bpftrace,
    FloorTp,
    FloorRaw,
    FloorBtf,
    BtfFilter,
    Receiver,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Baseline => "baseline",
            Config::Bpftrace => "bpftrace",
            Config::FloorTp => "floor-tp",
            Config::FloorRaw => "floor-raw",
            Config::FloorBtf => "floor-btf",
            Config::BtfFilter => "btf-filter",
            Config::Receiver => "receiver",
        }
    }
}

/// What a configuration keeps attached while it is measured.
enum Attached {
    Nothing,
    Bpftrace(Child),
    Floor(FloorProbes),
    Receiver(Probes),
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Attached::Bpftrace(child) = self {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }
}

fn settings() -> BpfSettings {
    BpfSettings {
        max_capture_bytes: 4096,
        data_ring_bytes: 4 << 20,
        control_ring_bytes: 256 << 10,
        max_connections: 65536,
        self_pid: std::process::id(),
        pids: Vec::new(),
        exclude_pids: Vec::new(),
        exclude_ports: Vec::new(),
        enabled_protocols: Protocol::ALL.to_vec(),
        kernel_inference: true,
    }
}

/// Empty bpftrace programs on every tracepoint the receiver uses; returns once attached.
fn bpftrace() -> Child {
    let probes: Vec<String> = ebpf_receiver::bpf::tracepoints()
        .iter()
        .map(|t| format!("tracepoint:{}", t.replace('/', ":")))
        .collect();
    let mut child = Command::new("bpftrace")
        .args(["-e", &format!("{} {{}}", probes.join(","))])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while out.read_line(&mut line).expect("bpftrace output") > 0 {
        if line.starts_with("Attaching") {
            // bpftrace prints this before attaching; give it a moment to finish.
            std::thread::sleep(Duration::from_millis(500));
            std::thread::spawn(move || {
                let mut sink = String::new();
                while out.read_line(&mut sink).unwrap_or(0) > 0 {}
            });
            return child;
        }
        line.clear();
    }
    let _ = child.wait();
    panic!("bpftrace exited before attaching");
}

fn attach(c: Config) -> Attached {
    match c {
        Config::Baseline => Attached::Nothing,
        Config::Bpftrace => Attached::Bpftrace(bpftrace()),
        Config::FloorTp => Attached::Floor(FloorProbes::load(Floor::Tracepoints).expect("floor")),
        Config::FloorRaw => Attached::Floor(FloorProbes::load(Floor::Raw).expect("floor")),
        Config::FloorBtf => Attached::Floor(FloorProbes::load(Floor::Btf).expect("floor")),
        Config::BtfFilter => Attached::Floor(FloorProbes::load(Floor::BtfFilter).expect("floor")),
        Config::Receiver => Attached::Receiver(Probes::load(&settings()).expect("load probes")),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Tracepoint and raw-tracepoint programs loaded by someone else: they disturb the figures.
fn foreign_programs() -> usize {
    let Ok(out) = Command::new("bpftool").args(["prog", "list"]).output() else {
        return 0;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(": tracepoint") || l.contains(": raw_tracepoint"))
        .count()
}

#[test]
#[ignore = "benchmark: prints figures, root only"]
fn non_socket_io_cost() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "must run as root");
    let rounds = env_or("BPF_COST_ROUNDS", 10);
    let count = env_or("BPF_COST_COUNT", 200_000);
    let runs = 3;
    let port = sink();
    let have_bpftrace = Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut configs = vec![Config::Baseline];
    if have_bpftrace {
        configs.push(Config::Bpftrace);
    }
    configs.extend([
        Config::FloorTp,
        Config::FloorRaw,
        Config::FloorBtf,
        Config::BtfFilter,
        Config::Receiver,
    ]);
    let foreign = foreign_programs();
    if foreign > 0 {
        println!(
            "warning: {foreign} tracepoint programs of other processes are loaded: figures are disturbed"
        );
    }
    let bin = build_loop();
    let _ = run(&bin, Workload::Untraced, count, port); // warm up
    // samples[config][workload] = CPU ns per syscall, wall ns per syscall
    let mut cpu = vec![vec![Vec::new(); WORKLOADS.len()]; configs.len()];
    let mut wall = vec![vec![Vec::new(); WORKLOADS.len()]; configs.len()];
    for round in 0..rounds {
        for k in 0..configs.len() {
            let ci = (k + round) % configs.len();
            let attached = attach(configs[ci]);
            for _ in 0..runs {
                for (wi, w) in WORKLOADS.iter().enumerate() {
                    let (wt, ct) = run(&bin, *w, count, port);
                    cpu[ci][wi].push(ct.as_nanos() as f64 / w.syscalls(count));
                    wall[ci][wi].push(wt.as_nanos() as f64 / w.syscalls(count));
                }
            }
            drop(attached);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    println!(
        "loop: {count} × (read 1 B /dev/zero + write 1 B /dev/null); getppid ×{count}; \
         {rounds} rounds × {runs} runs per configuration, interleaved; CPU (utime+stime) of \
         the measured process in ns per syscall; added = configuration − baseline (median; min)"
    );
    print!("{:<11}", "config");
    for w in WORKLOADS {
        print!(" {:>9} {:>15}", w.name(), "added");
    }
    println!();
    let stat = |ci: usize, wi: usize| {
        let mut v = cpu[ci][wi].clone();
        let med = median(&mut v);
        (med, v.first().copied().unwrap_or(f64::NAN))
    };
    for (ci, c) in configs.iter().enumerate() {
        print!("{:<11}", c.name());
        for wi in 0..WORKLOADS.len() {
            let (med, min) = stat(ci, wi);
            let (bmed, bmin) = stat(0, wi);
            print!(" {med:>9.1} {:>+7.1};{:>+7.1}", med - bmed, min - bmin);
        }
        println!();
    }
    println!("wall-clock medians (ns per syscall, noisier):");
    for (ci, c) in configs.iter().enumerate() {
        print!("  {:<11}", c.name());
        for (wi, w) in WORKLOADS.iter().enumerate() {
            print!(" {} {:>7.1}", w.name(), median(&mut wall[ci][wi].clone()));
        }
        println!();
    }
    for (ci, c) in configs.iter().enumerate() {
        for (wi, w) in WORKLOADS.iter().enumerate() {
            let mut v = cpu[ci][wi].clone();
            v.sort_by(f64::total_cmp);
            let s: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
            println!("  samples {:<11} {:<9} {}", c.name(), w.name(), s.join(" "));
        }
    }

    // Attribution: per-program average run time (kernel.bpf_stats_enabled, separate runs; the
    // stats add two clock reads per run, so compare programs with the empty ones here).
    const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let old = std::fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
    println!("per-program average run time (kernel.bpf_stats_enabled), ns per run:");
    for c in [
        Config::FloorTp,
        Config::FloorBtf,
        Config::BtfFilter,
        Config::Receiver,
    ] {
        for w in WORKLOADS {
            let attached = attach(c);
            std::fs::write(BPF_STATS, "1").expect("enable bpf stats");
            let _ = run(&bin, w, count, port);
            std::fs::write(BPF_STATS, old.trim()).expect("restore bpf stats");
            let stats = match &attached {
                Attached::Floor(f) => f.program_stats().expect("stats"),
                Attached::Receiver(p) => p.program_stats().expect("stats"),
                _ => Vec::new(),
            };
            let line: Vec<String> = stats
                .iter()
                .filter(|p| p.run_count >= count as u64 / 2)
                .map(|p| {
                    format!(
                        "{} {:.1} (×{})",
                        p.name,
                        p.run_time.as_nanos() as f64 / p.run_count as f64,
                        p.run_count
                    )
                })
                .collect();
            println!("  {:<11} {:<9} {}", c.name(), w.name(), line.join(", "));
        }
    }
}
