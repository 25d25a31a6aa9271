//! Wiring only: load the probes, spawn the tasks, own the channels, the cancellation tokens and
//! the signals, and shut down in order.
//!
//! ```text
//! kernel rings ─► capture task: RingReader::drain → Tracker → span::build_span ─► SpanSender
//!                                                                                   │ bytes-bounded queue
//! metrics server (/metrics /healthz /readyz)                    export task ◄──────┘ → OTLP/gRPC → Collector
//! ```
//! Shutdown (SIGTERM/SIGINT): stop capturing, hand the last records to the queue, then let the
//! exporter flush for at most `exporter.shutdown_timeout_ms`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio_util::sync::CancellationToken;

use crate::bpf::{self, BpfSettings, ConnControl, Probes, RingReader};
use crate::config::Config;
use crate::export::{self, Exporter, SpanSender};
use crate::record::{ConnRecord, DbSystem, Exchange, ProcessMeta};
use crate::telemetry::{self, KernelDrop};
use crate::tracker::{self, Tracker, TrackerSettings, WallClock};
use crate::{protocol, span};

/// Ring items handled per drain before housekeeping gets a turn.
const MAX_ITEMS_PER_DRAIN: usize = 8192;
/// Housekeeping period: clock re-anchoring, timeouts, idle sweep, kernel counters.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Kernel entries of processes that exited without closing their sockets are purged this often.
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// Why the receiver could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot serve metrics on `{addr}`: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] bpf::LoadError),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs the receiver until SIGTERM or SIGINT. `resource_attrs` come from
/// `OTEL_RESOURCE_ATTRIBUTES` and are added to every resource.
pub fn run(cfg: Config, resource_attrs: Vec<(String, String)>) -> Result<(), AppError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ebpf-receiver")
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    rt.block_on(run_async(cfg, resource_attrs))
}

async fn run_async(cfg: Config, resource_attrs: Vec<(String, String)>) -> Result<(), AppError> {
    let metrics = telemetry::metrics();
    let stop_serving = CancellationToken::new();
    let addr = cfg.telemetry.metrics_address;
    let listener = telemetry::server::bind(addr)
        .await
        .map_err(|source| AppError::Metrics { addr, source })?;
    let server = tokio::spawn(telemetry::server::serve(listener, stop_serving.clone()));

    // The exporter connects lazily: starting never waits for the Collector.
    let (exporter, sender) = Exporter::new(&cfg.exporter)?;
    let stop_export = CancellationToken::new();
    let export_task = tokio::spawn(exporter.run(stop_export.clone()));

    let mut probes = Probes::load(&bpf_settings(&cfg))?;
    let reader = probes.take_reader()?;
    let mut control = probes.conn_control()?;
    let mut tracker = Tracker::new(tracker_settings(&cfg), WallClock::new());
    seed_existing_connections(&cfg, &mut control, &mut tracker);
    tracing::info!(endpoint = %cfg.exporter.endpoint, metrics = %addr, "probes attached, tracing");

    let mut signals = Signals::new().map_err(AppError::Signals)?;
    let stop_capture = CancellationToken::new();
    let capture = tokio::spawn(capture(
        CaptureStage {
            probes,
            reader,
            control,
            tracker,
            spans: SpanStage::new(host_name(&cfg), resource_attrs, sender),
            poll: Duration::from_millis(cfg.ebpf.poll_interval_ms),
        },
        stop_capture.clone(),
    ));
    metrics.ready.store(true, Ordering::Relaxed);

    signals.wait().await;
    tracing::info!("shutting down: flushing spans");
    metrics.ready.store(false, Ordering::Relaxed);
    stop_capture.cancel();
    // Dropping the probes (inside the task) detaches every program.
    let _ = capture.await;
    stop_export.cancel();
    let grace = Duration::from_millis(cfg.exporter.shutdown_timeout_ms + 500);
    if tokio::time::timeout(grace, export_task).await.is_err() {
        tracing::warn!("exporter did not finish within the shutdown timeout");
    }
    stop_serving.cancel();
    let _ = server.await;
    Ok(())
}

fn bpf_settings(cfg: &Config) -> BpfSettings {
    let mut exclude_ports = cfg.targets.exclude_ports.clone();
    if let Some(p) = cfg.exporter_port() {
        exclude_ports.push(p);
    }
    BpfSettings {
        max_capture_bytes: cfg.ebpf.max_capture_bytes,
        data_ring_bytes: cfg.ebpf.data_ring_bytes,
        control_ring_bytes: cfg.ebpf.control_ring_bytes,
        max_connections: cfg.ebpf.max_connections,
        self_pid: std::process::id(),
        pids: cfg.targets.pids.clone(),
        exclude_pids: cfg.targets.exclude_pids.clone(),
        exclude_ports,
        enabled_protocols: if cfg.protocols.mysql {
            1 << ebpf_common::proto::MYSQL
        } else {
            0
        },
    }
}

fn tracker_settings(cfg: &Config) -> TrackerSettings {
    TrackerSettings {
        max_connections: cfg.tracker.max_connections,
        idle_timeout_ns: cfg.tracker.idle_timeout_ms * 1_000_000,
        request_timeout_ns: cfg.tracker.request_timeout_ms * 1_000_000,
        limits: protocol::ParserLimits {
            max_buffer_bytes: cfg.tracker.max_buffer_bytes_per_connection,
            max_query_text_bytes: cfg.spans.max_query_text_bytes,
            ..protocol::ParserLimits::default()
        },
        proc_root: "/proc".into(),
        resolve: true,
    }
}

fn host_name(cfg: &Config) -> String {
    if !cfg.spans.host_name.is_empty() {
        return cfg.spans.host_name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Registers established sockets that predate the receiver so their later traffic is seen.
fn seed_existing_connections(cfg: &Config, control: &mut ConnControl, tracker: &mut Tracker) {
    let me = std::process::id();
    let only: Vec<u32> = cfg.targets.pids.clone();
    let never: Vec<u32> = cfg.targets.exclude_pids.clone();
    let keep =
        |pid: u32| pid != me && !never.contains(&pid) && (only.is_empty() || only.contains(&pid));
    let limit = cfg.ebpf.max_connections as usize / 2;
    let sockets =
        tracker::socket::existing_stream_sockets(std::path::Path::new("/proc"), keep, limit);
    let mut seeded = 0usize;
    for (pid, fd, tuple) in sockets {
        match control.seed(pid, fd) {
            Ok(Some(_)) => {
                tracker.preload(pid, fd, tuple);
                seeded += 1;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot register existing sockets");
                break;
            }
        }
    }
    tracing::info!(
        sockets = seeded,
        "registered connections opened before start"
    );
}

struct CaptureStage {
    probes: Probes,
    reader: RingReader,
    control: ConnControl,
    tracker: Tracker,
    spans: SpanStage,
    poll: Duration,
}

/// The capture task: the only owner of connection state.
async fn capture(mut s: CaptureStage, stop: CancellationToken) {
    let mut records: Vec<ConnRecord> = Vec::with_capacity(1024);
    let mut last_sweep = Instant::now();
    let mut last_purge = Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            r = s.reader.wait(s.poll) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "ring buffer wait failed");
                }
                false
            }
        };
        // Drain until the rings are empty (bounded per round), then hand records over.
        loop {
            let tracker = &mut s.tracker;
            let n = s.reader.drain(MAX_ITEMS_PER_DRAIN, |ev| {
                tracker.on_event(&ev, &mut records)
            });
            s.tracker.end_batch(&mut records);
            s.spans.emit(&mut records);
            if n < MAX_ITEMS_PER_DRAIN {
                break;
            }
        }
        for id in s.tracker.take_disable_requests() {
            if let Err(e) = s.control.disable(id) {
                tracing::debug!(error = %e, "cannot disable connection");
            }
        }
        for id in s.tracker.take_enable_requests() {
            let _ = s.control.enable(id);
        }
        if stopping || last_sweep.elapsed() >= SWEEP_INTERVAL {
            last_sweep = Instant::now();
            s.tracker.sweep(tracker::clock::boot_now_ns(), &mut records);
            s.spans.emit(&mut records);
            s.spans.prune();
            publish_kernel_stats(&s.probes, s.reader.malformed());
        }
        if last_purge.elapsed() >= PURGE_INTERVAL {
            last_purge = Instant::now();
            if let Err(e) = s.control.purge_exited() {
                tracing::debug!(error = %e, "cannot purge exited processes' connections");
            }
        }
        if stopping {
            break;
        }
    }
}

/// Copies the kernel's cumulative per-CPU counters into the self-metrics.
fn publish_kernel_stats(probes: &Probes, malformed: u64) {
    use ebpf_common::stat;
    let Ok(k) = probes.stats() else { return };
    let m = telemetry::metrics();
    let get = |i: u32| k.get(i as usize).copied().unwrap_or(0);
    m.kernel_control_events
        .store(get(stat::CONTROL_EVENTS), Ordering::Relaxed);
    m.kernel_data_events
        .store(get(stat::DATA_EVENTS), Ordering::Relaxed);
    m.kernel_data_bytes
        .store(get(stat::DATA_BYTES), Ordering::Relaxed);
    m.kernel_infer_gave_up
        .store(get(stat::INFER_GAVE_UP), Ordering::Relaxed);
    m.ring_items_malformed.store(malformed, Ordering::Relaxed);
    for (reason, idx) in [
        (KernelDrop::ControlRingFull, stat::DROP_CONTROL_RING_FULL),
        (KernelDrop::DataRingFull, stat::DROP_DATA_RING_FULL),
        (KernelDrop::CaptureTruncated, stat::DROP_CAPTURE_TRUNCATED),
        (KernelDrop::ConnMapFull, stat::DROP_CONN_MAP_FULL),
        (KernelDrop::Disabled, stat::DROP_DISABLED),
        (KernelDrop::ArgsMapFull, stat::DROP_ARGS_MAP_FULL),
        (KernelDrop::ReadFailed, stat::DROP_READ_FAILED),
    ] {
        m.kernel_drop(reason).store(get(idx), Ordering::Relaxed);
    }
    m.protocol(protocol::Protocol::Mysql)
        .inferences
        .store(get(stat::INFER_MYSQL), Ordering::Relaxed);
}

/// Records → spans → export queue, with one cached OTLP resource per traced process.
struct SpanStage {
    host_name: String,
    resource_attrs: Vec<(String, String)>,
    sender: SpanSender,
    resources: HashMap<u32, (Weak<ProcessMeta>, Arc<Resource>)>,
}

impl SpanStage {
    fn new(host_name: String, resource_attrs: Vec<(String, String)>, sender: SpanSender) -> Self {
        SpanStage {
            host_name,
            resource_attrs,
            sender,
            resources: HashMap::new(),
        }
    }

    fn emit(&mut self, records: &mut Vec<ConnRecord>) {
        for rec in records.drain(..) {
            let process = &rec.conn.process;
            let cached = self
                .resources
                .get(&process.pid)
                .filter(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(process)))
                .map(|(_, r)| r.clone());
            let resource = cached.unwrap_or_else(|| {
                let r = Arc::new(span::build_resource(
                    process,
                    &self.host_name,
                    &self.resource_attrs,
                ));
                self.resources
                    .insert(process.pid, (Arc::downgrade(process), r.clone()));
                r
            });
            let protocol = match &rec.exchange {
                Exchange::Db(db) => match db.system {
                    DbSystem::Mysql => protocol::Protocol::Mysql,
                },
            };
            telemetry::metrics()
                .protocol(protocol)
                .spans_created
                .fetch_add(1, Ordering::Relaxed);
            self.sender.send(resource, span::build_span(&rec));
        }
    }

    /// Forgets resources of processes no connection refers to any more.
    fn prune(&mut self) {
        self.resources
            .retain(|_, (weak, _)| weak.strong_count() > 0);
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
