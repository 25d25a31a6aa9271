//! The capture task: the only owner of connection state.
//!
//! ```text
//! rings ─► RingReader::drain ─► Tracker::on_event ─► records ─► Emitter (span + resource) ─► queue
//!            ▲ every poll interval or ¼-full wakeup          │
//!            └── once a second: clock re-anchoring, timeouts, idle sweep, kernel counters,
//!                allocator trim after an export backlog drained
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

/// Ring items handled per drain before housekeeping gets a turn.
const MAX_ITEMS_PER_DRAIN: usize = 8192;
/// Housekeeping period: clock re-anchoring, timeouts, idle sweep, kernel counters.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Kernel entries of processes that exited without closing their sockets are purged this often.
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// An export backlog (the Collector away) of at least this many bytes…
const BACKLOG_BYTES: u64 = 1 << 20;
/// …is over once the queue stays at most this full…
const DRAINED_BYTES: u64 = 64 << 10;
/// …for this many sweeps in a row; then its memory goes back to the system.
const DRAINED_SWEEPS: u32 = 5;

/// Watches the export queue at each sweep for a backlog that has drained. The allocator keeps
/// up to 4 MiB of free heap resident by design (`app.rs`: the steady working set is reused, not
/// zero-filled again), so the megabytes a backlog held would stay resident after an outage;
/// trimming once when it is over gives them back without trimming in steady operation.
#[derive(Debug, Default)]
struct BacklogTrim {
    peak: u64,
    drained_for: u32,
}

impl BacklogTrim {
    /// The queue's bytes at one sweep; true when the allocator should be trimmed now.
    fn observe(&mut self, queue_bytes: u64) -> bool {
        self.peak = self.peak.max(queue_bytes);
        if self.peak < BACKLOG_BYTES || queue_bytes > DRAINED_BYTES {
            self.drained_for = 0;
            return false;
        }
        self.drained_for += 1;
        if self.drained_for < DRAINED_SWEEPS {
            return false;
        }
        *self = BacklogTrim::default();
        true
    }
}

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
        let mut backlog = BacklogTrim::default();
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
                let queued = telemetry::metrics()
                    .export_queue_bytes
                    .load(std::sync::atomic::Ordering::Relaxed);
                if backlog.observe(queued) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_is_trimmed_once_after_a_backlog_drains() {
        let mut b = BacklogTrim::default();
        // Steady operation: a batch or two queued, never trimmed.
        assert!((0..100).all(|i| !b.observe(if i % 2 == 0 { 200 << 10 } else { 0 })));
        // An outage: megabytes queue up, then drain.
        for q in [4 << 20, 8 << 20, 6 << 20, 1 << 20] {
            assert!(!b.observe(q));
        }
        let trims: Vec<bool> = (0..DRAINED_SWEEPS + 3)
            .map(|_| b.observe(1 << 10))
            .collect();
        assert_eq!(trims.iter().filter(|t| **t).count(), 1, "{trims:?}");
        assert!(trims[DRAINED_SWEEPS as usize - 1]);
        // A refill before the queue stayed drained long enough restarts the wait.
        let mut b = BacklogTrim::default();
        assert!(!b.observe(2 << 20));
        for _ in 0..DRAINED_SWEEPS - 1 {
            assert!(!b.observe(0));
        }
        assert!(!b.observe(300 << 10));
        assert!((0..DRAINED_SWEEPS - 1).all(|_| !b.observe(0)));
        assert!(b.observe(0));
    }
}
