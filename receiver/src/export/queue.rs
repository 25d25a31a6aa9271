//! The queue between span building and export, bounded in encoded bytes.
//!
//! A span's budget is its protobuf `encoded_len`, reserved when it is sent and released only
//! when its batch is finished (exported, rejected or dropped), so the budget bounds everything
//! the exporter holds: queued spans *and* the batch being retried. Items sit in an unbounded
//! tokio channel; the byte budget is what bounds it. `send` never blocks and never waits on the
//! Collector: a full budget drops the span and counts it (`reason=queue_full`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::telemetry::{Metrics, SpanDrop};

/// One span on its way out, with the resource of its process.
#[derive(Debug)]
pub(crate) struct Item {
    pub resource: Arc<Resource>,
    pub span: Span,
    /// Bytes reserved from the budget (`span.encoded_len()`).
    pub bytes: usize,
}

/// The byte budget shared by the senders and the exporter. The gauge
/// `export_queue_bytes` *is* the counter (one atomic, so the gauge is never stale).
pub(crate) struct Budget {
    capacity: u64,
    pub metrics: &'static Metrics,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("used", &self.used())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Budget {
    pub fn new(capacity: usize, metrics: &'static Metrics) -> Budget {
        let capacity = capacity as u64;
        metrics
            .export_queue_capacity_bytes
            .store(capacity, Ordering::Relaxed);
        metrics.export_queue_bytes.store(0, Ordering::Relaxed);
        Budget { capacity, metrics }
    }

    /// Reserves `n` bytes; false when they do not fit.
    fn reserve(&self, n: usize) -> bool {
        let n = n as u64;
        self.metrics
            .export_queue_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|&next| next <= self.capacity)
            })
            .is_ok()
    }

    /// Gives back `n` bytes of finished spans.
    pub fn release(&self, n: usize) {
        let n = n as u64;
        let _ = self.metrics.export_queue_bytes.fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |cur| Some(cur.saturating_sub(n)),
        );
    }

    pub fn used(&self) -> usize {
        self.metrics.export_queue_bytes.load(Ordering::Acquire) as usize
    }
}

/// The producer side of the export queue: cheap to clone, `Send`, never blocks.
#[derive(Clone, Debug)]
pub struct SpanSender {
    tx: mpsc::UnboundedSender<Item>,
    budget: Arc<Budget>,
}

impl SpanSender {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Item>, budget: Arc<Budget>) -> SpanSender {
        SpanSender { tx, budget }
    }

    /// Queues one span for export. Returns false when it was dropped — the byte budget is
    /// exhausted (`reason=queue_full`) or the exporter has stopped (`reason=shutdown`); either
    /// way the drop is already counted.
    pub fn send(&self, resource: Arc<Resource>, span: Span) -> bool {
        let bytes = span.encoded_len();
        if !self.budget.reserve(bytes) {
            self.budget.metrics.span_dropped(SpanDrop::QueueFull, 1);
            return false;
        }
        match self.tx.send(Item {
            resource,
            span,
            bytes,
        }) {
            Ok(()) => true,
            Err(_) => {
                self.budget.release(bytes);
                self.budget.metrics.span_dropped(SpanDrop::Shutdown, 1);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak_metrics() -> &'static Metrics {
        Box::leak(Box::new(Metrics::default()))
    }

    fn span(name_len: usize) -> Span {
        Span {
            name: "x".repeat(name_len),
            ..Default::default()
        }
    }

    #[test]
    fn byte_budget_drops_and_counts_what_does_not_fit() {
        let m = leak_metrics();
        let one = span(100).encoded_len();
        let budget = Arc::new(Budget::new(one * 3 + one / 2, m));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let s = SpanSender::new(tx, budget.clone());
        let res = Arc::new(Resource::default());
        let sent: Vec<bool> = (0..5)
            .map(|_| s.clone().send(res.clone(), span(100)))
            .collect();
        assert_eq!(sent, [true, true, true, false, false]);
        assert_eq!(
            m.spans_dropped[SpanDrop::QueueFull as usize].load(Ordering::Relaxed),
            2
        );
        assert_eq!(
            m.export_queue_bytes.load(Ordering::Relaxed),
            (one * 3) as u64
        );
        assert_eq!(
            m.export_queue_capacity_bytes.load(Ordering::Relaxed),
            (one * 3 + one / 2) as u64
        );
        // Bytes come back only when the exporter releases them, not on receive.
        let item = rx.try_recv().expect("queued");
        assert_eq!(item.bytes, one);
        assert!(!s.send(res.clone(), span(100)));
        budget.release(item.bytes);
        assert!(s.send(res.clone(), span(100)));
        assert_eq!(budget.used(), one * 3);
        // A span larger than the whole budget never fits.
        assert!(!s.send(res, span(one * 4)));
        assert_eq!(
            m.spans_dropped[SpanDrop::QueueFull as usize].load(Ordering::Relaxed),
            4
        );
    }

    #[test]
    fn send_after_the_exporter_stopped_counts_shutdown() {
        let m = leak_metrics();
        let budget = Arc::new(Budget::new(1 << 20, m));
        let (tx, rx) = mpsc::unbounded_channel();
        let s = SpanSender::new(tx, budget.clone());
        drop(rx);
        assert!(!s.send(Arc::new(Resource::default()), span(10)));
        assert_eq!(
            m.spans_dropped[SpanDrop::Shutdown as usize].load(Ordering::Relaxed),
            1
        );
        assert_eq!(budget.used(), 0);
        assert_eq!(m.export_queue_bytes.load(Ordering::Relaxed), 0);
    }
}
