//! Component tests: the exporter against an in-process OTLP/gRPC server (opentelemetry_proto's
//! `TraceServiceServer`) that answers from a script. Each test counts into its own leaked
//! `Metrics`, so tests running in parallel never see each other's counters.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::*;
use crate::config::Compression;
use crate::span::{EncodedResource, kv_int, kv_str};

type Reply = Result<ExportTraceServiceResponse, Status>;

/// What the mock saw of one call.
#[derive(Clone, Debug)]
struct Call {
    at: Instant,
    /// Span names per `ResourceSpans`, with the resource's `process.pid`.
    groups: Vec<(i64, Vec<String>)>,
    user_agent: String,
    api_key: Option<String>,
    has_timeout: bool,
    gzip: bool,
}

#[derive(Default)]
struct Mock {
    /// Replies in order; when empty, success.
    script: Mutex<VecDeque<Reply>>,
    calls: Mutex<Vec<Call>>,
    /// Spans the mock answered OK for, by name → times.
    accepted: Mutex<HashMap<String, usize>>,
    /// Never answer (a stopped Collector).
    hang: std::sync::atomic::AtomicBool,
}

#[tonic::async_trait]
impl TraceService for Mock {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        if self.hang.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        let md = request.metadata();
        let text = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let user_agent = text("user-agent").unwrap_or_default();
        let api_key = text("x-api-key");
        let has_timeout = md.get("grpc-timeout").is_some();
        let gzip = text("grpc-encoding").as_deref() == Some("gzip");
        let req = request.into_inner();
        let groups = req
            .resource_spans
            .iter()
            .map(|rs| {
                let pid = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "process.pid"))
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i) => {
                            Some(*i)
                        }
                        _ => None,
                    })
                    .unwrap_or(-1);
                let names = rs
                    .scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.iter().map(|s| s.name.clone()))
                    .collect();
                (pid, names)
            })
            .collect::<Vec<_>>();
        self.calls.lock().unwrap().push(Call {
            at: Instant::now(),
            groups: groups.clone(),
            user_agent,
            api_key,
            has_timeout,
            gzip,
        });
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(Default::default()));
        if let Ok(resp) = &reply {
            let rejected = resp
                .partial_success
                .as_ref()
                .map_or(0, |p| p.rejected_spans);
            if rejected == 0 {
                let mut acc = self.accepted.lock().unwrap();
                for (_, names) in &groups {
                    for n in names {
                        *acc.entry(n.clone()).or_default() += 1;
                    }
                }
            }
        }
        reply.map(tonic::Response::new)
    }
}

struct Harness {
    mock: Arc<Mock>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_mock(script: Vec<Reply>) -> Harness {
    let mock = Arc::new(Mock {
        script: Mutex::new(script.into()),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let svc = TraceServiceServer::from_arc(mock.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let server = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.clone().cancelled_owned(),
        );
    tokio::spawn(server);
    Harness { mock, addr, stop }
}

fn config(addr: SocketAddr) -> ExporterConfig {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("x-api-key".to_string(), "k1".to_string());
    ExporterConfig {
        endpoint: format!("http://{addr}"),
        headers,
        compression: Compression::Gzip,
        timeout_ms: 2_000,
        max_batch_spans: 100,
        max_batch_delay_ms: 20,
        max_request_bytes: 1 << 20,
        max_queue_bytes: 1 << 20,
        retry_initial_backoff_ms: 10,
        retry_max_backoff_ms: 100,
        retry_max_elapsed_ms: 5_000,
        shutdown_timeout_ms: 1_000,
    }
}

fn metrics() -> &'static Metrics {
    Box::leak(Box::new(Metrics::default()))
}

fn resource(pid: i64) -> Arc<EncodedResource> {
    Arc::new(EncodedResource::new(&Resource {
        attributes: vec![kv_str("service.name", "svc"), kv_int("process.pid", pid)],
        ..Default::default()
    }))
}

fn span(i: usize) -> Span {
    Span {
        name: format!("span-{i}"),
        trace_id: vec![1; 16],
        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
        ..Default::default()
    }
}

fn retry_info(code: Code, delay: Duration) -> Reply {
    Err(Status::with_error_details(
        code,
        "memory limiter",
        ErrorDetails::with_retry_info(Some(delay)),
    ))
}

struct Counts {
    exported: u64,
    dropped: [u64; 4],
    requests: [u64; 4],
    queue_bytes: u64,
}

fn counts(m: &Metrics) -> Counts {
    Counts {
        exported: m.spans_exported.load(Ordering::Relaxed),
        dropped: SpanDrop::ALL.map(|d| m.spans_dropped[d as usize].load(Ordering::Relaxed)),
        requests: ExportOutcome::ALL.map(|o| m.export_requests[o as usize].load(Ordering::Relaxed)),
        queue_bytes: m.export_queue_bytes.load(Ordering::Relaxed),
    }
}

fn request_count(c: &Counts, o: ExportOutcome) -> u64 {
    c.requests[o as usize]
}

fn drop_count(c: &Counts, d: SpanDrop) -> u64 {
    c.dropped[d as usize]
}

/// Sends `n` spans, waits until the exporter has settled them all, stops it and returns.
async fn run_to_completion(cfg: &ExporterConfig, m: &'static Metrics, n: usize, pids: &[i64]) {
    let (exporter, mut sender) = Exporter::with_metrics(cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    let resources: Vec<_> = pids.iter().map(|p| resource(*p)).collect();
    for i in 0..n {
        assert!(sender.send(&resources[i % resources.len()], span(i)));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = counts(m);
        if c.exported + c.dropped.iter().sum::<u64>() == n as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "spans never settled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns")
        .unwrap();
    assert_eq!(counts(m).queue_bytes, 0, "budget fully released");
}

#[tokio::test]
async fn unavailable_with_retry_info_is_retried_after_the_hint_and_delivers_once() {
    let hint = Duration::from_millis(150);
    let h = start_mock(vec![
        retry_info(Code::Unavailable, hint),
        retry_info(Code::Unavailable, hint),
    ])
    .await;
    let m = metrics();
    run_to_completion(&config(h.addr), m, 20, &[1]).await;

    let calls = h.mock.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "two refusals, one success");
    for w in calls.windows(2) {
        assert!(
            w[1].at - w[0].at >= hint,
            "retried after {:?}, before the RetryInfo delay",
            w[1].at - w[0].at
        );
    }
    let accepted = h.mock.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 20);
    assert!(
        accepted.values().all(|&n| n == 1),
        "each span exactly once: {accepted:?}"
    );
    let c = counts(m);
    assert_eq!(c.exported, 20);
    assert_eq!(c.dropped, [0; 4]);
    assert_eq!(request_count(&c, ExportOutcome::Retried), 2);
    assert_eq!(request_count(&c, ExportOutcome::Success), 1);
    assert_eq!(request_count(&c, ExportOutcome::Failed), 0);
    // Headers, user agent, deadline and compression on the wire.
    let first = &calls[0];
    assert!(
        first.user_agent.starts_with("ebpf-receiver/"),
        "{}",
        first.user_agent
    );
    assert_eq!(first.api_key.as_deref(), Some("k1"));
    assert!(first.has_timeout && first.gzip);
}

#[tokio::test]
async fn resource_exhausted_without_retry_info_and_invalid_argument_drop_without_retry() {
    for reply in [
        Err(Status::invalid_argument("bad span")),
        Err(Status::resource_exhausted("full")),
    ] {
        let h = start_mock(vec![reply]).await;
        let m = metrics();
        run_to_completion(&config(h.addr), m, 7, &[1]).await;
        assert_eq!(h.mock.calls.lock().unwrap().len(), 1, "no retry");
        let c = counts(m);
        assert_eq!(c.exported, 0);
        assert_eq!(drop_count(&c, SpanDrop::ExportFailed), 7);
        assert_eq!(request_count(&c, ExportOutcome::Failed), 1);
        assert_eq!(request_count(&c, ExportOutcome::Retried), 0);
    }
}

#[tokio::test]
async fn resource_exhausted_with_retry_info_is_retried() {
    let h = start_mock(vec![retry_info(
        Code::ResourceExhausted,
        Duration::from_millis(20),
    )])
    .await;
    let m = metrics();
    run_to_completion(&config(h.addr), m, 5, &[1]).await;
    let c = counts(m);
    assert_eq!(
        (c.exported, request_count(&c, ExportOutcome::Retried)),
        (5, 1)
    );
}

#[tokio::test]
async fn partial_success_counts_rejected_spans_and_is_not_retried() {
    let partial = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 3,
            error_message: "3 spans had invalid ids".into(),
        }),
    };
    let h = start_mock(vec![Ok(partial)]).await;
    let m = metrics();
    run_to_completion(&config(h.addr), m, 10, &[1]).await;
    assert_eq!(h.mock.calls.lock().unwrap().len(), 1);
    let c = counts(m);
    assert_eq!(c.exported, 7);
    assert_eq!(drop_count(&c, SpanDrop::Rejected), 3);
    assert_eq!(request_count(&c, ExportOutcome::PartialSuccess), 1);
    assert_eq!(request_count(&c, ExportOutcome::Retried), 0);
}

#[tokio::test]
async fn retries_give_up_after_max_elapsed() {
    let script = (0..100).map(|_| Err(Status::unavailable("down"))).collect();
    let h = start_mock(script).await;
    let m = metrics();
    let cfg = ExporterConfig {
        retry_max_elapsed_ms: 200,
        ..config(h.addr)
    };
    run_to_completion(&cfg, m, 4, &[1]).await;
    let c = counts(m);
    assert_eq!(drop_count(&c, SpanDrop::ExportFailed), 4);
    assert_eq!(request_count(&c, ExportOutcome::Failed), 1);
    assert!(request_count(&c, ExportOutcome::Retried) >= 2);
    // Every retry is scheduled to start within the 200 ms; its arrival at the mock may come
    // later by the scheduling delay of a loaded machine (seen: a bound without slack failed
    // while the rest of the suite ran on both cores). Without the limit, the script's 100
    // failures at 10–100 ms backoffs would go on for seconds.
    let calls = h.mock.calls.lock().unwrap();
    assert!(calls.last().unwrap().at - calls[0].at <= Duration::from_millis(200 + 150));
}

#[tokio::test]
async fn batches_respect_max_spans_and_group_by_resource() {
    let h = start_mock(vec![]).await;
    let m = metrics();
    let cfg = ExporterConfig {
        max_batch_spans: 5,
        max_batch_delay_ms: 200,
        ..config(h.addr)
    };
    run_to_completion(&cfg, m, 12, &[1, 2]).await;
    let calls = h.mock.calls.lock().unwrap().clone();
    let sizes: Vec<usize> = calls
        .iter()
        .map(|c| c.groups.iter().map(|g| g.1.len()).sum())
        .collect();
    assert_eq!(sizes, [5, 5, 2]);
    // Spans alternate between two resources: each request has one group per resource.
    assert_eq!(
        calls[0].groups.iter().map(|g| g.0).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(calls[0].groups[0].1, ["span-0", "span-2", "span-4"]);
    assert_eq!(
        calls[2].groups.iter().map(|g| g.0).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[tokio::test]
async fn batches_respect_max_request_bytes() {
    let h = start_mock(vec![]).await;
    let m = metrics();
    let cfg = ExporterConfig {
        max_request_bytes: 4096,
        max_batch_delay_ms: 200,
        ..config(h.addr)
    };
    let (exporter, mut sender) = Exporter::with_metrics(&cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    let r = resource(1);
    for i in 0..20 {
        let s = Span {
            name: format!("{i:0>500}"),
            ..span(i)
        };
        assert!(sender.send(&r, s));
    }
    stop.cancel();
    task.await.unwrap();
    let calls = h.mock.calls.lock().unwrap().clone();
    assert!(calls.len() >= 3, "{} requests", calls.len());
    assert_eq!(counts(m).exported, 20);
}

#[tokio::test]
async fn shutdown_flushes_queued_spans_without_waiting_for_the_batch_delay() {
    let h = start_mock(vec![]).await;
    let m = metrics();
    let cfg = ExporterConfig {
        max_batch_delay_ms: 60_000,
        ..config(h.addr)
    };
    let (exporter, mut sender) = Exporter::with_metrics(&cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    for i in 0..50 {
        assert!(sender.send(&resource(1), span(i)));
    }
    let t0 = Instant::now();
    stop.cancel();
    task.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "flush took {:?}",
        t0.elapsed()
    );
    let c = counts(m);
    assert_eq!((c.exported, c.dropped), (50, [0; 4]));
    // A span sent after the exporter stopped is counted, not lost silently.
    assert!(!sender.send(&resource(1), span(99)));
    assert_eq!(drop_count(&counts(m), SpanDrop::Shutdown), 1);
}

#[tokio::test]
async fn shutdown_with_the_collector_down_drops_within_the_timeout() {
    // A port nobody listens on: every export is UNAVAILABLE.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let m = metrics();
    let cfg = ExporterConfig {
        max_batch_spans: 10,
        shutdown_timeout_ms: 300,
        ..config(addr)
    };
    let (exporter, mut sender) = Exporter::with_metrics(&cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    for i in 0..35 {
        assert!(sender.send(&resource(1), span(i)));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    stop.cancel();
    task.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let c = counts(m);
    assert_eq!(c.exported, 0);
    assert_eq!(drop_count(&c, SpanDrop::Shutdown), 35, "{:?}", c.dropped);
    assert_eq!(c.queue_bytes, 0);
    assert!(request_count(&c, ExportOutcome::Retried) >= 1);
}

#[tokio::test]
async fn shutdown_bounds_an_export_stuck_on_a_hung_collector() {
    let h = start_mock(vec![]).await;
    h.mock.hang.store(true, Ordering::Relaxed);
    let m = metrics();
    let cfg = ExporterConfig {
        timeout_ms: 10_000,
        shutdown_timeout_ms: 300,
        ..config(h.addr)
    };
    let (exporter, mut sender) = Exporter::with_metrics(&cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    for i in 0..8 {
        assert!(sender.send(&resource(1), span(i)));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t0 = Instant::now();
    stop.cancel();
    task.await.unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(800),
        "took {took:?}"
    );
    let c = counts(m);
    assert_eq!(drop_count(&c, SpanDrop::Shutdown), 8);
    assert_eq!(c.queue_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_under_a_constant_stream_and_accounts_for_every_span() {
    let h = start_mock(vec![]).await;
    let m = metrics();
    let cfg = ExporterConfig {
        max_batch_spans: 50,
        shutdown_timeout_ms: 300,
        ..config(h.addr)
    };
    let (exporter, mut sender) = Exporter::with_metrics(&cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    let producing = CancellationToken::new();
    let producer = {
        let producing = producing.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            let r = resource(1);
            while !producing.is_cancelled() {
                sender.send(&r, span(sent as usize));
                sent += 1;
                if sent.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    stop.cancel();
    task.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "shutdown took {:?}",
        t0.elapsed()
    );
    producing.cancel();
    let sent = producer.await.unwrap();
    let c = counts(m);
    assert!(c.exported > 0);
    assert_eq!(
        c.exported + c.dropped.iter().sum::<u64>(),
        sent,
        "every span accounted for"
    );
    assert_eq!(c.queue_bytes, 0);
}

#[tokio::test]
async fn queue_full_while_the_collector_is_down_is_counted_exactly() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let m = metrics();
    let one = prost::encoding::message::encoded_len(2, &span(0));
    let cfg = ExporterConfig {
        max_queue_bytes: one * 10,
        shutdown_timeout_ms: 100,
        ..config(addr)
    };
    let (exporter, mut sender) = Exporter::with_metrics(&cfg, m).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(exporter.run(stop.clone()));
    let accepted = (0..25)
        .filter(|i| sender.send(&resource(1), span(*i)))
        .count();
    assert_eq!(accepted, 10);
    stop.cancel();
    task.await.unwrap();
    let c = counts(m);
    assert_eq!(drop_count(&c, SpanDrop::QueueFull), 15);
    assert_eq!(
        c.exported + c.dropped.iter().sum::<u64>(),
        25,
        "every span accounted for"
    );
}

#[test]
fn new_needs_no_runtime_and_validates() {
    let (_e, s) = Exporter::new(&ExporterConfig::default()).expect("defaults are valid");
    let _sender: SpanSender = s;
    for bad in [
        ExporterConfig {
            max_batch_spans: 0,
            ..Default::default()
        },
        ExporterConfig {
            max_request_bytes: 10,
            ..Default::default()
        },
        ExporterConfig {
            max_queue_bytes: 0,
            ..Default::default()
        },
        ExporterConfig {
            retry_initial_backoff_ms: 0,
            ..Default::default()
        },
        ExporterConfig {
            endpoint: "grpc://x".into(),
            ..Default::default()
        },
    ] {
        assert!(Exporter::with_metrics(&bad, metrics()).is_err(), "{bad:?}");
    }
}

#[test]
fn log_limit_lets_one_line_through_per_interval() {
    let mut l = LogLimit::default();
    assert_eq!(l.allow(), Some(0));
    assert_eq!(l.allow(), None);
    assert_eq!(l.allow(), None);
    l.last = Some(Instant::now() - LOG_INTERVAL);
    assert_eq!(l.allow(), Some(2));
}
