//! The added cost per syscall of processes the receiver does not trace and of a traced process's
//! I/O on fds that are not sockets: `dd if=/dev/zero of=/dev/null bs=1 count=1000000` (a million
//! reads and as many writes), its user+system CPU from `wait4` (µs resolution), in four
//! configurations interleaved round by round:
//!
//! - `none`: nothing attached;
//! - `empty-programs`: bpftrace, empty actions on every tracepoint the receiver uses (the floor);
//! - `receiver, dd untraced`: the receiver with `targets.pids` naming another process only;
//! - `receiver, dd traced`: the receiver tracing the whole host (dd included: its fds are files).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::configs::{self, Config, Env, StartArgs};
use super::report::median;
use crate::process::{Output, ProcessGuard};

pub const SYSCALLS_PER_RUN: f64 = 2_000_000.0;
const RUNS_PER_ROUND: usize = 3;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub config: String,
    /// CPU (user + system) of each dd run, ms.
    pub cpu_ms: Vec<f64>,
    pub wall_ms: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SyscallCost {
    pub rows: Vec<Row>,
}

impl SyscallCost {
    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.config == name)
    }

    /// Median added ns per syscall of `name` over `none` (CPU time).
    pub fn added_ns(&self, name: &str) -> Option<f64> {
        let base = median(&self.row("none")?.cpu_ms);
        let v = median(&self.row(name)?.cpu_ms);
        Some((v - base) * 1e6 / SYSCALLS_PER_RUN)
    }

    /// Range of the added ns per syscall (min and max run against the median of `none`).
    pub fn added_range(&self, name: &str) -> Option<(f64, f64)> {
        let base = median(&self.row("none")?.cpu_ms);
        let r = self.row(name)?;
        let lo = r.cpu_ms.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.cpu_ms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((
            (lo - base) * 1e6 / SYSCALLS_PER_RUN,
            (hi - base) * 1e6 / SYSCALLS_PER_RUN,
        ))
    }
}

pub const NONE: &str = "none";
pub const EMPTY: &str = "empty-programs";
pub const UNTRACED: &str = "receiver, dd untraced";
pub const TRACED: &str = "receiver, dd traced (file I/O)";

/// One dd run: (CPU ms, wall ms).
fn dd() -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let child = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("dd")?;
    let pid = child.id() as libc::pid_t;
    // Reaped here with its rusage; the `Child` is dropped without waiting.
    let mut status = 0;
    // SAFETY: wait4 writes into the zeroed rusage and the status int we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    drop(child);
    if rc != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("dd failed (wait4 {rc}, status {status})");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Ok((
        tv(ru.ru_utime) + tv(ru.ru_stime),
        t0.elapsed().as_secs_f64() * 1e3,
    ))
}

pub fn measure(env: &Env, out: &Path, rounds: usize) -> Result<SyscallCost> {
    let dir = out.join("runs").join("syscall-cost");
    std::fs::create_dir_all(&dir)?;
    // A process that does nothing: the receiver's only target when dd must stay untraced.
    let mut sleeper_cmd = Command::new("sleep");
    sleeper_cmd.arg("3600");
    let sleeper = ProcessGuard::spawn("sleep", sleeper_cmd, Output::File(dir.join("sleep.log")))?;
    let names = [NONE, EMPTY, UNTRACED, TRACED];
    let mut rows: Vec<Row> = names
        .iter()
        .map(|n| Row {
            config: n.to_string(),
            cpu_ms: Vec::new(),
            wall_ms: Vec::new(),
        })
        .collect();
    let _ = dd()?; // warm-up
    let me = std::process::id();
    for round in 1..=rounds {
        for (i, name) in names.iter().enumerate() {
            let (cfg, include): (Config, Vec<u32>) = match *name {
                NONE => (Config::Baseline, vec![]),
                EMPTY => (Config::EmptyPrograms, vec![]),
                UNTRACED => (Config::Receiver, vec![sleeper.pid()]),
                _ => (Config::Receiver, vec![]),
            };
            let active = configs::start(
                cfg,
                env,
                &StartArgs {
                    dir: &dir,
                    exclude_pids: &[me],
                    include_pids: &include,
                    port: 0,
                    tshark: ("", "", &[]),
                    cpus: None,
                },
            )?;
            // Let start-up work (seeding existing sockets) settle.
            std::thread::sleep(Duration::from_millis(300));
            for _ in 0..RUNS_PER_ROUND {
                let (cpu, wall) = dd()?;
                rows[i].cpu_ms.push(cpu);
                rows[i].wall_ms.push(wall);
            }
            active.stop();
        }
        let c = SyscallCost { rows: rows.clone() };
        println!(
            "[bench]   round {round}/{rounds}: added ns per syscall (median CPU) empty {:+.0}, untraced {:+.0}, traced file I/O {:+.0}",
            c.added_ns(EMPTY).unwrap_or(f64::NAN),
            c.added_ns(UNTRACED).unwrap_or(f64::NAN),
            c.added_ns(TRACED).unwrap_or(f64::NAN)
        );
    }
    Ok(SyscallCost { rows })
}
