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
use queue::{Budget, Item};
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
/// At most one warning per this interval for each kind of export problem.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The export task; [`Exporter::run`] owns it.
pub struct Exporter {
    settings: ClientSettings,
    rx: mpsc::UnboundedReceiver<Item>,
    budget: Arc<Budget>,
    metrics: &'static Metrics,
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
        let mut pending: Option<Item> = None;
        while let Some(first) = match pending.take() {
            Some(item) => Some(item),
            None => self.next_item(&mut clock, None).await,
        } {
            let mut batch = Batch::default();
            batch.push(first);
            let flush_at = Instant::now() + self.max_batch_delay;
            while batch.len() < self.max_batch_spans {
                let Some(item) = self.next_item(&mut clock, Some(flush_at)).await else {
                    break;
                };
                if batch.would_exceed(&item, self.max_request_bytes) {
                    pending = Some(item);
                    break;
                }
                batch.push(item);
            }
            self.export(&mut client, batch, &mut clock).await;
            if clock.expired() {
                break;
            }
        }
        // Whatever is left missed the shutdown deadline (or arrived after the last sender left).
        self.rx.close();
        let mut left = pending.map_or((0, 0), |i| (1, i.bytes));
        while let Ok(item) = self.rx.try_recv() {
            left = (left.0 + 1, left.1 + item.bytes);
        }
        if left.0 > 0 {
            self.metrics.span_dropped(SpanDrop::Shutdown, left.0);
            self.budget.release(left.1);
            tracing::warn!(
                spans = left.0,
                "export: spans still queued at the shutdown deadline were dropped"
            );
        }
    }

    /// The next queued span. Before shutdown it waits (until `until`, if given); once shutdown
    /// has begun it only takes what is already queued, so the flush never waits for new spans.
    async fn next_item(&mut self, clock: &mut Clock, until: Option<Instant>) -> Option<Item> {
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
    async fn export(&mut self, client: &mut OtlpClient, batch: Batch, clock: &mut Clock) {
        let spans = batch.len() as u64;
        let queue_bytes = batch.queue_bytes();
        // Encoded once: every attempt sends the same bytes.
        let request = bytes::Bytes::from(prost::Message::encode_to_vec(&batch.into_request()));
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
        self.budget.release(queue_bytes);
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

#[cfg(test)]
mod tests;
