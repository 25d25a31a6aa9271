//! The queue between span encoding and export, bounded in encoded bytes.
//!
//! The capture task encodes each span once, straight into the current [`Chunk`] of its
//! [`SpanSender`] (one buffer of back-to-back `ScopeSpans.spans` fields), and hands the chunk
//! over once per drain round ([`SpanSender::flush`]): one channel message and at most one wakeup
//! of the export task per round, not per span. The exporter copies span bytes from chunks into
//! its requests and returns the empty chunks to a small pool, so in steady state nothing is
//! allocated per span or per round.
//!
//! A span's budget is its encoded size, reserved when it is encoded and released only when its
//! batch is finished (exported, rejected or dropped), so the budget bounds everything the
//! exporter holds: chunks in the channel, the batch being filled *and* the batch being retried.
//! The channel itself is unbounded; the byte budget is what bounds it. Encoding never blocks and
//! never waits on the Collector: a full budget drops the span and counts it
//! (`reason=queue_full`).
//!
//! **Backlog chunks.** While the exporter is behind (the Collector away or slow: more than
//! [`BACKLOG_BYTES`] queued), the sender stops handing over a small chunk per round and fills
//! one large chunk instead (so does a single round larger than that, a burst of pipelined
//! requests), reserved at [`BACKLOG_CHUNK_BYTES`], and handed over the moment it is full, so
//! it never grows: at that size glibc maps it on its own (`M_MMAP_THRESHOLD`, `app.rs`), only
//! the pages written become resident, and the whole chunk goes back to the kernel when the
//! exporter is done with it. So an outage's backlog never lives in the heap, and the heap does
//! not stay fragmented and larger after it (the soak's RSS flatness across a Collector restart,
//! issue 8 R13).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::span::EncodedResource;
use crate::telemetry::{Metrics, SpanDrop};

/// Empty chunks kept for reuse.
const POOL_CHUNKS: usize = 4;
/// A chunk whose buffer grew past this is not kept (a burst or a backlog must not pin its
/// memory).
const POOL_MAX_CHUNK_BYTES: usize = BACKLOG_BYTES;
/// Queued bytes past which the exporter counts as behind and the sender fills backlog chunks.
/// Steady operation queues a round or two: at 100k spans/s of ~300 B a 10 ms round is about
/// 300 KiB, so the bound is a few of those (at 256 KiB, a redis load at 90k spans/s sent every
/// round through a fresh 4 MiB backlog mapping: 4 % of the receiver's CPU copying it and as
/// much again faulting its pages in). A Collector away for a second at ten thousand spans/s
/// queues about 3 MiB.
pub(crate) const BACKLOG_BYTES: usize = 1 << 20;
/// The reserved size of a backlog chunk's span bytes: glibc's `M_MMAP_THRESHOLD` as `app.rs`
/// sets it, so the block is a mapping of its own.
pub(crate) const BACKLOG_CHUNK_BYTES: usize = 4 << 20;
/// A backlog chunk is handed over once it is this close to its reserved size (no span comes
/// near it: attributes are capped), so it never reallocates into the heap.
const BACKLOG_CHUNK_SLACK: usize = 256 << 10;
/// Span entries reserved in a backlog chunk: as many bytes as its span bytes, so that vector
/// is mapped on its own too.
const BACKLOG_CHUNK_SPANS: usize = BACKLOG_CHUNK_BYTES / std::mem::size_of::<(u32, u32)>();

/// Spans encoded in one drain round, with the resources they belong to.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Encoded spans, back to back.
    buf: Vec<u8>,
    /// Per span: its resource (an index into `resources`) and where it ends in `buf`.
    spans: Vec<(u32, u32)>,
    resources: Vec<Arc<EncodedResource>>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Span `i`: its resource and its bytes.
    pub fn span(&self, i: usize) -> Option<(&Arc<EncodedResource>, &[u8])> {
        let &(r, end) = self.spans.get(i)?;
        let start = match i.checked_sub(1) {
            Some(p) => self.spans.get(p).map_or(0, |s| s.1 as usize),
            None => 0,
        };
        Some((
            self.resources.get(r as usize)?,
            self.buf.get(start..end as usize)?,
        ))
    }

    /// Encoded bytes of spans `from..`.
    pub fn bytes_from(&self, from: usize) -> usize {
        let start = match from.checked_sub(1) {
            Some(p) => self.spans.get(p).map_or(0, |s| s.1 as usize),
            None => 0,
        };
        self.buf.len().saturating_sub(start)
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.resources.clear();
    }

    /// Whether this is a backlog chunk (reserved at [`BACKLOG_CHUNK_BYTES`]).
    fn is_backlog(&self) -> bool {
        self.buf.capacity() >= BACKLOG_CHUNK_BYTES
    }

    /// Turns this chunk into a backlog chunk: its bytes and span entries move into blocks
    /// reserved at the backlog size (mapped on their own); the small heap blocks are freed.
    fn make_backlog(&mut self) {
        if self.is_backlog() {
            return;
        }
        let mut buf = Vec::with_capacity(BACKLOG_CHUNK_BYTES);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
        let mut spans = Vec::with_capacity(BACKLOG_CHUNK_SPANS);
        spans.extend_from_slice(&self.spans);
        self.spans = spans;
    }

    /// A backlog chunk that should be handed over before it would grow.
    fn backlog_full(&self) -> bool {
        self.buf.len() + BACKLOG_CHUNK_SLACK > BACKLOG_CHUNK_BYTES
            || self.spans.len() + BACKLOG_CHUNK_SLACK / 16 > BACKLOG_CHUNK_SPANS
    }
}

/// The byte budget shared by the sender and the exporter, and the pool of empty chunks. The
/// gauge `export_queue_bytes` *is* the counter (one atomic, so the gauge is never stale).
pub(crate) struct Budget {
    capacity: u64,
    pub metrics: &'static Metrics,
    pool: Mutex<Vec<Chunk>>,
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
        metrics.export_queue_spans.store(0, Ordering::Relaxed);
        Budget {
            capacity,
            metrics,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Reserves `n` bytes for one span; false when they do not fit. Only the sender reserves,
    /// so a plain load and add would do; `fetch_update` keeps it correct for any number of
    /// senders.
    fn reserve(&self, n: usize) -> bool {
        let n = n as u64;
        let ok = self
            .metrics
            .export_queue_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|&next| next <= self.capacity)
            })
            .is_ok();
        if ok {
            self.metrics
                .export_queue_spans
                .fetch_add(1, Ordering::AcqRel);
        }
        ok
    }

    /// Gives back the `bytes` of `spans` finished spans (exported, rejected or dropped).
    pub fn release(&self, bytes: usize, spans: u64) {
        let sub = |a: &std::sync::atomic::AtomicU64, n: u64| {
            if n > 0 {
                let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    Some(cur.saturating_sub(n))
                });
            }
        };
        sub(&self.metrics.export_queue_bytes, bytes as u64);
        sub(&self.metrics.export_queue_spans, spans);
    }

    pub fn used(&self) -> usize {
        self.metrics.export_queue_bytes.load(Ordering::Acquire) as usize
    }

    /// Returns a consumed chunk for reuse.
    pub fn recycle(&self, mut chunk: Chunk) {
        if chunk.buf.capacity() > POOL_MAX_CHUNK_BYTES {
            return;
        }
        chunk.clear();
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL_CHUNKS
        {
            pool.push(chunk);
        }
    }

    fn fresh_chunk(&self) -> Chunk {
        self.pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default()
    }
}

/// The producer side of the export queue, owned by the capture task: never blocks.
#[derive(Debug)]
pub struct SpanSender {
    tx: mpsc::UnboundedSender<Chunk>,
    budget: Arc<Budget>,
    chunk: Chunk,
    /// `Arc::as_ptr` of the resource of the chunk's last span, and its index there.
    last_resource: Option<(usize, u32)>,
}

impl SpanSender {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Chunk>, budget: Arc<Budget>) -> SpanSender {
        SpanSender {
            tx,
            budget,
            chunk: Chunk::default(),
            last_resource: None,
        }
    }

    /// Encodes one span with `encode` (which appends exactly one `ScopeSpans.spans` field to
    /// the buffer it is given) into the current chunk. Returns false when the span was dropped
    /// because the byte budget is exhausted (counted, `reason=queue_full`).
    pub fn encode(
        &mut self,
        resource: &Arc<EncodedResource>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let start = self.chunk.buf.len();
        encode(&mut self.chunk.buf);
        let n = self.chunk.buf.len() - start;
        let Ok(end) = u32::try_from(self.chunk.buf.len()) else {
            // A chunk past 4 GiB: impossible with the budget's bounds, but never wrong.
            self.chunk.buf.truncate(start);
            self.budget.metrics.span_dropped(SpanDrop::QueueFull, 1);
            return false;
        };
        if !self.budget.reserve(n) {
            self.chunk.buf.truncate(start);
            self.budget.metrics.span_dropped(SpanDrop::QueueFull, 1);
            return false;
        }
        let key = Arc::as_ptr(resource) as usize;
        let index = match self.last_resource {
            Some((k, i)) if k == key => i,
            _ => {
                let found = self
                    .chunk
                    .resources
                    .iter()
                    .position(|r| Arc::as_ptr(r) as usize == key);
                let i = found.unwrap_or_else(|| {
                    self.chunk.resources.push(resource.clone());
                    self.chunk.resources.len() - 1
                }) as u32;
                self.last_resource = Some((key, i));
                i
            }
        };
        self.chunk.spans.push((index, end));
        // A round that alone outgrows a small chunk (a burst of pipelined requests) moves into
        // a backlog chunk rather than doubling in the heap; a full backlog chunk goes at once,
        // not at the end of the round, so it never grows (reallocates) past its size.
        // The move happens a slack before `BACKLOG_BYTES`, so a small chunk's buffer never
        // doubles past the size the pool keeps (`POOL_MAX_CHUNK_BYTES`).
        if !self.chunk.is_backlog() {
            if self.chunk.buf.len() + BACKLOG_CHUNK_SLACK > BACKLOG_BYTES {
                self.chunk.make_backlog();
            }
        } else if self.chunk.backlog_full() {
            self.hand_over();
        }
        true
    }

    /// Hands the spans encoded since the last flush to the exporter, once per drain round.
    /// While the exporter is behind, the spans go on filling one backlog chunk instead (see
    /// the module documentation), handed over when it is full or the exporter has caught up.
    /// Returns false when the exporter has stopped: those spans are dropped and counted
    /// (`reason=shutdown`).
    pub fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        // Behind: keep filling a backlog chunk (`encode` hands it over once it is full).
        let mine = self.chunk.buf.len();
        if self.budget.used().saturating_sub(mine) > BACKLOG_BYTES {
            self.chunk.make_backlog();
            return true;
        }
        self.hand_over()
    }

    /// Hands the current chunk over whatever the backlog (shutdown).
    pub fn flush_all(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        self.hand_over()
    }

    fn hand_over(&mut self) -> bool {
        self.last_resource = None;
        let chunk = std::mem::replace(&mut self.chunk, self.budget.fresh_chunk());
        match self.tx.send(chunk) {
            Ok(()) => true,
            Err(mpsc::error::SendError(chunk)) => {
                self.budget.release(chunk.buf.len(), chunk.len() as u64);
                self.budget
                    .metrics
                    .span_dropped(SpanDrop::Shutdown, chunk.len() as u64);
                false
            }
        }
    }

    /// One prost span for one prost resource, flushed at once (tests and tools; the capture
    /// task encodes directly). Resources are told apart by the identity of their `Arc`.
    #[cfg(test)]
    pub(crate) fn send(
        &mut self,
        resource: &Arc<EncodedResource>,
        span: opentelemetry_proto::tonic::trace::v1::Span,
    ) -> bool {
        let ok = self.encode(resource, |buf| {
            prost::encoding::message::encode(crate::span::wire::SCOPE_SPANS_SPANS, &span, buf)
        });
        self.flush() && ok
    }
}

impl Drop for SpanSender {
    fn drop(&mut self) {
        self.flush_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn leak_metrics() -> &'static Metrics {
        Box::leak(Box::new(Metrics::default()))
    }

    fn span(name_len: usize) -> Span {
        Span {
            name: "x".repeat(name_len),
            ..Default::default()
        }
    }

    /// Budget bytes of one span: its `ScopeSpans.spans` field.
    fn cost(s: &Span) -> usize {
        prost::encoding::message::encoded_len(crate::span::wire::SCOPE_SPANS_SPANS, s)
    }

    fn res() -> Arc<EncodedResource> {
        Arc::new(EncodedResource::new(&Resource::default()))
    }

    #[test]
    fn byte_budget_drops_and_counts_what_does_not_fit() {
        let m = leak_metrics();
        let one = cost(&span(100));
        let budget = Arc::new(Budget::new(one * 3 + one / 2, m));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = SpanSender::new(tx, budget.clone());
        let res = res();
        let sent: Vec<bool> = (0..5).map(|_| s.send(&res, span(100))).collect();
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
        let chunk = rx.try_recv().expect("queued");
        assert_eq!(chunk.len(), 1);
        assert_eq!(chunk.bytes_from(0), one);
        assert!(!s.send(&res, span(100)));
        assert_eq!(m.export_queue_spans.load(Ordering::Relaxed), 3);
        budget.release(one, 1);
        assert_eq!(m.export_queue_spans.load(Ordering::Relaxed), 2);
        assert!(s.send(&res, span(100)));
        assert_eq!(budget.used(), one * 3);
        // A span larger than the whole budget never fits.
        assert!(!s.send(&res, span(one * 4)));
        assert_eq!(
            m.spans_dropped[SpanDrop::QueueFull as usize].load(Ordering::Relaxed),
            4
        );
    }

    #[test]
    fn spans_of_a_round_travel_as_one_chunk_with_their_resources() {
        let m = leak_metrics();
        let budget = Arc::new(Budget::new(1 << 20, m));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = SpanSender::new(tx, budget.clone());
        let (a, b) = (res(), res());
        for r in [&a, &b, &a, &a] {
            assert!(s.encode(r, |buf| buf.extend_from_slice(b"span")));
        }
        assert!(rx.try_recv().is_err(), "nothing before the flush");
        assert!(s.flush());
        let chunk = rx.try_recv().expect("one chunk");
        assert!(rx.try_recv().is_err());
        assert_eq!(chunk.len(), 4);
        let owners: Vec<bool> = (0..4)
            .map(|i| Arc::ptr_eq(chunk.span(i).unwrap().0, &a))
            .collect();
        assert_eq!(owners, [true, false, true, true]);
        assert_eq!(chunk.span(2).unwrap().1, b"span");
        assert_eq!(chunk.resources.len(), 2);
        assert_eq!(budget.used(), 16);
        budget.recycle(chunk);
        assert_eq!(budget.fresh_chunk().len(), 0);
    }

    #[test]
    fn a_backlog_fills_large_chunks_outside_the_heap_and_none_is_pooled() {
        let m = leak_metrics();
        let budget = Arc::new(Budget::new(64 << 20, m));
        let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
        let mut s = SpanSender::new(tx, budget.clone());
        let r = res();
        let span = [7u8; 1000];
        let mut sent = 0usize;
        // Rounds of 10 spans; the exporter takes nothing (the Collector is away).
        let mut round = |s: &mut SpanSender| {
            for _ in 0..10 {
                assert!(s.encode(&r, |b| b.extend_from_slice(&span)));
            }
            sent += 10;
            assert!(s.flush());
        };
        let mut small = 0;
        while budget.used() <= BACKLOG_BYTES {
            round(&mut s);
            small += 1;
        }
        let mut got: Vec<Chunk> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), small, "one chunk per round before the backlog");
        assert!(got.iter().all(|c| !c.is_backlog() && c.len() == 10));
        // Behind: rounds go on filling one backlog chunk, handed over only when nearly full.
        for _ in 0..1000 {
            round(&mut s);
        }
        let backlog: Vec<Chunk> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(backlog.len(), 2, "10 MB of spans in 4 MiB chunks, one held");
        for c in &backlog {
            assert!(c.is_backlog());
            assert_eq!(c.buf.capacity(), BACKLOG_CHUNK_BYTES, "never reallocated");
            assert!(c.buf.len() + BACKLOG_CHUNK_SLACK + span.len() > BACKLOG_CHUNK_BYTES);
        }
        got.extend(backlog);
        // The exporter catches up: the held chunk goes at the next flush, spans or not.
        let mut handed = 0;
        for c in got.drain(..) {
            handed += c.len();
            budget.release(c.bytes_from(0), c.len() as u64);
            budget.recycle(c);
        }
        assert!(s.flush());
        let last = rx.try_recv().expect("the held chunk");
        assert!(last.is_backlog());
        assert_eq!(handed + last.len(), sent, "every span in exactly one chunk");
        budget.release(last.bytes_from(0), last.len() as u64);
        budget.recycle(last);
        assert_eq!(budget.used(), 0);
        // Only the small chunks were pooled; a fresh chunk is never a backlog one.
        let pooled = budget.pool.lock().unwrap();
        assert!(pooled.len() <= POOL_CHUNKS);
        assert!(pooled.iter().all(|c| !c.is_backlog()));
    }

    #[test]
    fn a_round_larger_than_the_slack_never_grows_a_backlog_chunk() {
        let m = leak_metrics();
        let budget = Arc::new(Budget::new(64 << 20, m));
        let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
        let mut s = SpanSender::new(tx, budget.clone());
        let r = res();
        let span = [1u8; 700];
        // Rounds of 3,000 spans (2.1 MB, eight times the slack and the backlog threshold) while
        // nothing is exported.
        for _ in 0..20 {
            for _ in 0..3000 {
                assert!(s.encode(&r, |b| b.extend_from_slice(&span)));
            }
            assert!(s.flush());
        }
        let chunks: Vec<Chunk> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let total: usize = chunks.iter().map(Chunk::len).sum::<usize>() + s.chunk.len();
        assert_eq!(total, 60_000);
        for c in chunks.iter().filter(|c| c.is_backlog()) {
            assert_eq!(c.buf.capacity(), BACKLOG_CHUNK_BYTES);
            assert!(c.buf.len() <= BACKLOG_CHUNK_BYTES);
        }
        assert!(chunks.iter().filter(|c| c.is_backlog()).count() >= 9);
        // A round that large never doubles in the heap: it moved into a backlog chunk as soon
        // as it passed the backlog threshold.
        assert!(chunks.iter().all(|c| c.is_backlog()));
    }

    #[test]
    fn flush_after_the_exporter_stopped_counts_shutdown() {
        let m = leak_metrics();
        let budget = Arc::new(Budget::new(1 << 20, m));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = SpanSender::new(tx, budget.clone());
        drop(rx);
        assert!(!s.send(&res(), span(10)));
        assert_eq!(
            m.spans_dropped[SpanDrop::Shutdown as usize].load(Ordering::Relaxed),
            1
        );
        assert_eq!(budget.used(), 0);
        assert_eq!(m.export_queue_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(m.export_queue_spans.load(Ordering::Relaxed), 0);
    }
}
