//! R11, least privilege: the real receiver runs as `nobody` (uid 65534) with exactly
//! CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (in its permitted, effective,
//! ambient and bounding sets, as the kernel reports them in `/proc/<pid>/status`) and traces a
//! real redis-server and redis-py clients through the stock Collector: a connection opened
//! before it started (found through `/proc` and `pidfd_getfd(2)`) and a new one, both sides,
//! with their network attributes, against the clients' own records. With any one of the four
//! removed (as `nobody` and as uid 0), `run` stops with exit 1 and a message naming that
//! capability before any bpf(2), perf_event_open(2) or socket(2) call (under `strace -f`), and
//! `check` reports it missing.
//!
//! Root only (`setpriv` drops what root has): built with `--features e2e` by
//! `cargo xtask test --file privilege_e2e`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use integration::check;
use integration::clients::redis::{self as rc, RedisStep, RedisVia};
use integration::clients::{PlanRun, Record, finish_plan};
use integration::collector::SpanView;
use integration::paths;
use integration::process::{free_port, is_root};
use integration::servers::redis::Redis;
use integration::world::{Checks, Side, World};

const NOBODY: u32 = 65534;

/// The four, as `setpriv` names them, with their capability numbers.
const FOUR: [(&str, &str, u32); 4] = [
    ("bpf", "CAP_BPF", 39),
    ("perfmon", "CAP_PERFMON", 38),
    ("sys_ptrace", "CAP_SYS_PTRACE", 19),
    ("dac_read_search", "CAP_DAC_READ_SEARCH", 2),
];

fn mask(caps: &[&str]) -> u64 {
    FOUR.iter()
        .filter(|(name, _, _)| caps.contains(name))
        .fold(0, |m, (_, _, bit)| m | 1u64 << bit)
}

/// `setpriv` arguments that exec the rest with exactly `caps`: as `uid` (ambient capabilities
/// carry them across exec for a non-root user), or as root with the rest taken out of the
/// bounding and inheritable sets (root's exec gets every bounding capability).
fn setpriv(uid: Option<u32>, caps: &[&str]) -> Vec<String> {
    let plus: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    let set = std::iter::once("-all".to_string())
        .chain(plus)
        .collect::<Vec<_>>()
        .join(",");
    let mut v = vec!["setpriv".to_string()];
    if let Some(uid) = uid {
        v.extend([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_string(),
            format!("--ambient-caps={set}"),
        ]);
    }
    v.push(format!("--inh-caps={set}"));
    v.push(format!("--bounding-set={set}"));
    v.push("--".to_string());
    v
}

/// `(name, hex mask)` of the `Cap*` lines and the `Uid:` line of `/proc/<pid>/status`.
fn proc_status(pid: u32) -> Result<(Vec<(String, u64)>, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let caps = status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| Some((k.to_string(), u64::from_str_radix(v.trim(), 16).ok()?)))?
        })
        .collect();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok((caps, uid))
}

fn is_redis(s: &SpanView) -> bool {
    s.str_attr("db.system.name") == Some("redis")
}

/// Both sides of one client connection: one span per command the client ran (its own records
/// say each succeeded), in order, with the connection's addresses.
fn check_connection(
    checks: &mut Checks,
    w: &mut World<Redis>,
    label: &str,
    run: &PlanRun,
    want: &[&str],
) -> Result<()> {
    let ran: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| {
            r.get("cmd")
                .and_then(|c| c.get(0))
                .and_then(|c| c.as_str())
                .is_some_and(|c| c != "PING")
        })
        .collect();
    ensure!(
        ran.len() == want.len() && ran.iter().all(|r| r.ok()),
        "{label}: the client's own records: {:?}",
        run.records
    );
    let port = run.local_port()?;
    let server_pid = w.server.pid();
    let redis_port = i64::from(w.server.port);
    for side in [Side::Client, Side::Server] {
        let pid = if side == Side::Client {
            run.pid()
        } else {
            server_pid
        };
        let relevant = |s: &SpanView| {
            s.pid() == Some(pid)
                && side.matches(s)
                && is_redis(s)
                && s.name != "PING"
                && (side == Side::Client
                    || s.int_attr("network.peer.port") == Some(i64::from(port)))
        };
        let spans = w.wait_spans(
            &format!("{label}: {} {} spans", want.len(), side.label()),
            relevant,
            |s| s.len() >= want.len(),
        )?;
        let mut spans = spans;
        spans.sort_by_key(|s| s.start_ns);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        check!(
            checks,
            names == want,
            "{label} {}: spans {names:?}, the client ran {want:?}",
            side.label()
        );
        for s in &spans {
            let ok = s.str_attr("network.transport") == Some("tcp")
                && s.str_attr("server.address") == Some("127.0.0.1")
                && s.int_attr("server.port") == Some(redis_port)
                && s.str_attr("network.peer.address") == Some("127.0.0.1");
            check!(
                checks,
                ok,
                "{label} {}: network attributes (resolved through pidfd_getfd or /proc): {}",
                side.label(),
                s.summary()
            );
        }
    }
    Ok(())
}

#[test]
fn four_capabilities_as_nobody_trace_redis_end_to_end() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = World::start("least_privilege", |dir| Redis::start(&dir.join("redis")))?;
    // Opened before the receiver: only /proc (DAC_READ_SEARCH) and pidfd_getfd (SYS_PTRACE)
    // tell it about this connection. Its first command tells the kernel the protocol and the
    // roles (a PING: its span may be absent, and PINGs are not counted).
    let before = [
        RedisStep::cmd(&["PING"]),
        RedisStep::cmd(&["SET", "r11-before", "1"]),
        RedisStep::cmd(&["INCR", "r11-before"]),
        RedisStep::cmd(&["GET", "r11-before"]),
    ];
    let mut held = rc::redis_py_held(&w.dir, "held", &w.server, &before)?;
    held.wait_ready(Duration::from_secs(30))?;

    let names: Vec<&str> = FOUR.iter().map(|(n, _, _)| *n).collect();
    let wrapper = setpriv(Some(NOBODY), &names);
    w.start_receiver_wrapped("", &wrapper)?;

    // What the kernel says the receiver runs with.
    let pid = w.receiver().pid();
    let (caps, uid) = proc_status(pid)?;
    let want = mask(&names);
    println!("receiver pid {pid}: Uid {uid}; {caps:x?} (want {want:#x})");
    check!(
        checks,
        uid == format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}"),
        "receiver uids `{uid}`, expected all {NOBODY}"
    );
    for set in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let got = caps.iter().find(|(k, _)| k == set).map(|(_, v)| *v);
        check!(
            checks,
            got == Some(want),
            "{set} {got:x?}, expected exactly the four ({want:#x})"
        );
    }

    held.go()?;
    let held_run = finish_plan(held, Duration::from_secs(60))?;
    let fresh = rc::redis_py(
        &w.dir,
        "fresh",
        &w.server,
        RedisVia::Tcp,
        &[
            RedisStep::cmd(&["SET", "r11-after", "v"]),
            RedisStep::cmd(&["GET", "r11-after"]),
            RedisStep::cmd(&["DEL", "r11-after"]),
        ],
    )?;
    check_connection(
        &mut checks,
        &mut w,
        "pre-existing connection",
        &held_run,
        &["SET", "INCR", "GET"],
    )?;
    check_connection(
        &mut checks,
        &mut w,
        "new connection",
        &fresh,
        &["SET", "GET", "DEL"],
    )?;
    w.check_no_loss(&mut checks);

    // `check` under the same privileges agrees.
    let out = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(paths::receiver_bin())
        .arg("check")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    check!(
        checks,
        out.status.success(),
        "`check` as nobody with the four: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for (_, cap, _) in FOUR {
        check!(
            checks,
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(&format!(" {cap} "))),
            "`check` does not report {cap} ok:\n{text}"
        );
    }
    w.done(checks)
}

/// What a receiver run with one capability fewer did.
struct Refusal {
    code: Option<i32>,
    stderr: String,
    /// bpf/perf_event_open/socket/... calls after the receiver's execve.
    kernel_calls: Vec<String>,
    took: Duration,
}

fn run_without(dir: &Path, config: &Path, uid: Option<u32>, caps: &[&str]) -> Result<Refusal> {
    let trace = dir.join("strace.out");
    let bin = paths::receiver_bin();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=execve,bpf,perf_event_open,socket,socketpair,bind,listen,connect,mount",
            "--",
        ])
        .args(setpriv(uid, caps))
        .arg(&bin)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let mut child = cmd.spawn().context("strace (is it installed?)")?;
    let mut pipe = child.stderr.take().context("stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut s);
        s
    });
    // The receiver either stops at once or, wrongly, runs: then it is killed at the deadline.
    let deadline = started + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = started.elapsed();
    let stderr = reader.join().unwrap_or_default();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let bin_name = bin.display().to_string();
    let kernel_calls = text
        .lines()
        .skip_while(|l| !(l.contains("execve(") && l.contains(&bin_name)))
        .skip(1)
        .filter(|l| l.contains('('))
        .map(str::to_string)
        .collect();
    Ok(Refusal {
        code: status.code(),
        stderr,
        kernel_calls,
        took,
    })
}

#[test]
fn each_missing_capability_stops_the_receiver_and_is_named() -> Result<()> {
    assert!(is_root(), "run through `cargo xtask test` (root)");
    let dir = paths::scratch_dir("missing_capability")?;
    let config = dir.join("receiver.yaml");
    std::fs::write(
        &config,
        format!(
            "exporter:\n  endpoint: \"http://127.0.0.1:{}\"\ntelemetry:\n  metrics_address: \"127.0.0.1:{}\"\n",
            free_port()?,
            free_port()?
        ),
    )?;
    let mut checks = Checks::default();
    let names: Vec<&str> = FOUR.iter().map(|(n, _, _)| *n).collect();
    for uid in [Some(NOBODY), None] {
        let who = uid.map_or("uid 0".to_string(), |u| format!("uid {u}"));
        for (drop, cap, _) in FOUR {
            let rest: Vec<&str> = names.iter().copied().filter(|n| *n != drop).collect();
            let r = run_without(&dir, &config, uid, &rest)?;
            let first = r.stderr.lines().next().unwrap_or("");
            println!(
                "{who:<9} without {cap:<20} exit {:?} in {:>5.1} ms: {first}",
                r.code,
                r.took.as_secs_f64() * 1e3
            );
            check!(
                checks,
                r.code == Some(1),
                "{who} without {cap}: exit {:?}, expected 1:\n{}",
                r.code,
                r.stderr
            );
            check!(
                checks,
                first.contains(&format!("missing {cap}: needed to")),
                "{who} without {cap}: the message does not name it: {first}"
            );
            for (_, other, _) in FOUR.iter().filter(|(n, _, _)| *n != drop) {
                check!(
                    checks,
                    !first.contains(&format!("missing {other}")),
                    "{who} without {cap}: also claims {other} is missing: {first}"
                );
            }
            check!(
                checks,
                r.kernel_calls.is_empty(),
                "{who} without {cap}: called the kernel before stopping: {:?}",
                r.kernel_calls
            );
            // `check` says the same.
            let wrapper = setpriv(uid, &rest);
            let out = Command::new(&wrapper[0])
                .args(&wrapper[1..])
                .arg(paths::receiver_bin())
                .arg("check")
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            check!(
                checks,
                !out.status.success()
                    && text
                        .lines()
                        .any(|l| l.starts_with("MISSING") && l.contains(&format!(" {cap} "))),
                "{who} without {cap}: `check` exited {} and printed:\n{text}",
                out.status
            );
        }
    }
    let r = checks.finish();
    if r.is_ok() {
        paths::remove_scratch_dir(&dir);
    } else {
        eprintln!("artefacts kept in {}", dir.display());
    }
    r
}

/// The test's own premise: this host runs `setpriv` and `strace`.
#[test]
fn the_tools_are_there() -> Result<()> {
    for tool in ["setpriv", "strace"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("`{tool}` is needed by the least-privilege tests (util-linux, strace)");
        }
    }
    Ok(())
}
