//! Wiring only: load the probes, spawn the tasks, own the channels, the cancellation tokens and
//! the signals, and shut down in order.
//!
//! ```text
//! kernel rings ─► capture task (capture.rs): RingReader → Tracker → Emitter (emit.rs) ─► SpanSender
//!                                                                                   │ bytes-bounded queue
//! metrics server (/metrics /healthz /readyz)                    export task ◄──────┘ → OTLP/gRPC → Collector
//! ```
//! Shutdown (SIGTERM/SIGINT): stop capturing, hand the last records to the queue, then let the
//! exporter flush for at most `exporter.shutdown_timeout_ms`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bpf::{self, BpfSettings, Probes};
use crate::capture::{self, Capture};
use crate::config::Config;
use crate::emit::Emitter;
use crate::export::{self, Exporter};
use crate::model::Protocol;
use crate::protocol::ParserLimits;
use crate::recording::Recorder;
use crate::telemetry;
use crate::tracker::{Tracker, TrackerSettings, WallClock};

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
    #[error("cannot create the event recording `{path}`: {source}")]
    Record {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the {task} task stopped unexpectedly: {reason}")]
    TaskDied { task: &'static str, reason: String },
    #[error(transparent)]
    Capabilities(#[from] bpf::caps::CapabilityError),
}

/// Diagnostic switches of the command line, not part of the configuration.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// `--record-events FILE`: record every event the tracker sees (see `recording`), up to
    /// `record_max_bytes`.
    pub record_events: Option<std::path::PathBuf>,
    pub record_max_bytes: u64,
}

/// Runs the receiver until SIGTERM or SIGINT. `resource_attrs` come from
/// `OTEL_RESOURCE_ATTRIBUTES` and are added to every resource.
pub fn run(cfg: Config, resource_attrs: Vec<(String, String)>) -> Result<(), AppError> {
    run_with(cfg, resource_attrs, Diagnostics::default())
}

/// [`run`] with diagnostic switches.
pub fn run_with(
    cfg: Config,
    resource_attrs: Vec<(String, String)>,
    diag: Diagnostics,
) -> Result<(), AppError> {
    // Before any socket, map or program: a missing capability is named, never a bare EPERM
    // from loading, nor a receiver that starts blind to other users' sockets.
    bpf::caps::require()?;
    tune_malloc();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ebpf-receiver")
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    rt.block_on(run_async(cfg, resource_attrs, diag))
}

async fn run_async(
    cfg: Config,
    resource_attrs: Vec<(String, String)>,
    diag: Diagnostics,
) -> Result<(), AppError> {
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
    // `EBPF_RECEIVER_FAULT=capture|export` makes that task fail on purpose soon after the
    // start: the supervision test's hook, never set in production.
    let fault = std::env::var("EBPF_RECEIVER_FAULT").unwrap_or_default();
    let export_fault = fault == "export";
    let export_task = tokio::spawn({
        let stop = stop_export.clone();
        async move {
            if export_fault {
                tokio::time::sleep(Duration::from_millis(500)).await;
                panic!("fault injected (EBPF_RECEIVER_FAULT=export)");
            }
            exporter.run(stop).await;
        }
    });

    let mut probes = Probes::load(&bpf_settings(&cfg))?;
    let reader = probes.take_reader()?;
    let mut control = probes.conn_control()?;
    let mut tracker = Tracker::new(tracker_settings(&cfg), WallClock::new());
    capture::seed_existing_connections(&cfg, &mut control, &mut tracker);
    tune_malloc_steady();
    crate::residency::settle(crate::bpf::probes_object());
    tracing::info!(endpoint = %cfg.exporter.endpoint, metrics = %addr, "probes attached, tracing");

    let recorder = match &diag.record_events {
        None => None,
        Some(path) => {
            let r = Recorder::create(path, diag.record_max_bytes).map_err(|source| {
                AppError::Record {
                    path: path.clone(),
                    source,
                }
            })?;
            tracing::warn!(path = %path.display(), max_bytes = diag.record_max_bytes,
                "recording every captured event, payloads included (diagnostic)");
            Some(r)
        }
    };
    let mut signals = Signals::new().map_err(AppError::Signals)?;
    let stop_capture = CancellationToken::new();
    let capture = tokio::spawn(
        Capture {
            probes,
            reader,
            control,
            tracker,
            emitter: Emitter::new(host_name(&cfg), resource_attrs, sender),
            poll: Duration::from_millis(cfg.ebpf.poll_interval_ms),
            recorder,
        }
        .run(stop_capture.clone(), fault == "capture"),
    );
    metrics.ready.store(true, Ordering::Relaxed);

    // Supervision: a signal is the normal end; any task ending first is a failure, and the
    // process stops with it (exit code 1) rather than run on without capture or export.
    let mut capture = Some(capture);
    let mut export_task = Some(export_task);
    let mut server = Some(server);
    let failure = tokio::select! {
        // In this order: a capture that fails also ends the exporter (its sender is dropped);
        // the capture is the cause.
        biased;
        () = signals.wait() => None,
        r = async { capture.as_mut()?.await.ok() }, if capture.is_some() => {
            capture = None;
            Some(("capture", match r {
                Some(Ok(())) => "ended".to_string(),
                Some(Err(e)) => e.to_string(),
                None => "panicked".to_string(),
            }))
        }
        r = async { export_task.as_mut()?.await.ok() }, if export_task.is_some() => {
            export_task = None;
            Some(("export", if r.is_some() { "ended" } else { "panicked" }.to_string()))
        }
        r = async { server.as_mut()?.await.ok() }, if server.is_some() => {
            server = None;
            Some(("metrics server", if r.is_some() { "ended" } else { "panicked" }.to_string()))
        }
    };
    metrics.ready.store(false, Ordering::Relaxed);
    match &failure {
        None => tracing::info!("shutting down: flushing spans"),
        Some((task, reason)) => {
            tracing::error!(task, reason = %reason, "a task stopped unexpectedly: shutting down");
        }
    }
    stop_capture.cancel();
    // Dropping the probes (inside the task) detaches every program.
    if let Some(c) = capture {
        let _ = c.await;
    }
    stop_export.cancel();
    let grace = Duration::from_millis(cfg.exporter.shutdown_timeout_ms + 500);
    if let Some(e) = export_task
        && tokio::time::timeout(grace, e).await.is_err()
    {
        tracing::warn!("exporter did not finish within the shutdown timeout");
    }
    stop_serving.cancel();
    if let Some(s) = server {
        let _ = s.await;
    }
    match failure {
        None => Ok(()),
        Some((task, reason)) => Err(AppError::TaskDied { task, reason }),
    }
}

/// glibc malloc: one arena. `malloc_trim` returns the free top of the main arena only, so free
/// memory at the top of a second arena stayed resident for good: after a Collector outage, the
/// drain's large export requests left about 1 MiB there (the soak at 2048 spans per request:
/// RSS +5 % over the run with two arenas, +0.8 % with one). Small blocks come from each
/// thread's cache without the arena lock. Called before any other thread exists.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// glibc malloc once the probes are loaded (loading parses the kernel's BTF: megabytes that are
/// garbage afterwards): give that back, then keep a steady working set resident. The heap is
/// not trimmed below 4 MiB of free space at its top, and blocks up to 4 MiB come from the heap
/// rather than a fresh `mmap` each time, so export requests and drain buffers are reused instead
/// of being returned to the kernel and zero-filled again on the next round (a profile under
/// load showed 12 % of the receiver's CPU in the kernel zeroing such pages).
fn tune_malloc_steady() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim and mallopt are thread-safe allocator calls.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
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
        enabled_protocols: Protocol::ALL
            .iter()
            .copied()
            .filter(|p| cfg.protocols.enabled(*p))
            .collect(),
        kernel_inference: cfg.ebpf.kernel_inference,
    }
}

fn tracker_settings(cfg: &Config) -> TrackerSettings {
    TrackerSettings {
        max_connections: cfg.tracker.max_connections,
        idle_timeout_ns: cfg.tracker.idle_timeout_ms * 1_000_000,
        request_timeout_ns: cfg.tracker.request_timeout_ms * 1_000_000,
        limits: ParserLimits {
            max_buffer_bytes: cfg.tracker.max_buffer_bytes_per_connection,
            max_query_text_bytes: cfg.spans.max_query_text_bytes,
            ..ParserLimits::default()
        },
        proc_root: "/proc".into(),
        resolve: true,
        enabled_protocols: Protocol::ALL
            .iter()
            .copied()
            .filter(|p| cfg.protocols.enabled(*p))
            .collect(),
        max_total_buffer_bytes: cfg.tracker.max_total_buffer_bytes,
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
