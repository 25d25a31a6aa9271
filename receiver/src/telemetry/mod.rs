//! Every self-metric in one place.
//!
//! Names are `ebpf_receiver_<name>_<unit>` with `_total` on counters. Labels come only from the
//! bounded enums below (protocol, reason, outcome, stream), never from pids, paths, addresses or
//! error text. Hot paths hold `&'static Metrics` and do one relaxed atomic add per batch.
//! [`server`] serves them as Prometheus text with `/healthz` and `/readyz`.

pub mod server;

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::model::{PROTOCOL_COUNT, Protocol};

/// Why the kernel lost data (mirrors `ebpf_common::stat::DROP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelDrop {
    ControlRingFull,
    DataRingFull,
    CaptureTruncated,
    ConnMapFull,
    Disabled,
    ArgsMapFull,
    ReadFailed,
    MmsgOverflow,
    PidsMapFull,
}

impl KernelDrop {
    pub const ALL: [KernelDrop; 9] = [
        KernelDrop::ControlRingFull,
        KernelDrop::DataRingFull,
        KernelDrop::CaptureTruncated,
        KernelDrop::ConnMapFull,
        KernelDrop::Disabled,
        KernelDrop::ArgsMapFull,
        KernelDrop::ReadFailed,
        KernelDrop::MmsgOverflow,
        KernelDrop::PidsMapFull,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            KernelDrop::ControlRingFull => "control_ring_full",
            KernelDrop::DataRingFull => "data_ring_full",
            KernelDrop::CaptureTruncated => "capture_truncated",
            KernelDrop::ConnMapFull => "conn_map_full",
            KernelDrop::Disabled => "disabled",
            KernelDrop::ArgsMapFull => "args_map_full",
            KernelDrop::ReadFailed => "read_failed",
            KernelDrop::MmsgOverflow => "mmsg_overflow",
            KernelDrop::PidsMapFull => "pids_map_full",
        }
    }
}

/// Why a span (or the record that would have become one) was dropped in user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanDrop {
    /// The export queue's byte budget was exhausted.
    QueueFull,
    /// Export failed with a non-retryable code, or retries ran out.
    ExportFailed,
    /// The Collector accepted the request but rejected these spans (partial success).
    Rejected,
    /// Still queued when the shutdown deadline passed.
    Shutdown,
}

impl SpanDrop {
    pub const ALL: [SpanDrop; 4] = [
        SpanDrop::QueueFull,
        SpanDrop::ExportFailed,
        SpanDrop::Rejected,
        SpanDrop::Shutdown,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SpanDrop::QueueFull => "queue_full",
            SpanDrop::ExportFailed => "export_failed",
            SpanDrop::Rejected => "rejected",
            SpanDrop::Shutdown => "shutdown",
        }
    }
}

/// Outcome of one OTLP export request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportOutcome {
    Success,
    PartialSuccess,
    /// Failed with a retryable code; it will be sent again.
    Retried,
    /// Failed with a non-retryable code or ran out of retries.
    Failed,
}

impl ExportOutcome {
    pub const ALL: [ExportOutcome; 4] = [
        ExportOutcome::Success,
        ExportOutcome::PartialSuccess,
        ExportOutcome::Retried,
        ExportOutcome::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ExportOutcome::Success => "success",
            ExportOutcome::PartialSuccess => "partial_success",
            ExportOutcome::Retried => "retried",
            ExportOutcome::Failed => "failed",
        }
    }
}

/// User-space operations on the BPF maps that can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Reading the kernel's counters.
    Stats,
    /// Switching a connection off in the kernel.
    Disable,
    /// Switching it on again.
    Enable,
    /// Removing the connections of exited processes.
    Purge,
}

impl MapOp {
    pub const ALL: [MapOp; 4] = [MapOp::Stats, MapOp::Disable, MapOp::Enable, MapOp::Purge];
    pub fn as_str(self) -> &'static str {
        match self {
            MapOp::Stats => "stats",
            MapOp::Disable => "disable",
            MapOp::Enable => "enable",
            MapOp::Purge => "purge",
        }
    }
}

/// Per-protocol parser counters.
#[derive(Default)]
pub struct ProtocolMetrics {
    pub inferences: AtomicU64,
    /// Connections inferred in user space (`ebpf.kernel_inference: false`).
    pub user_inferences: AtomicU64,
    pub frames: AtomicU64,
    pub frames_invalid: AtomicU64,
    pub resyncs: AtomicU64,
    pub bytes_lost: AtomicU64,
    pub unmatched_requests: AtomicU64,
    pub unmatched_responses: AtomicU64,
    pub buffer_overflow_bytes: AtomicU64,
    pub spans_created: AtomicU64,
}

/// All self-metrics. Kernel counters are copied from the BPF stats map (they are cumulative
/// there); everything else is incremented here.
#[derive(Default)]
pub struct Metrics {
    pub kernel_control_events: AtomicU64,
    pub kernel_data_events: AtomicU64,
    pub kernel_data_bytes: AtomicU64,
    /// Bytes moved by sendfile/splice on traced connections (reported by length only).
    pub kernel_uncaptured_bytes: AtomicU64,
    pub kernel_drops: [AtomicU64; KernelDrop::ALL.len()],
    pub kernel_infer_gave_up: AtomicU64,
    /// Ring items that could not be decoded (wrong size or unknown kind).
    pub ring_items_malformed: AtomicU64,
    /// Times the ring reader woke because a ring signalled (not the poll timer).
    pub ring_wakeups: AtomicU64,
    /// Ring items drained in the rounds a ring signal started.
    pub ring_wakeup_items: AtomicU64,
    /// Bytes of the items read from the control and data rings (headers, payloads, trailers):
    /// what crossed from the kernel to user space.
    pub ring_control_bytes: AtomicU64,
    pub ring_data_bytes: AtomicU64,
    pub connections_tracked: AtomicU64,
    /// Unparsed bytes buffered by all tracked connections (capped by
    /// `tracker.max_total_buffer_bytes`).
    pub buffered_bytes: AtomicU64,
    /// Connections evicted because the table was full.
    pub connections_evicted: AtomicU64,
    pub connections_disabled: AtomicU64,
    /// `ebpf.kernel_inference: false`: connections user space gave up on, and the events and
    /// captured bytes of uninferred connections it discarded.
    pub user_infer_gave_up: AtomicU64,
    pub user_infer_discarded_events: AtomicU64,
    pub user_infer_discarded_bytes: AtomicU64,
    pub protocols: [ProtocolMetrics; PROTOCOL_COUNT],
    pub spans_exported: AtomicU64,
    pub spans_dropped: [AtomicU64; SpanDrop::ALL.len()],
    pub export_requests: [AtomicU64; ExportOutcome::ALL.len()],
    pub export_queue_bytes: AtomicU64,
    /// Spans whose bytes `export_queue_bytes` counts: `spans_created = spans_exported +
    /// spans_dropped + export_queue_spans`, exactly, whenever the pipeline is quiet.
    pub export_queue_spans: AtomicU64,
    pub export_queue_capacity_bytes: AtomicU64,
    /// Failed operations on the BPF maps, by [`MapOp`] (never swallowed: counted and logged).
    pub map_errors: [AtomicU64; MapOp::ALL.len()],
    /// Set once the probes are attached and the pipeline runs.
    pub ready: AtomicBool,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    pub fn protocol(&self, p: Protocol) -> &ProtocolMetrics {
        // One entry per protocol, indexed by `Protocol::index` (< PROTOCOL_COUNT).
        &self.protocols[p.index()]
    }

    pub fn kernel_drop(&self, reason: KernelDrop) -> &AtomicU64 {
        &self.kernel_drops[reason as usize]
    }

    pub fn span_dropped(&self, reason: SpanDrop, n: u64) {
        self.spans_dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failed map operation; true for the first failure of its kind (log that one).
    pub fn map_error(&self, op: MapOp) -> bool {
        self.map_errors[op as usize].fetch_add(1, Ordering::Relaxed) == 0
    }

    pub fn export_request(&self, outcome: ExportOutcome) {
        self.export_requests[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn spans_dropped_total(&self) -> u64 {
        self.spans_dropped
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let plain = |v: u64| vec![(String::new(), v)];
        family(
            "ebpf_receiver_kernel_events_total",
            "counter",
            "Events the kernel wrote to the ring buffers, by stream.",
            &[
                (
                    "{stream=\"control\"}".into(),
                    r(&self.kernel_control_events),
                ),
                ("{stream=\"data\"}".into(), r(&self.kernel_data_events)),
            ],
        );
        family(
            "ebpf_receiver_kernel_bytes_total",
            "counter",
            "Payload bytes of traced connections: copied to the data ring (data), or moved by sendfile/splice and reported by length only (uncaptured).",
            &[
                ("{stream=\"data\"}".into(), r(&self.kernel_data_bytes)),
                (
                    "{stream=\"uncaptured\"}".into(),
                    r(&self.kernel_uncaptured_bytes),
                ),
            ],
        );
        family(
            "ebpf_receiver_kernel_drops_total",
            "counter",
            "Events or bytes the kernel side lost, by reason.",
            &KernelDrop::ALL
                .iter()
                .map(|d| {
                    (
                        format!("{{reason=\"{}\"}}", d.as_str()),
                        r(self.kernel_drop(*d)),
                    )
                })
                .collect::<Vec<_>>(),
        );
        family(
            "ebpf_receiver_map_errors_total",
            "counter",
            "Failed operations on the BPF maps from user space, by operation.",
            &MapOp::ALL
                .iter()
                .map(|o| {
                    (
                        format!("{{op=\"{}\"}}", o.as_str()),
                        r(&self.map_errors[*o as usize]),
                    )
                })
                .collect::<Vec<_>>(),
        );
        family(
            "ebpf_receiver_kernel_inference_gave_up_total",
            "counter",
            "Connections the kernel stopped inspecting: no supported protocol in their first messages.",
            &plain(r(&self.kernel_infer_gave_up)),
        );
        family(
            "ebpf_receiver_ring_items_malformed_total",
            "counter",
            "Ring buffer items that could not be decoded.",
            &plain(r(&self.ring_items_malformed)),
        );
        family(
            "ebpf_receiver_ring_bytes_total",
            "counter",
            "Bytes of the items read from the ring buffers (headers, payloads and trailers), by stream.",
            &[
                ("{stream=\"control\"}".into(), r(&self.ring_control_bytes)),
                ("{stream=\"data\"}".into(), r(&self.ring_data_bytes)),
            ],
        );
        family(
            "ebpf_receiver_ring_wakeups_total",
            "counter",
            "Times the ring reader woke because a ring signalled (the kernel signals when a ring is a quarter full), not the poll timer.",
            &plain(r(&self.ring_wakeups)),
        );
        family(
            "ebpf_receiver_ring_wakeup_items_total",
            "counter",
            "Ring items drained in the rounds a ring signal started (divided by ring_wakeups_total: items per wakeup).",
            &plain(r(&self.ring_wakeup_items)),
        );
        family(
            "ebpf_receiver_connections_tracked",
            "gauge",
            "Connections currently tracked in user space.",
            &plain(r(&self.connections_tracked)),
        );
        family(
            "ebpf_receiver_buffered_bytes",
            "gauge",
            "Unparsed bytes buffered by all tracked connections (capped by tracker.max_total_buffer_bytes).",
            &plain(r(&self.buffered_bytes)),
        );
        family(
            "ebpf_receiver_connections_evicted_total",
            "counter",
            "Connections evicted because the connection table was full.",
            &plain(r(&self.connections_evicted)),
        );
        family(
            "ebpf_receiver_connections_disabled_total",
            "counter",
            "Connections user space disabled in the kernel (unparseable).",
            &plain(r(&self.connections_disabled)),
        );
        let per_proto = |f: &dyn Fn(&ProtocolMetrics) -> &AtomicU64| {
            Protocol::ALL
                .iter()
                .map(|p| {
                    (
                        format!("{{protocol=\"{}\"}}", p.as_str()),
                        r(f(self.protocol(*p))),
                    )
                })
                .collect::<Vec<_>>()
        };
        family(
            "ebpf_receiver_inferences_total",
            "counter",
            "Connections whose protocol the kernel inferred, by protocol.",
            &per_proto(&|m| &m.inferences),
        );
        family(
            "ebpf_receiver_user_inferences_total",
            "counter",
            "Connections whose protocol user space inferred (ebpf.kernel_inference: false), by protocol.",
            &per_proto(&|m| &m.user_inferences),
        );
        family(
            "ebpf_receiver_user_inference_gave_up_total",
            "counter",
            "Connections user space stopped inspecting (ebpf.kernel_inference: false): no supported protocol in their first messages.",
            &plain(r(&self.user_infer_gave_up)),
        );
        family(
            "ebpf_receiver_user_inference_discarded_total",
            "counter",
            "Events and captured bytes of uninferred connections user space discarded (ebpf.kernel_inference: false): before inference, or after giving up.",
            &[
                (
                    "{unit=\"events\"}".into(),
                    r(&self.user_infer_discarded_events),
                ),
                (
                    "{unit=\"bytes\"}".into(),
                    r(&self.user_infer_discarded_bytes),
                ),
            ],
        );
        family(
            "ebpf_receiver_frames_total",
            "counter",
            "Frames parsed, by protocol.",
            &per_proto(&|m| &m.frames),
        );
        family(
            "ebpf_receiver_frames_invalid_total",
            "counter",
            "Positions where bytes did not parse as the protocol, by protocol.",
            &per_proto(&|m| &m.frames_invalid),
        );
        family(
            "ebpf_receiver_resyncs_total",
            "counter",
            "Times a stream was resynchronised after invalid bytes or a gap, by protocol.",
            &per_proto(&|m| &m.resyncs),
        );
        family(
            "ebpf_receiver_stream_bytes_lost_total",
            "counter",
            "Stream bytes lost to gaps or skipped while resynchronising, by protocol.",
            &per_proto(&|m| &m.bytes_lost),
        );
        family(
            "ebpf_receiver_stream_buffer_overflow_bytes_total",
            "counter",
            "Bytes dropped because a connection's parse buffer hit its cap, by protocol.",
            &per_proto(&|m| &m.buffer_overflow_bytes),
        );
        let mut unmatched = Vec::new();
        for &p in Protocol::ALL {
            let m = self.protocol(p);
            unmatched.push((
                format!("{{protocol=\"{}\",side=\"request\"}}", p.as_str()),
                r(&m.unmatched_requests),
            ));
            unmatched.push((
                format!("{{protocol=\"{}\",side=\"response\"}}", p.as_str()),
                r(&m.unmatched_responses),
            ));
        }
        family(
            "ebpf_receiver_messages_unmatched_total",
            "counter",
            "Requests without a response or responses without a request, by protocol.",
            &unmatched,
        );
        family(
            "ebpf_receiver_spans_created_total",
            "counter",
            "Spans built from request/response exchanges, by protocol.",
            &per_proto(&|m| &m.spans_created),
        );
        family(
            "ebpf_receiver_spans_exported_total",
            "counter",
            "Spans the Collector accepted.",
            &plain(r(&self.spans_exported)),
        );
        family(
            "ebpf_receiver_spans_dropped_total",
            "counter",
            "Spans dropped, by reason.",
            &SpanDrop::ALL
                .iter()
                .map(|d| {
                    (
                        format!("{{reason=\"{}\"}}", d.as_str()),
                        r(&self.spans_dropped[*d as usize]),
                    )
                })
                .collect::<Vec<_>>(),
        );
        family(
            "ebpf_receiver_export_requests_total",
            "counter",
            "OTLP export requests, by outcome.",
            &ExportOutcome::ALL
                .iter()
                .map(|o| {
                    (
                        format!("{{outcome=\"{}\"}}", o.as_str()),
                        r(&self.export_requests[*o as usize]),
                    )
                })
                .collect::<Vec<_>>(),
        );
        family(
            "ebpf_receiver_export_queue_bytes",
            "gauge",
            "Encoded bytes of spans waiting in the export queue.",
            &plain(r(&self.export_queue_bytes)),
        );
        family(
            "ebpf_receiver_export_queue_spans",
            "gauge",
            "Spans waiting in the export queue (created = exported + dropped + queued).",
            &plain(r(&self.export_queue_spans)),
        );
        family(
            "ebpf_receiver_export_queue_capacity_bytes",
            "gauge",
            "Byte budget of the export queue.",
            &plain(r(&self.export_queue_capacity_bytes)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_family_once_with_type_lines() {
        let m = Metrics::default();
        m.kernel_drop(KernelDrop::DataRingFull)
            .fetch_add(3, Ordering::Relaxed);
        m.span_dropped(SpanDrop::QueueFull, 2);
        let text = m.render();
        assert!(text.contains("ebpf_receiver_kernel_drops_total{reason=\"data_ring_full\"} 3"));
        assert!(text.contains("ebpf_receiver_spans_dropped_total{reason=\"queue_full\"} 2"));
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let mut names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(|l| l.split(' ').nth(2).unwrap_or(""))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(types, names.len(), "a metric family is declared twice");
        assert!(names.iter().all(|n| n.starts_with("ebpf_receiver_")));
    }
}
