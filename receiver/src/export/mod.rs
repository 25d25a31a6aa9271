//! Bounded queue, micro-batches, OTLP/gRPC client, retry per the OTLP spec, partial success,
//! shutdown flush.
//!
//! ```text
//! SpanSender::send ──(byte budget, full ⇒ drop queue_full)──► channel ──► Exporter::run
//!     batch: ≤ max_batch_spans, ≤ max_batch_delay_ms after its first span, ≤ max_request_bytes
//!     export: one RPC at a time; retryable codes back off (jitter, RetryInfo floor) until
//!             retry_max_elapsed_ms ⇒ drop export_failed; permanent codes ⇒ drop export_failed;
//!             partial success ⇒ rejected_spans dropped `rejected`, never retried
//!     shutdown: stop waiting for batches to fill, flush what is queued for at most
//!             shutdown_timeout_ms, count the rest as dropped `shutdown`
//! ```
//!
//! Accounting: every span handed to [`SpanSender::send`] ends in exactly one of
//! `spans_exported`, `spans_dropped{reason}`, or is still counted in `export_queue_bytes`.
//! Retries are not drops. Delivery is at-least-once: a request that timed out on our side may
//! have reached the Collector and is sent again.
//!
//! Exports are sequential: a sidecar talks to a Collector on loopback, where one request in
//! flight keeps up (the spec allows concurrency; it would reorder batches and complicate the
//! budget for no gain here). While a batch is retried new spans wait in the queue, bounded by
//! its byte budget, which covers the batch in flight too.

mod batch;
mod client;
mod queue;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ExporterConfig;
use crate::telemetry::{ExportOutcome, Metrics, SpanDrop};
use batch::Batch;
use client::{ClientSettings, OtlpClient};
use queue::{Budget, Chunk};
use retry::{Backoff, Retry};

pub use queue::SpanSender;

/// Something wrong with the exporter settings.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("exporter endpoint `{endpoint}`: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("exporter header `{name}`: {reason}")]
    Header { name: String, reason: String },
    #[error("`{field}`: {reason}")]
    Config { field: &'static str, reason: String },
}

/// Smallest `max_request_bytes` we accept: room for one resource group and a few spans.
const MIN_REQUEST_BYTES: usize = 4096;
/// A request buffer larger than this is not kept for the next request.
const MAX_KEPT_REQUEST_BYTES: usize = 8 << 20;
/// At most one warning per this interval for each kind of export problem.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The export task; [`Exporter::run`] owns it.
pub struct Exporter {
    settings: ClientSettings,
    rx: mpsc::UnboundedReceiver<Chunk>,
    budget: Arc<Budget>,
    metrics: &'static Metrics,
    /// The buffer of the last request, reused when the transport let go of it.
    request_buf: Vec<u8>,
    max_batch_spans: usize,
    max_batch_delay: Duration,
    max_request_bytes: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_elapsed: Duration,
    shutdown_timeout: Duration,
    failed_log: LogLimit,
    partial_log: LogLimit,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("queued_bytes", &self.budget.used())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Validates the settings and creates the exporter and its sender. Connects nothing.
    pub fn new(cfg: &ExporterConfig) -> Result<(Exporter, SpanSender), ExportError> {
        Exporter::with_metrics(cfg, crate::telemetry::metrics())
    }

    /// [`Exporter::new`] counting into `metrics` (tests use their own).
    pub(crate) fn with_metrics(
        cfg: &ExporterConfig,
        metrics: &'static Metrics,
    ) -> Result<(Exporter, SpanSender), ExportError> {
        let settings = ClientSettings::from_config(cfg)?;
        let positive = |field: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ExportError::Config {
                    field,
                    reason: "must be greater than 0".into(),
                })
            }
        };
        positive("exporter.max_batch_spans", cfg.max_batch_spans > 0)?;
        positive("exporter.max_queue_bytes", cfg.max_queue_bytes > 0)?;
        positive(
            "exporter.retry_initial_backoff_ms",
            cfg.retry_initial_backoff_ms > 0,
        )?;
        if cfg.max_request_bytes < MIN_REQUEST_BYTES {
            return Err(ExportError::Config {
                field: "exporter.max_request_bytes",
                reason: format!("must be at least {MIN_REQUEST_BYTES}"),
            });
        }
        let budget = Arc::new(Budget::new(cfg.max_queue_bytes, metrics));
        let (tx, rx) = mpsc::unbounded_channel();
        let exporter = Exporter {
            settings,
            rx,
            budget: budget.clone(),
            metrics,
            request_buf: Vec::new(),
            max_batch_spans: cfg.max_batch_spans,
            max_batch_delay: Duration::from_millis(cfg.max_batch_delay_ms),
            max_request_bytes: cfg.max_request_bytes,
            initial_backoff: Duration::from_millis(cfg.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(cfg.retry_max_backoff_ms),
            max_elapsed: Duration::from_millis(cfg.retry_max_elapsed_ms),
            shutdown_timeout: Duration::from_millis(cfg.shutdown_timeout_ms),
            failed_log: LogLimit::default(),
            partial_log: LogLimit::default(),
        };
        Ok((exporter, SpanSender::new(tx, budget)))
    }

    /// Exports until `shutdown` is cancelled (or every sender is dropped), then flushes what is
    /// queued for at most `shutdown_timeout_ms` and returns. Must run inside a tokio runtime.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut client = OtlpClient::connect(&self.settings);
        let mut clock = Clock {
            shutdown,
            deadline: None,
            timeout: self.shutdown_timeout,
        };
        let mut cur: Option<Cursor> = None;
        let mut batch = Batch::default();
        loop {
            // A span to start the next batch with.
            if cur.as_ref().is_none_or(Cursor::done) {
                if let Some(c) = cur.take() {
                    self.budget.recycle(c.chunk);
                }
                match self.next_chunk(&mut clock, None).await {
                    Some(chunk) => cur = Some(Cursor::new(chunk)),
                    None => break,
                }
                continue;
            }
            let flush_at = Instant::now() + self.max_batch_delay;
            while let Some(c) = cur.as_mut() {
                let max = (self.max_batch_spans, self.max_request_bytes);
                if fill(&mut batch, c, max.0, max.1) == Fill::Full {
                    break;
                }
                if let Some(done) = cur.take() {
                    self.budget.recycle(done.chunk);
                }
                cur = self
                    .next_chunk(&mut clock, Some(flush_at))
                    .await
                    .map(Cursor::new);
            }
            self.export(&mut client, &mut batch, &mut clock).await;
            if clock.expired() {
                break;
            }
        }
        // Whatever is left missed the shutdown deadline (or arrived after the last sender left).
        self.rx.close();
        let mut left = cur.map_or((0, 0), |c| c.left());
        while let Ok(chunk) = self.rx.try_recv() {
            left = (left.0 + chunk.len() as u64, left.1 + chunk.bytes_from(0));
        }
        if left.0 > 0 {
            self.metrics.span_dropped(SpanDrop::Shutdown, left.0);
            self.budget.release(left.1, left.0);
            tracing::warn!(
                spans = left.0,
                "export: spans still queued at the shutdown deadline were dropped"
            );
        }
    }

    /// The next queued chunk of spans. Before shutdown it waits (until `until`, if given); once
    /// shutdown has begun it only takes what is already queued, so the flush never waits for
    /// new spans.
    async fn next_chunk(&mut self, clock: &mut Clock, until: Option<Instant>) -> Option<Chunk> {
        if clock.deadline.is_none() {
            let sleep = async {
                match until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            // Cancellation first: under a constant stream of spans the other arms are always
            // ready, and shutdown must still begin.
            tokio::select! {
                biased;
                () = clock.shutdown.cancelled() => clock.begin_shutdown(),
                item = self.rx.recv() => return item,
                () = sleep => return None,
            }
        }
        if clock.expired() {
            None
        } else {
            self.rx.try_recv().ok()
        }
    }

    /// Sends one batch until it is accepted, rejected, out of retries or out of time.
    async fn export(&mut self, client: &mut OtlpClient, batch: &mut Batch, clock: &mut Clock) {
        let spans = batch.len() as u64;
        let queue_bytes = batch.queue_bytes();
        // Encoded once: every attempt sends the same bytes.
        let mut buf = std::mem::take(&mut self.request_buf);
        buf.clear();
        batch.encode_into(&mut buf);
        let used = buf.len();
        let request = bytes::Bytes::from(buf);
        let started = Instant::now();
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        let m = self.metrics;
        loop {
            let Some(result) = clock.wait(client.export(request.clone())).await else {
                m.export_request(ExportOutcome::Failed);
                m.span_dropped(SpanDrop::Shutdown, spans);
                break;
            };
            match result {
                Ok(resp) => {
                    self.accepted(spans, resp);
                    break;
                }
                Err(status) => {
                    let drop_as = match retry::classify(&status) {
                        Retry::Never => Some(SpanDrop::ExportFailed),
                        Retry::After(hint) => {
                            let delay = backoff.next_delay(hint);
                            if started.elapsed() + delay > self.max_elapsed {
                                Some(SpanDrop::ExportFailed)
                            } else if clock.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                                Some(SpanDrop::Shutdown)
                            } else {
                                m.export_request(ExportOutcome::Retried);
                                tracing::debug!(code = ?status.code(), ?delay, "export: retrying");
                                if clock.wait(tokio::time::sleep(delay)).await.is_none() {
                                    m.span_dropped(SpanDrop::Shutdown, spans);
                                    break;
                                }
                                None
                            }
                        }
                    };
                    if let Some(reason) = drop_as {
                        m.export_request(ExportOutcome::Failed);
                        m.span_dropped(reason, spans);
                        if let Some(suppressed) = self.failed_log.allow() {
                            tracing::warn!(
                                code = ?status.code(),
                                message = status.message(),
                                spans,
                                reason = reason.as_str(),
                                suppressed,
                                "export: batch dropped"
                            );
                        }
                        break;
                    }
                }
            }
        }
        self.budget.release(queue_bytes, spans);
        // The transport copied the request: take the buffer back unless it is still shared.
        if let Ok(buf) = request.try_into_mut()
            && buf.capacity() <= MAX_KEPT_REQUEST_BYTES
        {
            let mut buf: Vec<u8> = buf.into();
            batch::shrink_after_use(&mut buf, used);
            self.request_buf = buf;
        }
    }

    /// Counts an accepted request, honouring partial success (never retried).
    fn accepted(&mut self, spans: u64, resp: ExportTraceServiceResponse) {
        let m = self.metrics;
        let Some(partial) = resp
            .partial_success
            .filter(|p| p.rejected_spans != 0 || !p.error_message.is_empty())
        else {
            m.export_request(ExportOutcome::Success);
            m.spans_exported
                .fetch_add(spans, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let rejected = u64::try_from(partial.rejected_spans)
            .unwrap_or(0)
            .min(spans);
        m.export_request(ExportOutcome::PartialSuccess);
        m.spans_exported
            .fetch_add(spans - rejected, std::sync::atomic::Ordering::Relaxed);
        m.span_dropped(SpanDrop::Rejected, rejected);
        if let Some(suppressed) = self.partial_log.allow() {
            tracing::warn!(
                rejected,
                spans,
                message = partial.error_message.as_str(),
                suppressed,
                "export: the Collector rejected part of a request"
            );
        }
    }
}

/// Shutdown state: before cancellation there is no deadline; after it, everything must finish
/// by `deadline`.
struct Clock {
    shutdown: CancellationToken,
    deadline: Option<Instant>,
    timeout: Duration,
}

impl Clock {
    fn begin_shutdown(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.timeout);
        }
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Awaits `fut`; `None` when the shutdown deadline passed first. Cancellation does not abort
    /// `fut` (an RPC in flight may still succeed, a backoff still ends), it only bounds it.
    async fn wait<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        if self.deadline.is_none() {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = self.shutdown.cancelled() => self.begin_shutdown(),
            }
        }
        tokio::time::timeout_at(self.deadline?, fut).await.ok()
    }
}

/// Lets one log line through per [`LOG_INTERVAL`] and counts the ones it held back.
#[derive(Debug, Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A chunk being consumed span by span.
struct Cursor {
    chunk: Chunk,
    next: usize,
}

impl Cursor {
    fn new(chunk: Chunk) -> Cursor {
        Cursor { chunk, next: 0 }
    }

    fn done(&self) -> bool {
        self.next >= self.chunk.len()
    }

    /// Spans and budget bytes not taken yet.
    fn left(&self) -> (u64, usize) {
        (
            self.chunk.len().saturating_sub(self.next) as u64,
            self.chunk.bytes_from(self.next),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// The batch reached a limit; the cursor keeps the spans it did not take.
    Full,
    /// The chunk is consumed.
    Consumed,
}

/// Moves spans from `cur` into `batch` until the batch is full (`max_spans`, or the next span
/// would take it past `max_request_bytes`) or the chunk is consumed.
fn fill(batch: &mut Batch, cur: &mut Cursor, max_spans: usize, max_request_bytes: usize) -> Fill {
    while let Some((resource, span)) = cur.chunk.span(cur.next) {
        if batch.len() >= max_spans || batch.would_exceed(resource, span, max_request_bytes) {
            return Fill::Full;
        }
        batch.push(resource, span);
        cur.next += 1;
    }
    Fill::Consumed
}

/// The exporter without the network, for the replay benchmark: takes what the sender queued,
/// forms the same batches [`Exporter::run`] would (span and byte limits; no delay, everything
/// queued is ready) and hands each encoded `ExportTraceServiceRequest` to a closure.
#[doc(hidden)]
pub struct Offline {
    rx: mpsc::UnboundedReceiver<Chunk>,
    budget: Arc<Budget>,
    max_batch_spans: usize,
    max_request_bytes: usize,
    cur: Option<Cursor>,
    batch: Batch,
    request: Vec<u8>,
}

impl Offline {
    pub fn new(cfg: &ExporterConfig, metrics: &'static Metrics) -> (Offline, SpanSender) {
        let budget = Arc::new(Budget::new(cfg.max_queue_bytes, metrics));
        let (tx, rx) = mpsc::unbounded_channel();
        let offline = Offline {
            rx,
            budget: budget.clone(),
            max_batch_spans: cfg.max_batch_spans.max(1),
            max_request_bytes: cfg.max_request_bytes,
            cur: None,
            batch: Batch::default(),
            request: Vec::new(),
        };
        (offline, SpanSender::new(tx, budget))
    }

    /// Encodes every queued span into requests; returns the number of requests.
    pub fn pump(&mut self, mut out: impl FnMut(&[u8])) -> usize {
        let mut requests = 0;
        loop {
            let full = match self.cur.as_mut() {
                Some(c) => {
                    fill(
                        &mut self.batch,
                        c,
                        self.max_batch_spans,
                        self.max_request_bytes,
                    ) == Fill::Full
                }
                None => false,
            };
            if !full {
                if let Some(c) = self.cur.take() {
                    self.budget.recycle(c.chunk);
                }
                if let Ok(chunk) = self.rx.try_recv() {
                    self.cur = Some(Cursor::new(chunk));
                    continue;
                }
            }
            if self.batch.is_empty() {
                return requests;
            }
            let (queue_bytes, spans) = (self.batch.queue_bytes(), self.batch.len() as u64);
            self.request.clear();
            self.batch.encode_into(&mut self.request);
            out(&self.request);
            self.budget.release(queue_bytes, spans);
            requests += 1;
        }
    }
}

#[cfg(test)]
mod tests;
