//! An OTLP/gRPC endpoint that accepts every export request, counts its spans and discards
//! them: the peer of `cargo xtask bench`'s `receiver-sink` configuration, which separates the
//! receiver's own cost from the stock Collector's (the Collector spends 5–9 µs per span
//! decoding into pdata, more than the receiver spends making the span).
//!
//! ```text
//! otlp_sink OTLP_PORT METRICS_PORT
//! ```
//! Both listen on 127.0.0.1. Any connection to METRICS_PORT gets one Prometheus text line,
//! `otlp_sink_accepted_spans_total N`, and is closed. A request is walked only as deep as its
//! spans (resource spans → scope spans → spans) to count them; no span is decoded, converted
//! or exported, so the sink's CPU per span (the bench's export peer column) is a fraction of
//! the Collector's. One thread. A malformed request is answered INVALID_ARGUMENT.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Buf as _;
use prost::encoding::{WireType, decode_key, decode_varint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::{Request, Response, Status};

/// The one method this endpoint serves.
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Clone, Default)]
struct Sink {
    spans: Arc<AtomicU64>,
}

impl tonic::server::NamedService for Sink {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for Sink
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sink = self.clone();
        Box::pin(async move {
            if req.uri().path() != EXPORT {
                return Ok(Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(CountingCodec)
                .apply_max_message_size_config(Some(64 * 1024 * 1024), None);
            Ok(grpc.unary(sink, req).await)
        })
    }
}

impl tonic::server::UnaryService<u64> for Sink {
    type Response = ();
    type Future = BoxFuture<Response<()>, Status>;

    fn call(&mut self, request: Request<u64>) -> Self::Future {
        self.spans.fetch_add(*request.get_ref(), Ordering::Relaxed);
        Box::pin(async { Ok(Response::new(())) })
    }
}

/// Decodes an `ExportTraceServiceRequest` into its span count; encodes the empty
/// `ExportTraceServiceResponse` (zero bytes).
#[derive(Clone, Copy, Default)]
struct CountingCodec;

impl Codec for CountingCodec {
    type Encode = ();
    type Decode = u64;
    type Encoder = CountingCodec;
    type Decoder = CountingCodec;

    fn encoder(&mut self) -> Self::Encoder {
        CountingCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        CountingCodec
    }
}

impl Encoder for CountingCodec {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, _item: (), _dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

impl Decoder for CountingCodec {
    type Item = u64;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<u64>, Status> {
        let message = src.copy_to_bytes(src.remaining());
        count_spans(&message)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))
    }
}

/// Spans in an encoded `ExportTraceServiceRequest`: `resource_spans` (1) → `scope_spans` (2)
/// → `spans` (2), each a length-delimited field; everything else is skipped by wire type.
fn count_spans(request: &[u8]) -> io::Result<u64> {
    let mut spans = 0;
    for resource in fields(request, 1) {
        for scope in fields(resource?, 2) {
            for span in fields(scope?, 2) {
                span?;
                spans += 1;
            }
        }
    }
    Ok(spans)
}

/// The length-delimited fields numbered `want` of one message (keys and lengths read with
/// prost's own varint decoding).
fn fields(mut msg: &[u8], want: u32) -> impl Iterator<Item = io::Result<&[u8]>> {
    std::iter::from_fn(move || {
        while !msg.is_empty() {
            let step = (|| {
                let (tag, wire) = decode_key(&mut msg).map_err(bad)?;
                let value: &[u8] = match wire {
                    WireType::Varint => {
                        decode_varint(&mut msg).map_err(bad)?;
                        &[]
                    }
                    WireType::SixtyFourBit => take(&mut msg, 8)?,
                    WireType::LengthDelimited => {
                        let n =
                            usize::try_from(decode_varint(&mut msg).map_err(bad)?).map_err(bad)?;
                        take(&mut msg, n)?
                    }
                    WireType::ThirtyTwoBit => take(&mut msg, 4)?,
                    other => return Err(bad(format!("wire type {other:?}"))),
                };
                Ok((tag == want && wire == WireType::LengthDelimited).then_some(value))
            })();
            match step {
                Ok(Some(v)) => return Some(Ok(v)),
                Ok(None) => {}
                Err(e) => {
                    msg = &[];
                    return Some(Err(e));
                }
            }
        }
        None
    })
}

fn bad(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if buf.len() < n {
        return Err(bad("truncated field"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn port(arg: Option<String>, what: &str) -> Result<u16, String> {
    arg.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|e| format!("{what}: {e}"))
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let ports =
        port(args.next(), "OTLP_PORT").and_then(|o| Ok((o, port(args.next(), "METRICS_PORT")?)));
    let (otlp_port, metrics_port) = match ports {
        Ok(p) => p,
        Err(e) => {
            eprintln!("otlp_sink: {e}\nusage: otlp_sink OTLP_PORT METRICS_PORT");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otlp_sink: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(otlp_port, metrics_port)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp_sink: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(otlp_port: u16, metrics_port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let sink = Sink::default();
    let metrics = tokio::net::TcpListener::bind(("127.0.0.1", metrics_port)).await?;
    let counted = sink.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = metrics.accept().await {
            let body = format!(
                "otlp_sink_accepted_spans_total {}\n",
                counted.spans.load(Ordering::Relaxed)
            );
            let reply = format!(
                "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            // Every path gets the one line; the request is read first (up to its blank line) so
            // closing does not reset the connection under the client's feet.
            let mut req = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    let otlp = tokio::net::TcpListener::bind(("127.0.0.1", otlp_port)).await?;
    // Windows as large as a whole export request, so flow control never waits on this
    // single-threaded process being scheduled.
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(16 * 1024 * 1024))
        .initial_connection_window_size(Some(32 * 1024 * 1024))
        .add_service(sink)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(otlp))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    #[test]
    fn counts_the_spans_of_every_resource_and_scope_and_rejects_truncation() {
        let span = |name: &str| Span {
            name: name.into(),
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            start_time_unix_nano: 1,
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![
                        ScopeSpans {
                            spans: vec![span("a"), span("b")],
                            ..Default::default()
                        },
                        ScopeSpans {
                            spans: vec![span("c")],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span("d"), span("e"), span("f")],
                        ..Default::default()
                    }],
                    schema_url: "x".into(),
                    ..Default::default()
                },
            ],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(super::count_spans(&bytes).unwrap(), 6);
        assert_eq!(super::count_spans(&[]).unwrap(), 0);
        assert!(super::count_spans(&bytes[..bytes.len() - 3]).is_err());
    }
}
