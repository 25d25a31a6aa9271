//! What the benchmark reads from `/proc`: CPU time of a process and everything it forked,
//! memory high-water marks, CPU affinity, and the BPF maps and programs a process holds.
//!
//! CPU of a process tree = Σ over the live tree of `utime + stime + cutime + cstime`
//! (`/proc/<pid>/stat` fields 14–17; a thread-group leader's fields cover all its threads, and
//! `cutime/cstime` hold the children it has already reaped, e.g. PostgreSQL backends that
//! exited). Deltas of this sum between two samples are the tree's CPU in between, as long as no
//! member of the tree is reaped by a process outside it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// `(ppid, own cpu s, reaped children cpu s, state)` of one process.
fn stat_of(pid: u32) -> Option<(u32, f64, f64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let hz = hz();
    Some((
        num(1) as u32,
        (num(11) + num(12)) as f64 / hz,
        (num(13) + num(14)) as f64 / hz,
        f.first()?.chars().next()?,
    ))
}

/// Every process on the host: pid → ppid.
fn parents() -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, ..)) = stat_of(pid) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// `roots` and all their live descendants, sorted.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let parents = parents();
    let mut out: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| parents.contains_key(p))
        .collect();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| **pp == p)
                .map(|(c, _)| *c)
                .filter(|c| !out.contains(c))
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    out.sort_unstable();
    out
}

/// CPU seconds (user + system, with reaped children) of `roots` and their live descendants.
pub fn tree_cpu(roots: &[u32]) -> f64 {
    tree(roots)
        .iter()
        .filter_map(|p| stat_of(*p))
        .map(|(_, own, reaped, _)| own + reaped)
        .sum()
}

/// CPU seconds of one process (all its threads), without children.
pub fn own_cpu(pid: u32) -> f64 {
    stat_of(pid).map_or(0.0, |(_, own, ..)| own)
}

/// Waits until child `pid` has exited but is not reaped yet (a zombie, whose `/proc/<pid>/stat`
/// still holds its final CPU times), up to `timeout`. The caller reaps it afterwards.
pub fn wait_exited_unreaped(pid: u32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: waitid writes into the zeroed siginfo we pass; WNOWAIT leaves the child
        // waitable, so the owner of its `Child` still reaps it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read for a SIGCHLD-style siginfo filled by waitid.
        if rc == 0 && unsafe { info.si_pid() } as u32 == pid {
            return Ok(());
        }
        if rc != 0 {
            bail!("waitid({pid}) failed: {}", std::io::Error::last_os_error());
        }
        if Instant::now() >= deadline {
            bail!("process {pid} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pins every thread of every process in `pids` (and their descendants) to `cpus`
/// (`taskset -a -p -c <cpus> <pid>`); `None` = all CPUs.
pub fn pin_tree(roots: &[u32], cpus: Option<&str>) -> Result<()> {
    let all = format!("0-{}", online_cpus().saturating_sub(1));
    let list = cpus.unwrap_or(&all);
    for pid in tree(roots) {
        let out = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", list])
            .arg(pid.to_string())
            .output()
            .context("taskset")?;
        // A process may exit meanwhile (a backend); only a failure on a live one matters.
        if !out.status.success() && stat_of(pid).is_some() {
            bail!(
                "taskset -a -p -c {list} {pid}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Number of online CPUs.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A BPF object (map or program) held by a process, from `/proc/<pid>/fdinfo`.
#[derive(Clone, Debug, Default)]
pub struct BpfObject {
    pub id: u64,
    pub kind: String,
    pub memlock: u64,
    /// Programs only: cumulative run time and count (non-zero with `kernel.bpf_stats_enabled`).
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The BPF maps (`map_id`, `memlock` as `bpftool map show` reports it) and programs
/// (`prog_id`, `run_time_ns`, `run_cnt`) that `pid` holds fds of, deduplicated by id.
pub fn bpf_objects(pid: u32) -> (Vec<BpfObject>, Vec<BpfObject>) {
    let mut maps: BTreeMap<u64, BpfObject> = BTreeMap::new();
    let mut progs: BTreeMap<u64, BpfObject> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (Vec::new(), Vec::new());
    };
    for e in dir.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        let is_map = link == "anon_inode:bpf-map";
        let is_prog = link == "anon_inode:bpf-prog";
        if !is_map && !is_prog {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let num = |k: &str| field(k).parse::<u64>().unwrap_or(0);
        if is_map {
            let id = num("map_id:");
            maps.insert(
                id,
                BpfObject {
                    id,
                    kind: field("map_type:"),
                    memlock: num("memlock:"),
                    ..BpfObject::default()
                },
            );
        } else {
            let id = num("prog_id:");
            progs.insert(
                id,
                BpfObject {
                    id,
                    kind: field("prog_type:"),
                    memlock: num("memlock:"),
                    run_time_ns: num("run_time_ns:"),
                    run_cnt: num("run_cnt:"),
                },
            );
        }
    }
    (maps.into_values().collect(), progs.into_values().collect())
}

/// Program names by id, from `bpftool prog show -j` (empty when bpftool is missing).
pub fn bpf_prog_names() -> BTreeMap<u64, String> {
    let Ok(out) = std::process::Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
    else {
        return BTreeMap::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get("id")?.as_u64()?, p.get("name")?.as_str()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_cpu_counts_this_process() {
        let me = std::process::id();
        // Burn a little CPU so the sum is positive.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        assert!(tree(&[me]).contains(&me));
        assert!(tree_cpu(&[me]) > 0.0);
        assert!(crate::load::proc_sample(me).is_ok_and(|p| p.vm_hwm_kib > 0));
        assert!(tree(&[u32::MAX]).is_empty());
    }

    #[test]
    fn zombie_cpu_is_readable_before_reaping() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .expect("spawn");
        let pid = child.id();
        wait_exited_unreaped(pid, Duration::from_secs(30)).expect("exited");
        let cpu = own_cpu(pid);
        assert!(child.wait().expect("reap").success());
        assert!(cpu > 0.0, "{cpu}");
    }
}
