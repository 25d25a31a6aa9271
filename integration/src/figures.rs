//! The figures every load test prints, one line per run, so runs and protocols compare:
//!
//! `[figures] protocol=<name> tool=<tool> requests=<n> spans=<n> invalid_frames=<n>
//! kernel_bytes_per_request=<f> receiver_cpu_us_per_1000=<f>`
//!
//! - kernel bytes: payload bytes the kernel copied to the data ring during the run
//!   (`ebpf_receiver_kernel_bytes_total{stream="data"}` delta) per request;
//! - receiver CPU: utime + stime of the receiver process from `/proc` over the run, in µs per
//!   1,000 requests;
//! - invalid frames: `ebpf_receiver_frames_invalid_total{protocol=…}` delta;
//! - then [`kernel_per_request`]: data events and ring bytes (headers included) per request.

use anyhow::Result;

use crate::load::proc_sample;
use crate::receiver::{Metrics, Receiver};

const KERNEL_BYTES: &str = "ebpf_receiver_kernel_bytes_total{stream=\"data\"}";

/// ` kernel_events_per_request=<f> ring_bytes_per_request=<f>`: data events, and bytes of ring
/// items (headers and payloads of both rings), from the kernel per request between two samples
/// of the receiver's metrics; appended to a `[figures]` line.
pub fn kernel_per_request(before: &Metrics, after: &Metrics, requests: u64) -> String {
    let delta = |k: &str| (after.get(k) - before.get(k)).max(0.0);
    let per = |v: f64| {
        if requests == 0 {
            0.0
        } else {
            v / requests as f64
        }
    };
    let events = delta("ebpf_receiver_kernel_events_total{stream=\"data\"}");
    let bytes = delta("ebpf_receiver_ring_bytes_total{stream=\"data\"}")
        + delta("ebpf_receiver_ring_bytes_total{stream=\"control\"}");
    format!(
        " kernel_events_per_request={:.2} ring_bytes_per_request={:.1}",
        per(events),
        per(bytes)
    )
}

/// Counters at the start of a load run.
pub struct LoadProbe {
    before: Metrics,
    protocol: String,
    cpu_s: f64,
    kernel_bytes: f64,
    invalid: f64,
}

/// What one load run cost, see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub protocol: String,
    pub tool: String,
    pub requests: u64,
    pub spans: u64,
    pub invalid_frames: u64,
    pub kernel_bytes_per_request: f64,
    pub receiver_cpu_us_per_1000: f64,
    /// See [`kernel_per_request`].
    pub kernel: String,
}

fn invalid_key(protocol: &str) -> String {
    format!("ebpf_receiver_frames_invalid_total{{protocol=\"{protocol}\"}}")
}

impl LoadProbe {
    /// Reads the receiver's counters before the run; `protocol` is its metric label.
    pub fn start(receiver: &Receiver, protocol: &str) -> Result<LoadProbe> {
        let m = receiver.metrics()?;
        Ok(LoadProbe {
            protocol: protocol.to_string(),
            cpu_s: proc_sample(receiver.pid())?.cpu_s,
            kernel_bytes: m.get(KERNEL_BYTES),
            invalid: m.get(&invalid_key(protocol)),
            before: m,
        })
    }

    /// Reads them again after the run (once its spans have arrived) and prints the line.
    pub fn finish(
        self,
        receiver: &Receiver,
        tool: &str,
        requests: u64,
        spans: u64,
    ) -> Result<Figures> {
        let m: Metrics = receiver.metrics()?;
        let cpu_s = proc_sample(receiver.pid())?.cpu_s;
        let per = |v: f64| {
            if requests == 0 {
                0.0
            } else {
                v / requests as f64
            }
        };
        let f = Figures {
            tool: tool.to_string(),
            requests,
            spans,
            invalid_frames: (m.get(&invalid_key(&self.protocol)) - self.invalid).max(0.0) as u64,
            kernel_bytes_per_request: per(m.get(KERNEL_BYTES) - self.kernel_bytes),
            receiver_cpu_us_per_1000: per((cpu_s - self.cpu_s) * 1e9),
            kernel: kernel_per_request(&self.before, &m, requests),
            protocol: self.protocol,
        };
        println!("{f}");
        Ok(f)
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[figures] protocol={} tool={} requests={} spans={} invalid_frames={} \
             kernel_bytes_per_request={:.1} receiver_cpu_us_per_1000={:.0}{}",
            self.protocol,
            self.tool,
            self.requests,
            self.spans,
            self.invalid_frames,
            self.kernel_bytes_per_request,
            self.receiver_cpu_us_per_1000,
            self.kernel
        )
    }
}
