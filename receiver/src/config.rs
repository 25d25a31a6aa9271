//! Configuration: documented data.
//!
//! Every struct denies unknown fields, every field has a default in a `DEFAULT_*` const and a
//! `///` doc with its unit, and [`Config::load`] reports errors with `file:line:column` and the
//! dotted field path. Precedence: built-in defaults < the YAML file < `OTEL_*` environment
//! variables < command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_MAX_CAPTURE_BYTES: u32 = 16384;
pub const DEFAULT_DATA_RING_BYTES: u32 = 8 * 1024 * 1024;
pub const DEFAULT_CONTROL_RING_BYTES: u32 = 256 * 1024;
pub const DEFAULT_KERNEL_MAX_CONNECTIONS: u32 = 65536;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 10;
pub const DEFAULT_TRACKER_MAX_CONNECTIONS: usize = 65536;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_BUFFER_BYTES_PER_CONNECTION: usize = 256 * 1024;
pub const DEFAULT_MAX_QUERY_TEXT_BYTES: usize = 2048;
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_BATCH_SPANS: usize = 512;
pub const DEFAULT_MAX_BATCH_DELAY_MS: u64 = 100;
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 500;
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 30_000;
pub const DEFAULT_RETRY_MAX_ELAPSED_MS: u64 = 300_000;
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kernel probes and ring buffers.
    pub ebpf: EbpfConfig,
    /// Which processes to trace.
    pub targets: TargetsConfig,
    /// Per-protocol switches.
    pub protocols: ProtocolsConfig,
    /// User-space connection tracking.
    pub tracker: TrackerConfig,
    /// What goes into spans.
    pub spans: SpansConfig,
    /// OTLP/gRPC export to the Collector.
    pub exporter: ExporterConfig,
    /// Self-metrics and logs.
    pub telemetry: TelemetryConfig,
}

/// Kernel side.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    /// Most payload bytes copied from one syscall, 1..=16384. Default 16384.
    pub max_capture_bytes: u32,
    /// Size of the data ring buffer in bytes (power of two, ≥ 4096). Default 8 MiB.
    pub data_ring_bytes: u32,
    /// Size of the control ring buffer in bytes (power of two, ≥ 4096). Default 256 KiB.
    pub control_ring_bytes: u32,
    /// Entries of the kernel connection map. Default 65536.
    pub max_connections: u32,
    /// How often user space drains the rings when no wakeup came, in ms. The kernel wakes the
    /// reader only when a ring is a quarter full, so this bounds latency. Default 10.
    pub poll_interval_ms: u64,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            max_capture_bytes: DEFAULT_MAX_CAPTURE_BYTES,
            data_ring_bytes: DEFAULT_DATA_RING_BYTES,
            control_ring_bytes: DEFAULT_CONTROL_RING_BYTES,
            max_connections: DEFAULT_KERNEL_MAX_CONNECTIONS,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
        }
    }
}

/// Process selection. The receiver never traces itself.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetsConfig {
    /// Trace only these pids; empty traces the whole host. Default empty.
    pub pids: Vec<u32>,
    /// Never trace these pids. Default empty.
    pub exclude_pids: Vec<u32>,
    /// Never trace connections to these peer ports; the exporter endpoint's port is always
    /// added. Default empty.
    pub exclude_ports: Vec<u16>,
}

/// Per-protocol switches.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolsConfig {
    /// MySQL and MariaDB client/server protocol. Default true.
    pub mysql: bool,
}

impl Default for ProtocolsConfig {
    fn default() -> Self {
        ProtocolsConfig { mysql: true }
    }
}

/// User-space connection tracking.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Most connections tracked at once; the least recently active is evicted. Default 65536.
    pub max_connections: usize,
    /// A connection with no traffic for this long is forgotten, in ms. Default 300000.
    pub idle_timeout_ms: u64,
    /// A request with no response after this long is given up (counted), in ms. Default 30000.
    pub request_timeout_ms: u64,
    /// Most unparsed bytes kept per connection and direction. Default 262144.
    pub max_buffer_bytes_per_connection: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            max_connections: DEFAULT_TRACKER_MAX_CONNECTIONS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_buffer_bytes_per_connection: DEFAULT_MAX_BUFFER_BYTES_PER_CONNECTION,
        }
    }
}

/// Span content.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpansConfig {
    /// Most bytes of sanitised `db.query.text`, cut on a UTF-8 boundary. Default 2048.
    pub max_query_text_bytes: usize,
    /// `host.name` on every resource; empty uses the kernel's hostname. Default empty.
    pub host_name: String,
}

impl Default for SpansConfig {
    fn default() -> Self {
        SpansConfig { max_query_text_bytes: DEFAULT_MAX_QUERY_TEXT_BYTES, host_name: String::new() }
    }
}

/// Compression of export requests.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    None,
}

/// OTLP/gRPC export.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// Collector OTLP/gRPC endpoint, `http://` (plaintext) or `https://`.
    /// Env: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`.
    /// Default `http://localhost:4317`.
    pub endpoint: String,
    /// Extra gRPC metadata on every request. Env: `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k=v`).
    /// Default none.
    pub headers: BTreeMap<String, String>,
    /// `gzip` or `none`. Env: `OTEL_EXPORTER_OTLP_COMPRESSION`. Default gzip.
    pub compression: Compression,
    /// Deadline of one export request, in ms. Env: `OTEL_EXPORTER_OTLP_TIMEOUT`. Default 10000.
    pub timeout_ms: u64,
    /// A batch is sent when it holds this many spans. Default 512.
    pub max_batch_spans: usize,
    /// … or when its oldest span waited this long, in ms. Default 100.
    pub max_batch_delay_ms: u64,
    /// … or before its encoded size would pass this many bytes (the Collector's default
    /// receive limit is 4 MiB). Default 3670016.
    pub max_request_bytes: usize,
    /// Byte budget of the queue between span building and export; spans that do not fit are
    /// dropped and counted. Default 64 MiB.
    pub max_queue_bytes: usize,
    /// First retry delay, in ms; doubles per attempt with jitter. Default 500.
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay, in ms. Default 30000.
    pub retry_max_backoff_ms: u64,
    /// A batch is dropped (counted) after retrying for this long, in ms. Default 300000.
    pub retry_max_elapsed_ms: u64,
    /// On SIGTERM, queued spans are flushed for at most this long, in ms. Default 5000.
    pub shutdown_timeout_ms: u64,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_batch_spans: DEFAULT_MAX_BATCH_SPANS,
            max_batch_delay_ms: DEFAULT_MAX_BATCH_DELAY_MS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            retry_initial_backoff_ms: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            retry_max_backoff_ms: DEFAULT_RETRY_MAX_BACKOFF_MS,
            retry_max_elapsed_ms: DEFAULT_RETRY_MAX_ELAPSED_MS,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
        }
    }
}

/// Self-observability.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served. Default `127.0.0.1:9464`.
    pub metrics_address: SocketAddr,
    /// `tracing` filter, e.g. `info` or `ebpf_receiver=debug`. Env `RUST_LOG` wins. Default info.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_address: DEFAULT_METRICS_ADDRESS.parse().unwrap_or_else(|_| {
                SocketAddr::from(([127, 0, 0, 1], 9464))
            }),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
        }
    }
}

/// A configuration problem, located in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: `{field}`: {reason}")]
    Invalid { path: PathBuf, line: usize, column: usize, field: String, reason: String },
    #[error("environment variable `{var}`: {reason}")]
    Env { var: String, reason: String },
}

impl Config {
    /// Reads and validates a YAML file (no environment applied).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and validates YAML text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let _ = (text, path);
        todo!("config parsing")
    }
}
