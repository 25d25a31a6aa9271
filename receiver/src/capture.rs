//! The capture task: the only owner of connection state.
//!
//! ```text
//! rings ─► RingReader::drain ─► Tracker::on_event ─► records ─► Emitter (span + resource) ─► queue
//!            ▲ every poll interval or ¼-full wakeup          │
//!            └── once a second: clock re-anchoring, timeouts, idle sweep, kernel counters,
//!                allocator trim once a minute
//! ```
//! It also registers the sockets that predate the receiver, and turns the tracker's requests
//! into kernel map writes (disable unparseable connections, clear closed ones).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::bpf::{ConnControl, KernelEvent, KernelStats, Probes, RingReader};
use crate::config::Config;
use crate::emit::Emitter;
use crate::model::{Protocol, Transport};
use crate::record::ConnRecord;
use crate::recording::Recorder;
use crate::telemetry::{self, KernelDrop, MapOp};
use crate::tracker::{self, Tracker};

/// Ring items handled per drain before their records are encoded and housekeeping gets a
/// turn. One data item can carry many pipelined requests (16 per read under `redis-benchmark
/// -P 16`), so this also bounds the records held between the tracker and the emitter.
const MAX_ITEMS_PER_DRAIN: usize = 2048;
/// Records the round buffer keeps room for between rounds; a burst's extra room is freed.
const KEPT_RECORDS: usize = 4096;
/// Housekeeping period: clock re-anchoring, timeouts, idle sweep, kernel counters.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Kernel entries of processes that exited without closing their sockets are purged this often.
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// Free heap memory goes back to the system this often. The allocator keeps up to 4 MiB of
/// free heap resident by design (`app.rs`: the steady working set is reused, not zero-filled
/// again every round), and free pages in the middle of the heap are never returned on their
/// own, so without this the resident size creeps up with fragmentation over hours (the soak,
/// issue 8 R13). Once a minute costs at most a re-fault of those pages once a minute.
const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// Returns free heap memory to the system (glibc).
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is a thread-safe allocator call.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Everything the capture task owns.
pub struct Capture {
    pub probes: Probes,
    pub reader: RingReader,
    pub control: ConnControl,
    pub tracker: Tracker,
    pub emitter: Emitter,
    /// Ring drain period when no wakeup comes.
    pub poll: Duration,
    /// `--record-events`: every event the tracker sees also goes to this file (diagnostic).
    pub recorder: Option<Recorder>,
}

impl Capture {
    /// Runs until `stop` is cancelled, then hands the last records to the emitter. Returns an
    /// error when the ring buffers cannot be waited on any more (the process must stop: a
    /// capture that silently sees nothing is worse than none). `fault` makes it fail on purpose
    /// after its first round (the supervision test).
    pub async fn run(mut self, stop: CancellationToken, fault: bool) -> Result<(), CaptureError> {
        let mut records: Vec<ConnRecord> = Vec::with_capacity(1024);
        let mut last_sweep = Instant::now();
        let mut last_purge = Instant::now();
        let mut last_trim = Instant::now();
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                r = self.reader.wait(self.poll) => {
                    r.map_err(CaptureError::RingWait)?;
                    false
                }
            };
            // Drain until the rings are empty (bounded per round), then hand records over.
            loop {
                let tracker = &mut self.tracker;
                let n = match self.recorder.as_mut() {
                    None => self.reader.drain(MAX_ITEMS_PER_DRAIN, |ev| {
                        tracker.on_event(&ev, &mut records)
                    }),
                    Some(rec) => self.reader.drain(MAX_ITEMS_PER_DRAIN, |ev| {
                        record(rec, &ev, None);
                        tracker.on_event(&ev, &mut records);
                        let id = match &ev {
                            KernelEvent::Open(o) => o.conn,
                            KernelEvent::Close(c) => c.conn,
                            KernelEvent::Data(d) => d.conn,
                        };
                        record(rec, &ev, Some(tracker.conn_meta(id)));
                    }),
                };
                if let Some(rec) = self.recorder.as_mut() {
                    let _ = rec.end_batch();
                }
                self.tracker.end_batch(&mut records);
                self.emitter.emit(&mut records);
                records.shrink_to(KEPT_RECORDS);
                if n < MAX_ITEMS_PER_DRAIN {
                    break;
                }
            }
            self.apply_tracker_requests();
            if stopping || last_sweep.elapsed() >= SWEEP_INTERVAL {
                last_sweep = Instant::now();
                let now_ns = tracker::clock::boot_now_ns();
                if let Some(rec) = self.recorder.as_mut() {
                    let _ = rec.sweep(now_ns);
                    if let Err(e) = rec.flush() {
                        tracing::warn!(error = %e, "cannot write the event recording; stopped");
                        self.recorder = None;
                    }
                }
                self.tracker.sweep(now_ns, &mut records);
                self.emitter.emit(&mut records);
                self.emitter.prune();
                if last_trim.elapsed() >= TRIM_INTERVAL {
                    last_trim = Instant::now();
                    trim_allocator();
                }
                match self.probes.stats() {
                    Ok(k) => publish_kernel_stats(&k, self.reader.malformed()),
                    Err(e) => map_failed(MapOp::Stats, &e),
                }
            }
            if last_purge.elapsed() >= PURGE_INTERVAL {
                last_purge = Instant::now();
                match self.control.purge_exited() {
                    Ok(exited) => {
                        self.tracker.forget_processes(&exited, &mut records);
                        self.emitter.emit(&mut records);
                    }
                    Err(e) => map_failed(MapOp::Purge, &e),
                }
            }
            if stopping {
                break;
            }
            if fault {
                return Err(CaptureError::Injected);
            }
        }
        if let Some(mut rec) = self.recorder.take() {
            let _ = rec.flush();
        }
        Ok(())
    }

    /// Disables connections the tracker found unparseable; clears the entries of closed ones.
    fn apply_tracker_requests(&mut self) {
        for id in self.tracker.take_disable_requests() {
            if let Err(e) = self.control.disable(id) {
                map_failed(MapOp::Disable, &e);
            }
        }
        for id in self.tracker.take_enable_requests() {
            if let Err(e) = self.control.enable(id) {
                map_failed(MapOp::Enable, &e);
            }
        }
    }
}

/// Why the capture task stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot wait on the ring buffers: {0}")]
    RingWait(std::io::Error),
    #[error("fault injected (EBPF_RECEIVER_FAULT=capture)")]
    Injected,
}

/// A failed map operation: counted (`ebpf_receiver_map_errors_total{op}`), the first of each
/// kind logged as a warning, later ones at debug.
fn map_failed(op: MapOp, e: &dyn std::fmt::Display) {
    if crate::telemetry::metrics().map_error(op) {
        tracing::warn!(op = op.as_str(), error = %e,
            "BPF map operation failed (counted in ebpf_receiver_map_errors_total; further ones logged at debug)");
    } else {
        tracing::debug!(op = op.as_str(), error = %e, "BPF map operation failed");
    }
}

/// Writes one event (`meta: None`) or the tuple of its connection after the tracker handled it.
/// Write errors end the recording at the next flush; they never stop the capture.
fn record(rec: &mut Recorder, ev: &KernelEvent<'_>, meta: Option<Option<&crate::model::ConnMeta>>) {
    let r = match (meta, ev) {
        (None, _) => rec.event(ev),
        (Some(_), KernelEvent::Close(_)) => Ok(()),
        (Some(m), KernelEvent::Open(o)) => rec.tuple(o.conn, m),
        (Some(m), KernelEvent::Data(d)) => rec.tuple(d.conn, m),
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "event recording write failed");
    }
}

/// Registers sockets that predate the receiver (established TCP, connected Unix stream, bound
/// UDP) so their later traffic is seen. UDP sockets are registered as datagram sockets: the
/// kernel then infers only datagram protocols on them (a DNS server started before us). A TCP
/// socket carries its role (accepted or not, from the listening sockets), as connect/accept
/// would have told the kernel; stream sockets are inferred only once their conversation turns
/// (they may be in the middle of a message, see `ebpf_common::turn`).
pub fn seed_existing_connections(cfg: &Config, control: &mut ConnControl, tracker: &mut Tracker) {
    let me = std::process::id();
    let only: Vec<u32> = cfg.targets.pids.clone();
    let never: Vec<u32> = cfg.targets.exclude_pids.clone();
    let keep =
        |pid: u32| pid != me && !never.contains(&pid) && (only.is_empty() || only.contains(&pid));
    let limit = cfg.ebpf.max_connections as usize / 2;
    let sockets = tracker::socket::existing_sockets(std::path::Path::new("/proc"), keep, limit);
    let mut seeded = 0usize;
    for s in sockets {
        let datagram = s.tuple.transport == Some(Transport::Udp);
        match control.seed(s.pid, s.fd, s.role, datagram) {
            Ok(Some(_)) => {
                tracker.preload(s.pid, s.fd, s.tuple);
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

/// Copies the kernel's cumulative counters into the self-metrics.
fn publish_kernel_stats(k: &KernelStats, malformed: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let m = telemetry::metrics();
    m.kernel_control_events.store(k.control_events, Relaxed);
    m.kernel_data_events.store(k.data_events, Relaxed);
    m.kernel_data_bytes.store(k.data_bytes, Relaxed);
    m.kernel_uncaptured_bytes.store(k.uncaptured_bytes, Relaxed);
    m.kernel_infer_gave_up.store(k.infer_gave_up, Relaxed);
    m.ring_items_malformed.store(malformed, Relaxed);
    for (reason, v) in [
        (KernelDrop::ControlRingFull, k.control_ring_full),
        (KernelDrop::DataRingFull, k.data_ring_full),
        (KernelDrop::CaptureTruncated, k.capture_truncated),
        (KernelDrop::ConnMapFull, k.conn_map_full),
        (KernelDrop::Disabled, k.disabled),
        (KernelDrop::ArgsMapFull, k.args_map_full),
        (KernelDrop::ReadFailed, k.read_failed),
        (KernelDrop::MmsgOverflow, k.mmsg_overflow),
        (KernelDrop::PidsMapFull, k.pids_map_full),
    ] {
        m.kernel_drop(reason).store(v, Relaxed);
    }
    for &p in Protocol::ALL {
        m.protocol(p)
            .inferences
            .store(k.inferences[p.index()], Relaxed);
    }
}
