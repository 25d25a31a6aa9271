//! One end-to-end test's world: a scratch directory `target/e2e/<run>/<test>/`, the server(s)
//! under test (any [`Server`]: one server, a tuple, a `Vec`, or `()`), the stock Collector with
//! the file exporter, and the receiver (started when the test says so). Spans are read back from
//! the Collector; failed checks accumulate in [`Checks`] so one run reports every problem.
//!
//! ```no_run
//! use integration::servers::redis::Redis;
//! use integration::world::{Checks, Side, World};
//! use integration::{check, clients};
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut w = World::start("redis_ping", Redis::start)?;
//! w.start_receiver()?;
//! let run = clients::redis::cli(&w.dir, "ping", &w.server, &["PING"])?;
//! let spans = w.spans_from(run.pid, Side::Client, "the PING span", |s| !s.is_empty())?;
//! let mut checks = Checks::default();
//! check!(checks, spans[0].name == "PING", "span name: {}", spans[0].summary());
//! w.done(checks)
//! # }
//! ```
//!
//! On drop: the receiver gets SIGTERM (it flushes). A world that passed ([`World::done`] with no
//! failed check) stops its server(s) and the Collector and deletes its directory; any other
//! world prints the receiver's log tail and metrics and the servers' log tails, and keeps every
//! artefact (Collector output `spans.jsonl`, logs, client outputs and plans) in its directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::collector::{Collector, SpanView};
use crate::paths;
use crate::process::{free_port, is_root};
use crate::receiver::{LOSS_COUNTERS, Receiver};
use crate::servers::Server;

/// How long tests wait for expected spans.
pub const SPAN_TIMEOUT: Duration = Duration::from_secs(20);

/// Failed checks, collected so that one run reports every problem, not only the first.
#[derive(Debug, Default)]
pub struct Checks(pub Vec<String>);

impl Checks {
    /// Records the error of a failed check.
    pub fn add(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.0.push(format!("{e:#}"));
        }
    }

    /// Records a failure message.
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.0.push(msg.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when every check passed, else one error listing them all.
    pub fn finish(self) -> Result<()> {
        ensure!(
            self.0.is_empty(),
            "{} check(s) failed:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
        Ok(())
    }
}

/// `ensure!` that records into a [`Checks`] instead of returning:
/// `check!(checks, cond, "format {}", args)`.
#[macro_export]
macro_rules! check {
    ($c:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $c.fail(format!($($arg)+));
        }
    };
}

/// Which end of an exchange a span describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `SPAN_KIND_CLIENT`: the process that sent the request.
    Client,
    /// `SPAN_KIND_SERVER`: the process that answered it.
    Server,
}

impl Side {
    pub fn matches(self, s: &SpanView) -> bool {
        match self {
            Side::Client => s.is_client(),
            Side::Server => s.is_server(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Side::Client => "CLIENT",
            Side::Server => "SERVER",
        }
    }
}

/// The test's world; see the module docs.
pub struct World<S: Server = ()> {
    pub name: String,
    /// `target/e2e/<run>/<name>/`: give it to servers and clients for their files.
    pub dir: PathBuf,
    pub server: S,
    pub collector: Collector,
    receiver: Option<Receiver>,
    /// Set by [`World::done`] when every check passed: the directory is removed on drop.
    passed: bool,
}

impl<S: Server> World<S> {
    /// Creates the scratch dir, starts the server(s) with `server(dir)` (e.g. `Redis::start`,
    /// `|d| Postgres::start(&d.join("pg"))`, `|_| Ok(())`), then the Collector. The receiver is
    /// not started yet (a test may open connections first): [`start_receiver`](Self::start_receiver).
    /// Panics unless root (the e2e tests need it; run them through `cargo xtask test`).
    pub fn start(name: &str, server: impl FnOnce(&Path) -> Result<S>) -> Result<World<S>> {
        World::start_with_collector(name, server, Collector::start_test)
    }

    /// As [`start`](Self::start) with another Collector: `collector(dir, otlp_port)` (e.g. the
    /// sidecar's span-metrics pipeline, [`crate::span_metrics`]).
    pub fn start_with_collector(
        name: &str,
        server: impl FnOnce(&Path) -> Result<S>,
        collector: impl FnOnce(&Path, u16) -> Result<Collector>,
    ) -> Result<World<S>> {
        assert!(
            is_root(),
            "the e2e tests need root (eBPF); run them through `cargo xtask test`"
        );
        let dir = paths::scratch_dir(name)?;
        eprintln!("[e2e:{name}] scratch dir {}", dir.display());
        let server = server(&dir)?;
        let collector = collector(&dir, free_port()?)?;
        Ok(World {
            name: name.to_string(),
            dir,
            server,
            collector,
            receiver: None,
            passed: false,
        })
    }

    /// [`start`](Self::start), then [`start_receiver`](Self::start_receiver).
    pub fn with_receiver(name: &str, server: impl FnOnce(&Path) -> Result<S>) -> Result<World<S>> {
        let mut w = World::start(name, server)?;
        w.start_receiver()?;
        Ok(w)
    }

    /// Starts the receiver with the test config (`receiver::test_config`: export to this
    /// Collector with a 50 ms batch delay, whole host traced) and waits for `/readyz`.
    pub fn start_receiver(&mut self) -> Result<()> {
        self.start_receiver_with("")
    }

    /// As [`start_receiver`](Self::start_receiver) with `extra_yaml` appended to the config
    /// (top-level sections the test config does not set, e.g.
    /// `"protocols:\n  http: true\n"` or `"targets:\n  exclude_ports: [22]\n"`).
    pub fn start_receiver_with(&mut self, extra_yaml: &str) -> Result<()> {
        self.start_receiver_with_exporter("", extra_yaml)
    }

    /// As [`start_receiver_with`](Self::start_receiver_with) with more `exporter:` keys, one
    /// `key: value` per line (`"max_queue_bytes: 262144"`).
    pub fn start_receiver_with_exporter(
        &mut self,
        exporter_keys: &str,
        extra_yaml: &str,
    ) -> Result<()> {
        self.receiver = Some(Receiver::start_with_exporter(
            &self.dir,
            &self.collector.endpoint(),
            free_port()?,
            exporter_keys,
            extra_yaml,
        )?);
        eprintln!("[e2e:{}] receiver ready", self.name);
        Ok(())
    }

    /// As [`start_receiver_with`](Self::start_receiver_with), the receiver run through
    /// `wrapper` (e.g. `setpriv` with fewer privileges).
    pub fn start_receiver_wrapped(&mut self, extra_yaml: &str, wrapper: &[String]) -> Result<()> {
        self.receiver = Some(Receiver::start_with_extra_wrapped(
            &self.dir,
            &self.collector.endpoint(),
            free_port()?,
            extra_yaml,
            wrapper,
        )?);
        eprintln!("[e2e:{}] receiver ready (through {wrapper:?})", self.name);
        Ok(())
    }

    /// Starts the receiver with a whole config text (written to `dir/receiver.yaml`; build it
    /// from [`crate::receiver::test_config`] for this world's Collector and metrics port
    /// `metrics_port`), e.g. to change the test config's own keys such as `log_level`.
    pub fn start_receiver_with_config(&mut self, config: &str, metrics_port: u16) -> Result<()> {
        let path = self.dir.join("receiver.yaml");
        std::fs::write(&path, config)?;
        self.receiver = Some(Receiver::start_with_config(
            &path,
            metrics_port,
            crate::process::Output::File(self.dir.join("receiver.log")),
        )?);
        eprintln!("[e2e:{}] receiver ready", self.name);
        Ok(())
    }

    /// The running receiver. Panics when it was not started.
    pub fn receiver(&self) -> &Receiver {
        self.receiver.as_ref().expect("receiver started")
    }

    pub fn receiver_mut(&mut self) -> &mut Receiver {
        self.receiver.as_mut().expect("receiver started")
    }

    /// SIGTERM to the receiver (it flushes queued spans); whether it exited cleanly.
    pub fn stop_receiver(&mut self) -> bool {
        self.receiver.as_mut().is_some_and(Receiver::stop)
    }

    /// A subdirectory of the scratch dir (created).
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Polls the Collector's output until `done` holds for the spans passing `relevant` (up to
    /// [`SPAN_TIMEOUT`]); returns those spans. The error lists what was seen.
    pub fn wait_spans(
        &mut self,
        what: &str,
        relevant: impl Fn(&SpanView) -> bool,
        done: impl Fn(&[&SpanView]) -> bool,
    ) -> Result<Vec<SpanView>> {
        self.collector.wait_for(what, SPAN_TIMEOUT, relevant, done)
    }

    /// [`wait_spans`](Self::wait_spans) for the spans of one process and side.
    pub fn spans_from(
        &mut self,
        pid: u32,
        side: Side,
        what: &str,
        done: impl Fn(&[&SpanView]) -> bool,
    ) -> Result<Vec<SpanView>> {
        let what = format!("{} spans from pid {pid}: {what}", side.label());
        self.wait_spans(&what, |s| s.pid() == Some(pid) && side.matches(s), done)
    }

    /// Waits `settle` (so late duplicates would show up), then returns every span so far that
    /// passes `relevant`.
    pub fn settled_spans(
        &mut self,
        settle: Duration,
        relevant: impl Fn(&SpanView) -> bool,
    ) -> Result<Vec<SpanView>> {
        std::thread::sleep(settle);
        Ok(self
            .collector
            .spans()?
            .into_iter()
            .filter(|s| relevant(s))
            .collect())
    }

    /// Records a failed check for every kernel loss counter that is not 0 and for dropped
    /// spans (the receiver must be running).
    pub fn check_no_loss(&self, checks: &mut Checks) {
        let m = match self.receiver().metrics() {
            Ok(m) => m,
            Err(e) => {
                checks.fail(format!("cannot scrape the receiver's metrics: {e:#}"));
                return;
            }
        };
        for key in LOSS_COUNTERS {
            if m.get(key) != 0.0 {
                checks.fail(format!("{key} = {} (kernel lost events)", m.get(key)));
            }
        }
        let dropped = m.sum("ebpf_receiver_spans_dropped_total");
        if dropped != 0.0 {
            checks.fail(format!(
                "spans dropped: {}",
                m.family("ebpf_receiver_spans_dropped_total")
            ));
        }
    }

    /// Ends the test with the checks' verdict; artefacts are kept only when something failed.
    /// The rest of the Collector's output is read first: a span with a negative duration
    /// anywhere in it fails the test (issue 8, R10).
    pub fn done(mut self, mut checks: Checks) -> Result<()> {
        match self.collector.check_output() {
            Ok(n) => eprintln!(
                "[e2e:{}] {n} spans read, none ends before it starts",
                self.name
            ),
            Err(e) => checks.fail(format!("{e:#}")),
        }
        let r = checks.finish();
        self.passed = r.is_ok();
        r
    }
}

impl<S: Server> Drop for World<S> {
    fn drop(&mut self) {
        if !self.passed {
            if let Some(r) = &self.receiver {
                eprintln!("[e2e:{}] receiver log tail:\n{}", self.name, r.log_tail(40));
                if let Ok(m) = r.metrics() {
                    eprintln!(
                        "[e2e:{}] receiver metrics:\n{}",
                        self.name,
                        m.family("ebpf_receiver_")
                    );
                }
            }
            let tail = self.server.log_tail(20);
            if !tail.trim().is_empty() {
                eprintln!(
                    "[e2e:{}] {} log tail:\n{tail}",
                    self.name,
                    self.server.label()
                );
            }
            eprintln!(
                "[e2e:{}] artefacts kept in {}",
                self.name,
                self.dir.display()
            );
        }
        if let Some(r) = &mut self.receiver {
            r.stop();
        }
        if self.passed {
            // Passed: stop everything now and free the disk (a datadir is ~120 MB).
            self.server.stop();
            self.collector.guard_mut().stop();
            paths::remove_scratch_dir(&self.dir);
        }
    }
}

/// Every span's start is not after the next one's (spans given in request order).
pub fn assert_in_order(spans: &[&SpanView]) -> Result<()> {
    for w in spans.windows(2) {
        ensure!(
            w[0].start_ns <= w[1].start_ns,
            "spans out of order: {:?} starts after {:?}",
            w[0].summary(),
            w[1].summary()
        );
    }
    Ok(())
}

/// None of `secrets` (passwords, literals) occurs in the span's name, any attribute value or
/// any resource attribute value.
pub fn assert_no_secrets_anywhere(s: &SpanView, secrets: &[&str]) -> Result<()> {
    for secret in secrets {
        ensure!(
            !s.name.contains(secret),
            "{secret:?} leaked into the span name: {}",
            s.summary()
        );
        for (k, v) in s.attributes.iter().chain(s.resource.iter()) {
            let v = v.to_string();
            ensure!(!v.contains(secret), "{secret:?} leaked into {k}={v}");
        }
        ensure!(
            !s.status_message.contains(secret),
            "{secret:?} leaked into the status message {:?}",
            s.status_message
        );
    }
    Ok(())
}

/// One line per span, for failure messages.
pub fn summaries(spans: &[&SpanView]) -> String {
    spans
        .iter()
        .map(|s| format!("  {}", s.summary()))
        .collect::<Vec<_>>()
        .join("\n")
}
