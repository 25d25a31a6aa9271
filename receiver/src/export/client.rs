//! The OTLP/gRPC client: endpoint and header validation, one lazily connected tonic channel.
//!
//! The channel is created with `connect_lazy()` inside [`OtlpClient::connect`], called from the
//! exporter task, so starting the receiver never waits for the Collector and never needs a
//! runtime before `run`. A down Collector surfaces as `UNAVAILABLE` on the first export, which
//! the retry policy handles.

use std::time::Duration;

use bytes::{BufMut as _, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use super::ExportError;
use crate::config::{Compression, ExporterConfig};

/// `User-Agent` of every request (the spec lets a distribution use its own product token).
pub(crate) const USER_AGENT: &str = concat!("ebpf-receiver/", env!("CARGO_PKG_VERSION"));

/// Longest wait for a TCP connection to the Collector; the request timeout bounds it further.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the otherwise idle connection find a dead Collector before the next export.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to talk to the Collector, validated.
#[derive(Clone, Debug)]
pub(crate) struct ClientSettings {
    endpoint: Endpoint,
    headers: MetadataMap,
    gzip: bool,
    timeout: Duration,
}

/// The endpoint as safe to print: never the userinfo of a URL.
fn printable(endpoint: &str) -> &str {
    if endpoint.contains('@') {
        "<endpoint with credentials>"
    } else {
        endpoint
    }
}

impl ClientSettings {
    pub fn from_config(cfg: &ExporterConfig) -> Result<ClientSettings, ExportError> {
        let bad = |reason: &str| ExportError::Endpoint {
            endpoint: printable(&cfg.endpoint).to_string(),
            reason: reason.to_string(),
        };
        if cfg.endpoint.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use `exporter.headers`",
            ));
        }
        let endpoint = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|_| bad("not a valid URL such as `http://localhost:4317`"))?;
        match endpoint.uri().scheme_str() {
            Some("http") => {}
            // tonic is built without a TLS feature to keep the image slim; a sidecar talks to
            // its Collector over loopback.
            Some("https") => {
                return Err(bad("`https` is not supported by this build; use `http://`"));
            }
            _ => return Err(bad("the scheme must be `http://`")),
        }
        if endpoint.uri().host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if cfg.timeout_ms == 0 {
            return Err(ExportError::Config {
                field: "exporter.timeout_ms",
                reason: "must be greater than 0".into(),
            });
        }
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let endpoint = endpoint
            .user_agent(USER_AGENT)
            .map_err(|_| bad("cannot set the user agent"))?
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
        let mut headers = MetadataMap::new();
        for (name, value) in &cfg.headers {
            // Values are often credentials: never echo them in errors or logs.
            let header_err = |reason: &str| ExportError::Header {
                name: name.clone(),
                reason: reason.to_string(),
            };
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| header_err("not a valid gRPC metadata name"))?;
            let value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| header_err("the value must be printable ASCII"))?;
            headers.append(key, value);
        }
        Ok(ClientSettings {
            endpoint,
            headers,
            gzip: cfg.compression == Compression::Gzip,
            timeout,
        })
    }
}

/// One lazily connected client; cheap to keep for the life of the exporter.
#[derive(Debug)]
pub(crate) struct OtlpClient {
    inner: Grpc<Channel>,
    headers: MetadataMap,
    timeout: Duration,
}

/// `TraceService/Export`, the only method we call.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl OtlpClient {
    /// Creates the channel without connecting. Must run inside a tokio runtime.
    pub fn connect(s: &ClientSettings) -> OtlpClient {
        let mut inner = Grpc::new(s.endpoint.connect_lazy());
        if s.gzip {
            inner = inner
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        OtlpClient {
            inner,
            headers: s.headers.clone(),
            timeout: s.timeout,
        }
    }

    /// One `Export` call of an `ExportTraceServiceRequest` encoded once by the caller (a retry
    /// sends the same bytes again instead of cloning and re-encoding every span), with our
    /// headers and a `grpc-timeout` the server can see.
    pub async fn export(
        &mut self,
        encoded_request: Bytes,
    ) -> Result<ExportTraceServiceResponse, tonic::Status> {
        let mut r = tonic::Request::new(encoded_request);
        r.set_timeout(self.timeout);
        for kv in self.headers.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
                r.metadata_mut().append(k.clone(), v.clone());
            }
        }
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("collector channel not ready: {e}")))?;
        let path = PathAndQuery::from_static(EXPORT_PATH);
        self.inner
            .unary(r, path, EncodedCodec)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Writes already encoded request bytes; decodes the response with prost.
#[derive(Clone, Copy, Debug, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad ExportTraceServiceResponse: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str) -> ExporterConfig {
        ExporterConfig {
            endpoint: endpoint.into(),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_http_endpoints() {
        for e in [
            "http://localhost:4317",
            "http://127.0.0.1:4317/",
            "http://[::1]:4317",
            "http://otel",
        ] {
            assert!(ClientSettings::from_config(&cfg(e)).is_ok(), "{e}");
        }
    }

    #[test]
    fn rejects_bad_endpoints_without_leaking_credentials() {
        for e in [
            "localhost:4317",
            "ftp://x:1",
            "https://collector:4317",
            "",
            "http://",
            "not a url",
        ] {
            let err = ClientSettings::from_config(&cfg(e)).expect_err(e);
            assert!(err.to_string().contains("endpoint"), "{err}");
        }
        let err =
            ClientSettings::from_config(&cfg("http://user:hunter2@collector:4317")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn headers_become_metadata_and_bad_ones_are_named_not_echoed() {
        let mut c = cfg("http://localhost:4317");
        c.headers.insert("X-Api-Key".into(), "s3cret".into());
        let s = ClientSettings::from_config(&c).unwrap();
        assert_eq!(
            s.headers.get("x-api-key").and_then(|v| v.to_str().ok()),
            Some("s3cret")
        );

        c.headers.insert("bad key".into(), "v".into());
        let err = ClientSettings::from_config(&c).unwrap_err();
        assert!(err.to_string().contains("`bad key`"), "{err}");
        c.headers.remove("bad key");
        c.headers
            .insert("x-token".into(), "line\nbreak-s3cret".into());
        let err = ClientSettings::from_config(&c).unwrap_err();
        assert!(
            err.to_string().contains("`x-token`") && !err.to_string().contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let c = ExporterConfig {
            timeout_ms: 0,
            ..cfg("http://localhost:4317")
        };
        assert!(ClientSettings::from_config(&c).is_err());
    }
}
