//! Shutdown and supervision (issue 8, R6 and "Supervision"):
//! - SIGKILL of the receiver leaves no attached program, link or map behind (they are owned by
//!   the process's file descriptors and die with it), and the next start traces again;
//! - a capture or export task that dies stops the process with a non-zero exit and a log line
//!   naming the task, instead of running on without capture or export.
//!
//! SIGTERM's flush (every queued span exported, within 3 s) is `mysql_e2e`'s
//! `f_sigterm_flushes_queued_spans`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use integration::check;
use integration::clients::redis as rc;
use integration::paths;
use integration::process::{Output, ProcessGuard, free_port, poll_until, run_capture};
use integration::receiver::test_config;
use integration::servers::redis::Redis;
use integration::world::{Checks, Side, World};
use serde_json::Value;

/// `(kind, id)` of every BPF program, link and map `pid` holds a file descriptor of
/// (`/proc/<pid>/fdinfo/*`: `prog_id:`, `link_id:`, `map_id:`).
fn bpf_objects_of(pid: u32) -> Result<Vec<(&'static str, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        for line in info.lines() {
            for (key, kind) in [
                ("prog_id:", "prog"),
                ("link_id:", "link"),
                ("map_id:", "map"),
            ] {
                if let Some(id) = line.strip_prefix(key).and_then(|v| v.trim().parse().ok()) {
                    out.push((kind, id));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Which of `objects` the kernel still has (`bpftool -j prog|link|map show`; ids are not
/// reused this soon).
fn still_there(objects: &[(&'static str, u64)]) -> Result<Vec<(&'static str, u64)>> {
    let mut left = Vec::new();
    for kind in ["prog", "link", "map"] {
        let mut cmd = Command::new("bpftool");
        cmd.args(["-j", kind, "show"]);
        let json: Value = serde_json::from_str(&run_capture(cmd)?)
            .with_context(|| format!("bpftool {kind} show"))?;
        let ids: Vec<u64> = json
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["id"].as_u64())
            .collect();
        left.extend(
            objects
                .iter()
                .filter(|(k, id)| *k == kind && ids.contains(id))
                .copied(),
        );
    }
    Ok(left)
}

/// One `SET` from redis-cli and its SERVER span: the receiver traces.
fn traces(w: &mut World<Redis>, key: &str) -> Result<()> {
    let run = rc::cli(&w.dir, key, &w.server, &["SET", key, "v"])?;
    run.ensure_success()?;
    let pid = w.server.pid();
    w.spans_from(pid, Side::Server, "SET", |s| {
        s.iter()
            .any(|s| s.name == "SET" && s.start_ns >= run.start_unix_ns)
    })?;
    Ok(())
}

#[test]
fn a_sigkill_leaves_no_program_link_or_map_and_the_next_start_traces() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = World::start("lifecycle_sigkill", |d| Redis::start(&d.join("redis")))?;
    w.start_receiver()?;
    traces(&mut w, "before")?;
    let pid = w.receiver().pid();
    let objects = bpf_objects_of(pid)?;
    let progs = objects.iter().filter(|(k, _)| *k == "prog").count();
    let links = objects.iter().filter(|(k, _)| *k == "link").count();
    eprintln!(
        "[lifecycle] receiver {pid} holds {progs} programs, {links} links, {} maps",
        objects.len() - progs - links
    );
    check!(
        checks,
        progs > 0 && links > 0,
        "bpftool shows no programs or links of pid {pid}: {objects:?}"
    );
    w.receiver_mut().kill()?;
    let killed = Instant::now();
    // The kernel frees them once the last reference goes (asynchronously, after an RCU grace
    // period): poll.
    let left = poll_until(
        "the killed receiver's BPF objects to go",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let left = still_there(&objects)?;
            Ok(left.is_empty().then_some(()))
        },
    );
    match left {
        Ok(()) => eprintln!(
            "[lifecycle] all {} objects gone {:?} after SIGKILL",
            objects.len(),
            killed.elapsed()
        ),
        Err(e) => checks.fail(format!(
            "after SIGKILL: {e:#}; still there: {:?}",
            still_there(&objects)?
        )),
    }
    w.start_receiver()?;
    traces(&mut w, "after")?;
    w.done(checks)
}

/// Starts the receiver with `EBPF_RECEIVER_FAULT=fault` against a Collector port nobody
/// listens on; returns its exit status, how long it ran and its log.
fn run_with_fault(
    w: &World<()>,
    fault: &str,
) -> Result<(std::process::ExitStatus, Duration, String)> {
    let dir = w.subdir(fault)?;
    let config = dir.join("receiver.yaml");
    std::fs::write(&config, test_config(&w.collector.endpoint(), free_port()?))?;
    let mut cmd = Command::new(paths::receiver_bin());
    cmd.arg("--config")
        .arg(&config)
        .env("EBPF_RECEIVER_FAULT", fault);
    let log = dir.join("receiver.log");
    let started = Instant::now();
    let mut guard = ProcessGuard::spawn("ebpf-receiver", cmd, Output::File(log.clone()))?;
    let status = guard.wait_timeout(Duration::from_secs(30))?;
    Ok((status, started.elapsed(), std::fs::read_to_string(&log)?))
}

#[test]
fn b_a_dead_capture_or_export_task_stops_the_process_non_zero() -> Result<()> {
    let mut checks = Checks::default();
    let w = World::start("lifecycle_supervision", |_| Ok(()))?;
    for (fault, task) in [("capture", "capture"), ("export", "export")] {
        let (status, took, log) = run_with_fault(&w, fault)?;
        eprintln!("[lifecycle] {task} task failed: exit {status} after {took:?}");
        check!(
            checks,
            !status.success() && status.code().is_some(),
            "{task}: exit status {status} (want a non-zero exit code); log:\n{log}"
        );
        check!(
            checks,
            log.contains(&format!("the {task} task stopped unexpectedly")),
            "{task}: the log does not name the task:\n{log}"
        );
    }
    w.done(checks)
}
