//! The configurations compared in one run, interleaved:
//!
//! | name | what runs beside the workload |
//! |---|---|
//! | `baseline` | nothing |
//! | `receiver` | the receiver, full pipeline (kernel inference, parsers, OTLP/gRPC) to the stock Collector |
//! | `receiver-sink` | the same pipeline exporting to an accept-and-count OTLP/gRPC sink (`receiver/examples/otlp_sink.rs`) instead of the Collector: the receiver's own cost, without the Collector's 5–9 µs per span on the same CPUs |
//! | `no-inference` | the same with `ebpf.kernel_inference: false`: every read/write of every tracked socket goes to user space, inferred there (the "traditional pipeline"); unavailable when the receiver rejects the key |
//! | `empty-programs` | `bpftrace` with an empty action on every tracepoint `ebpf-receiver check --list-tracepoints` prints: the floor of any design on those tracepoints |
//! | `tshark` | `tshark -i lo -f 'tcp port P' -d tcp.port==P,<proto> -Y <proto> -T fields …` to /dev/null: packet capture decoding the same protocol |
//!
//! The receiver runs with the shipped defaults except where it exports to (the bench
//! Collector), its metrics port, `log_level: warn`, and `targets` (see [`super::Scope`]): the
//! workload's server pids, or every process but the harness, the Collector and the load
//! generator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::procs;
use crate::process::{Output, ProcessGuard, free_port, poll_until};
use crate::receiver::{Metrics, Receiver};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Config {
    Baseline,
    Receiver,
    ReceiverSink,
    NoInference,
    EmptyPrograms,
    Tshark,
}

impl Config {
    pub const ALL: &'static [Config] = &[
        Config::Baseline,
        Config::Receiver,
        Config::ReceiverSink,
        Config::NoInference,
        Config::EmptyPrograms,
        Config::Tshark,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Config::Baseline => "baseline",
            Config::Receiver => "receiver",
            Config::ReceiverSink => "receiver-sink",
            Config::NoInference => "no-inference",
            Config::EmptyPrograms => "empty-programs",
            Config::Tshark => "tshark",
        }
    }

    pub fn parse(s: &str) -> Option<Config> {
        Config::ALL.iter().copied().find(|c| c.name() == s)
    }

    pub fn is_receiver(self) -> bool {
        matches!(
            self,
            Config::Receiver | Config::ReceiverSink | Config::NoInference
        )
    }
}

/// What the configurations need to start.
pub struct Env {
    pub receiver_bin: PathBuf,
    pub collector_endpoint: String,
    /// The accept-and-count sink's endpoint (`receiver-sink`), when the run has one.
    pub sink_endpoint: Option<String>,
    /// `category:name` lines of `ebpf-receiver check --list-tracepoints`.
    pub tracepoints: Vec<String>,
    /// Why `no-inference` cannot run (the receiver's validation error), if it cannot.
    pub no_inference_unavailable: Option<String>,
}

/// The receiver's YAML for the bench.
pub fn receiver_yaml(
    endpoint: &str,
    metrics_port: u16,
    exclude_pids: &[u32],
    include_pids: &[u32],
    no_inference: bool,
) -> String {
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let mut y = String::from("# Written by `cargo xtask bench`.\n");
    if no_inference {
        y.push_str("ebpf:\n  kernel_inference: false\n");
    }
    y.push_str(&format!(
        "targets:\n  pids: [{}]\n  exclude_pids: [{}]\n\
         exporter:\n  endpoint: \"{endpoint}\"\n\
         telemetry:\n  metrics_address: \"127.0.0.1:{metrics_port}\"\n  log_level: warn\n",
        list(include_pids),
        list(exclude_pids)
    ));
    y
}

/// `None` when the receiver accepts `ebpf.kernel_inference: false`, else its error.
pub fn probe_no_inference(receiver_bin: &Path, dir: &Path) -> Option<String> {
    let path = dir.join("probe-no-inference.yaml");
    let yaml = receiver_yaml("http://127.0.0.1:4317", 9464, &[], &[], true);
    if let Err(e) = std::fs::write(&path, yaml) {
        return Some(format!("cannot write {}: {e}", path.display()));
    }
    match Command::new(receiver_bin)
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            // `error: <file>:3:3: `ebpf.kernel_inference`: unknown key …`: keep the reason.
            let text = String::from_utf8_lossy(&o.stderr);
            let line = text.lines().next().unwrap_or("rejected").trim();
            let reason = line
                .find("`ebpf.kernel_inference`")
                .map_or(line, |i| &line[i..]);
            let reason = reason.split(", expected").next().unwrap_or(reason);
            let reason = reason.split("; the keys here").next().unwrap_or(reason);
            Some(format!("the receiver rejects it: {reason}"))
        }
        Err(e) => Some(format!("cannot run the receiver: {e}")),
    }
}

/// The tracepoints the receiver attaches to.
pub fn list_tracepoints(receiver_bin: &Path) -> Result<Vec<String>> {
    let out = Command::new(receiver_bin)
        .args(["check", "--list-tracepoints"])
        .output()
        .context("ebpf-receiver check --list-tracepoints")?;
    if !out.status.success() {
        bail!(
            "`ebpf-receiver check --list-tracepoints` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.split(':').count() == 2)
        .map(String::from)
        .collect();
    if v.is_empty() {
        bail!("`ebpf-receiver check --list-tracepoints` printed no tracepoint");
    }
    Ok(v)
}

/// Whether this tshark has a dissector named `proto` (`tshark -G protocols`, third column).
pub fn tshark_has_dissector(proto: &str) -> bool {
    Command::new("tshark")
        .args(["-G", "protocols"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split('\t').nth(2) == Some(proto))
        })
}

/// A running configuration.
pub enum Active {
    Nothing,
    Receiver(Receiver),
    Bpftrace(ProcessGuard),
    Tshark {
        guard: ProcessGuard,
        stderr: PathBuf,
    },
}

/// What a configuration reported when it stopped.
#[derive(Clone, Debug, Default)]
pub struct Stopped {
    pub tshark_packets: Option<u64>,
    pub tshark_dropped: Option<u64>,
    pub receiver_clean_exit: Option<bool>,
}

/// How to start a configuration for one run.
pub struct StartArgs<'a> {
    pub dir: &'a Path,
    pub exclude_pids: &'a [u32],
    /// Only these pids traced (empty = the whole host less the excluded ones).
    pub include_pids: &'a [u32],
    /// Server port (tshark's capture filter).
    pub port: u16,
    /// tshark: decode-as protocol, display filter, fields.
    pub tshark: (&'a str, &'a str, &'a [&'a str]),
    /// CPUs for the tool (`taskset -c` list), `None` = all.
    pub cpus: Option<&'a str>,
}

pub fn start(cfg: Config, env: &Env, a: &StartArgs) -> Result<Active> {
    let active = match cfg {
        Config::Baseline => Active::Nothing,
        Config::Receiver | Config::ReceiverSink | Config::NoInference => {
            let endpoint = if cfg == Config::ReceiverSink {
                env.sink_endpoint
                    .as_deref()
                    .context("receiver-sink without a running sink")?
            } else {
                &env.collector_endpoint
            };
            if cfg == Config::NoInference
                && let Some(why) = &env.no_inference_unavailable
            {
                bail!("no-inference unavailable: {why}");
            }
            let metrics_port = free_port()?;
            let path = a.dir.join("receiver.yaml");
            std::fs::write(
                &path,
                receiver_yaml(
                    endpoint,
                    metrics_port,
                    a.exclude_pids,
                    a.include_pids,
                    cfg == Config::NoInference,
                ),
            )?;
            // The harness's `Receiver` starts `paths::receiver_bin()`, which xtask sets.
            let r = Receiver::start_with_config(
                &path,
                metrics_port,
                Output::File(a.dir.join("receiver.log")),
            )?;
            Active::Receiver(r)
        }
        Config::EmptyPrograms => {
            let script = a.dir.join("empty.bt");
            let probes: Vec<String> = env
                .tracepoints
                .iter()
                .map(|t| format!("tracepoint:{t}"))
                .collect();
            std::fs::write(&script, format!("{} {{ }}\n", probes.join(",\n")))?;
            let mut c = Command::new("bpftrace");
            c.arg(&script);
            let g = ProcessGuard::spawn("bpftrace", c, Output::File(a.dir.join("bpftrace.log")))?
                .with_stop_signal(libc::SIGINT)
                // Detaching 37 probes under load can take a while.
                .with_grace(Duration::from_secs(30));
            let pid = g.pid();
            let want = probes.len();
            let mut g = g;
            poll_until(
                "bpftrace to attach every probe",
                Duration::from_secs(120),
                Duration::from_millis(50),
                || {
                    g.ensure_running()?;
                    Ok((perf_event_fds(pid) >= want).then_some(()))
                },
            )?;
            Active::Bpftrace(g)
        }
        Config::Tshark => {
            let (proto, filter, fields) = a.tshark;
            let mut c = Command::new("tshark");
            c.args(["-i", "lo", "-n", "-l", "-f"])
                .arg(format!("tcp port {}", a.port))
                .arg("-d")
                .arg(format!("tcp.port=={},{proto}", a.port))
                .args(["-Y", filter, "-T", "fields"]);
            for f in fields {
                c.arg("-e").arg(f);
            }
            // dumpcap's temporary capture file goes here, removed with the run directory.
            c.env("TMPDIR", a.dir);
            let stderr = a.dir.join("tshark.err");
            let g = ProcessGuard::spawn(
                "tshark",
                c,
                Output::Split {
                    stdout: PathBuf::from("/dev/null"),
                    stderr: stderr.clone(),
                },
            )?
            .with_stop_signal(libc::SIGINT)
            .with_grace(Duration::from_secs(30));
            let mut g = g;
            let err = stderr.clone();
            poll_until(
                "tshark to start capturing",
                Duration::from_secs(60),
                Duration::from_millis(50),
                || {
                    g.ensure_running()?;
                    let text = std::fs::read_to_string(&err).unwrap_or_default();
                    Ok(
                        (text.contains("Capturing on") && procs::tree(&[g.pid()]).len() >= 2)
                            .then_some(()),
                    )
                },
            )?;
            // dumpcap opens the interface just after announcing it.
            std::thread::sleep(Duration::from_millis(300));
            Active::Tshark { guard: g, stderr }
        }
    };
    let roots = active.roots();
    if !roots.is_empty() {
        procs::pin_tree(&roots, a.cpus)?;
    }
    Ok(active)
}

/// `anon_inode:[perf_event]` fds of a process (one per attached tracepoint for bpftrace).
fn perf_event_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[perf_event]")
                })
                .count()
        })
        .unwrap_or(0)
}

impl Active {
    /// Process tree roots whose CPU is the configuration's own cost.
    pub fn roots(&self) -> Vec<u32> {
        match self {
            Active::Nothing => Vec::new(),
            Active::Receiver(r) => vec![r.pid()],
            Active::Bpftrace(g) => vec![g.pid()],
            Active::Tshark { guard, .. } => vec![guard.pid()],
        }
    }

    pub fn receiver(&self) -> Option<&Receiver> {
        match self {
            Active::Receiver(r) => Some(r),
            _ => None,
        }
    }

    pub fn metrics(&self) -> Option<Metrics> {
        self.receiver().and_then(|r| r.metrics().ok())
    }

    /// Stops the configuration (the receiver flushes on SIGTERM; tshark prints its counts on
    /// SIGINT).
    pub fn stop(self) -> Stopped {
        match self {
            Active::Nothing => Stopped::default(),
            Active::Receiver(mut r) => Stopped {
                receiver_clean_exit: Some(r.stop()),
                ..Stopped::default()
            },
            Active::Bpftrace(mut g) => {
                g.stop();
                Stopped::default()
            }
            Active::Tshark { mut guard, stderr } => {
                guard.stop();
                let text = std::fs::read_to_string(&stderr).unwrap_or_default();
                let (packets, dropped) = tshark_counts(&text);
                Stopped {
                    tshark_packets: packets,
                    tshark_dropped: dropped.or(packets.map(|_| 0)),
                    receiver_clean_exit: None,
                }
            }
        }
    }
}

/// `N packets captured` and `N packets dropped…` from tshark's stderr.
fn tshark_counts(text: &str) -> (Option<u64>, Option<u64>) {
    let count = |word: &str| {
        text.lines().find_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(' ')?;
            (rest.starts_with("packet") && rest.contains(word))
                .then(|| n.parse::<u64>().ok())
                .flatten()
        })
    };
    (count("captured"), count("dropped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_has_the_keys() {
        let y = receiver_yaml("http://127.0.0.1:1", 2, &[3, 4], &[], true);
        assert!(y.contains("kernel_inference: false"));
        assert!(y.contains("exclude_pids: [3, 4]"));
        assert!(y.contains("pids: []"));
        assert!(!receiver_yaml("e", 2, &[], &[9], false).contains("kernel_inference"));
    }

    #[test]
    fn tshark_stderr() {
        let t = "Capturing on 'Loopback: lo'\n ** (tshark:1) [Main MESSAGE] -- Capture started.\n1234 packets captured\n5 packets dropped from lo\n";
        assert_eq!(tshark_counts(t), (Some(1234), Some(5)));
        assert_eq!(tshark_counts("0 packets captured\n"), (Some(0), None));
    }
}
