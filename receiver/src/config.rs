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

use crate::model::Protocol;

pub const DEFAULT_MAX_CAPTURE_BYTES: u32 = 16384;
pub const DEFAULT_DATA_RING_BYTES: u32 = 4 * 1024 * 1024;
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
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 250;
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 1_000;
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
    /// Size of the data ring buffer in bytes (power of two, ≥ 4096). Default 4 MiB: at the
    /// quarter-full wakeup the reader drains every 1 MiB, ample at the rates two cores reach, and
    /// the ring's pages count in the receiver's RSS.
    pub data_ring_bytes: u32,
    /// Size of the control ring buffer in bytes (power of two, ≥ 4096). Default 256 KiB.
    pub control_ring_bytes: u32,
    /// Entries of the kernel connection map. Default 65536.
    pub max_connections: u32,
    /// How often user space drains the rings when no wakeup came, in ms. The kernel wakes the
    /// reader only when a ring is a quarter full, so this bounds latency. Default 10.
    pub poll_interval_ms: u64,
    /// Infer protocols in the kernel. Default true. false is a diagnostic kept only for the
    /// benchmark comparison with "the traditional pipeline": the kernel forwards every
    /// read/write of every tracked socket (capped like any capture) and user space infers the
    /// protocol with the same inference code; same spans, far more kernel→user bytes.
    pub kernel_inference: bool,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            max_capture_bytes: DEFAULT_MAX_CAPTURE_BYTES,
            data_ring_bytes: DEFAULT_DATA_RING_BYTES,
            control_ring_bytes: DEFAULT_CONTROL_RING_BYTES,
            max_connections: DEFAULT_KERNEL_MAX_CONNECTIONS,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            kernel_inference: true,
        }
    }
}

/// Process selection. The receiver never traces itself.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetsConfig {
    /// Trace only these pids and the processes they start while the receiver runs (forked
    /// workers, spawned commands, and theirs); empty traces the whole host. Default empty.
    pub pids: Vec<u32>,
    /// Never trace these pids. Default empty.
    pub exclude_pids: Vec<u32>,
    /// Never trace connections to these peer ports; the exporter endpoint's port is always
    /// added. Default empty.
    pub exclude_ports: Vec<u16>,
}

macro_rules! protocols_config {
    ($($variant:ident $name:ident $kernel:ident $framer:path, $stitcher:path;)*) => {
        /// Per-protocol switches, one per line of the protocol declaration
        /// (`crate::model::for_each_protocol!`). A protocol switched off is never inferred in
        /// the kernel: its connections are given up on like unknown traffic.
        #[derive(Clone, Debug, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct ProtocolsConfig {
            $(
                #[doc = concat!("Parse `", stringify!($name), "` traffic. Default true.")]
                pub $name: bool,
            )*
        }

        impl Default for ProtocolsConfig {
            fn default() -> Self {
                ProtocolsConfig { $($name: true,)* }
            }
        }

        impl ProtocolsConfig {
            /// Whether `protocol` is switched on.
            pub fn enabled(&self, protocol: Protocol) -> bool {
                match protocol {
                    $(Protocol::$variant => self.$name,)*
                }
            }
        }
    };
}

crate::for_each_protocol!(protocols_config);

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
        SpansConfig {
            max_query_text_bytes: DEFAULT_MAX_QUERY_TEXT_BYTES,
            host_name: String::new(),
        }
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
    /// Collector OTLP/gRPC endpoint, `http://host:port` (plaintext; TLS is the local
    /// Collector's job).
    /// Env: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`.
    /// Default `http://localhost:4317`.
    pub endpoint: String,
    /// Extra gRPC metadata on every request. Env: `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k=v`).
    /// Default none.
    pub headers: BTreeMap<String, String>,
    /// `none` or `gzip`. Env: `OTEL_EXPORTER_OTLP_COMPRESSION`. Default `none`, as the OTLP
    /// exporter specification says: the receiver talks to a Collector on loopback, where gzip
    /// only costs CPU. Choose `gzip` for a remote Collector over a slow or metered link.
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
            compression: Compression::None,
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
            metrics_address: DEFAULT_METRICS_ADDRESS
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9464))),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
        }
    }
}

/// A configuration problem, located in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        field: String,
        reason: String,
    },
    #[error("environment variable `{var}`: {reason}")]
    Env { var: String, reason: String },
    #[error("`{flag}`: {reason}")]
    Flag { flag: String, reason: String },
}

impl Config {
    /// Reads and validates a YAML file (no environment applied).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates YAML text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line() as usize, l.column() as usize))
                    .unwrap_or((1, 1));
                let reason = first_line(&e.to_string());
                let field = field_path_at(text, line, column)
                    .or_else(|| quoted_field(&reason))
                    .unwrap_or_else(|| "<document>".to_string());
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    column,
                    field,
                    reason,
                }
            })?
        };
        cfg.validate().map_err(|(field, reason)| {
            let (line, column) = locate(text, &field).unwrap_or((1, 1));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field,
                reason,
            }
        })?;
        Ok(cfg)
    }

    /// Cross-field and range rules; returns the dotted field path and the reason.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let e = |f: &str, r: String| Err((f.to_string(), r));
        let max = crate::bpf::MAX_CAPTURE_BYTES;
        if self.ebpf.max_capture_bytes == 0 || self.ebpf.max_capture_bytes > max {
            return e("ebpf.max_capture_bytes", format!("must be in 1..={max}"));
        }
        for (f, v) in [
            ("ebpf.data_ring_bytes", self.ebpf.data_ring_bytes),
            ("ebpf.control_ring_bytes", self.ebpf.control_ring_bytes),
        ] {
            if v < 4096 || !v.is_power_of_two() {
                return e(f, format!("must be a power of two ≥ 4096, got {v}"));
            }
        }
        if self.ebpf.max_connections == 0 {
            return e("ebpf.max_connections", "must be > 0".into());
        }
        if self.ebpf.poll_interval_ms == 0 || self.ebpf.poll_interval_ms > 1000 {
            return e("ebpf.poll_interval_ms", "must be in 1..=1000".into());
        }
        if self.tracker.max_connections == 0 {
            return e("tracker.max_connections", "must be > 0".into());
        }
        if self.tracker.max_buffer_bytes_per_connection < 1024 {
            return e(
                "tracker.max_buffer_bytes_per_connection",
                "must be ≥ 1024".into(),
            );
        }
        if self.tracker.request_timeout_ms == 0 {
            return e("tracker.request_timeout_ms", "must be > 0".into());
        }
        if self.tracker.idle_timeout_ms < self.tracker.request_timeout_ms {
            return e(
                "tracker.idle_timeout_ms",
                "must be ≥ tracker.request_timeout_ms".into(),
            );
        }
        if let Err(r) = endpoint_port(&self.exporter.endpoint) {
            return e("exporter.endpoint", r);
        }
        if self.exporter.timeout_ms == 0 {
            return e("exporter.timeout_ms", "must be > 0".into());
        }
        if self.exporter.max_batch_spans == 0 {
            return e("exporter.max_batch_spans", "must be > 0".into());
        }
        if self.exporter.max_request_bytes < 64 * 1024 {
            return e("exporter.max_request_bytes", "must be ≥ 65536".into());
        }
        if self.exporter.max_queue_bytes < self.exporter.max_request_bytes {
            return e(
                "exporter.max_queue_bytes",
                "must be ≥ exporter.max_request_bytes".into(),
            );
        }
        if self.exporter.retry_initial_backoff_ms == 0
            || self.exporter.retry_max_backoff_ms < self.exporter.retry_initial_backoff_ms
        {
            return e(
                "exporter.retry_max_backoff_ms",
                "must be ≥ exporter.retry_initial_backoff_ms > 0".into(),
            );
        }
        if self.telemetry.log_level.trim().is_empty() {
            return e("telemetry.log_level", "must not be empty".into());
        }
        Ok(())
    }

    /// Applies the `OTEL_*` environment variables (they win over the file), given a lookup
    /// function so tests need not touch the process environment. Returns extra resource
    /// attributes from `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let env_err = |var: &str, reason: String| ConfigError::Env {
            var: var.to_string(),
            reason,
        };
        let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v))
            .or_else(|| {
                get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| ("OTEL_EXPORTER_OTLP_ENDPOINT", v))
            });
        if let Some((var, v)) = endpoint {
            endpoint_port(&v).map_err(|r| env_err(var, r))?;
            self.exporter.endpoint = v;
        }
        if let Some(v) =
            get("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| get("OTEL_EXPORTER_OTLP_HEADERS"))
        {
            for (k, val) in
                parse_key_values(&v).map_err(|r| env_err("OTEL_EXPORTER_OTLP_HEADERS", r))?
            {
                self.exporter.headers.insert(k.to_ascii_lowercase(), val);
            }
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
            .or_else(|| get("OTEL_EXPORTER_OTLP_COMPRESSION"))
        {
            self.exporter.compression = match v.trim() {
                "gzip" => Compression::Gzip,
                "none" | "" => Compression::None,
                other => {
                    return Err(env_err(
                        "OTEL_EXPORTER_OTLP_COMPRESSION",
                        format!("`{other}` is not `gzip` or `none`"),
                    ));
                }
            };
        }
        if let Some(v) =
            get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").or_else(|| get("OTEL_EXPORTER_OTLP_TIMEOUT"))
        {
            self.exporter.timeout_ms =
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or_else(|| {
                        env_err(
                            "OTEL_EXPORTER_OTLP_TIMEOUT",
                            format!("`{v}` is not a positive integer of milliseconds"),
                        )
                    })?;
        }
        let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol.filter(|p| p.trim() != "grpc") {
            return Err(env_err(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                format!("`{p}` is not supported: only `grpc`"),
            ));
        }
        let mut resource = Vec::new();
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            resource = parse_key_values(&v).map_err(|r| env_err("OTEL_RESOURCE_ATTRIBUTES", r))?;
        }
        if let Some(name) = get("OTEL_SERVICE_NAME").filter(|n| !n.trim().is_empty()) {
            resource.retain(|(k, _)| k != "service.name");
            resource.push(("service.name".to_string(), name));
        }
        self.validate()
            .map_err(|(field, reason)| env_err(&field, reason))?;
        Ok(resource)
    }

    /// The port of the exporter endpoint, never traced (the Collector's OTLP port).
    pub fn exporter_port(&self) -> Option<u16> {
        endpoint_port(&self.exporter.endpoint).ok()
    }
}

/// `http[s]://host:port[/]` → port (default 4317 when absent).
fn endpoint_port(endpoint: &str) -> Result<u16, String> {
    if endpoint.starts_with("https://") {
        return Err(format!(
            "`{endpoint}`: TLS is not built into this receiver; use http:// to a local Collector \
             and let it export over TLS"
        ));
    }
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{endpoint}` must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("`{endpoint}` has no host"));
    }
    let port = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if host.is_empty() {
                return Err(format!("`{endpoint}` has no host"));
            }
            if port.is_empty() || (authority.starts_with('[') && !host.ends_with(']')) {
                return Ok(4317);
            }
            port.parse::<u16>()
                .map_err(|_| format!("`{endpoint}` has a bad port `{port}`"))?
        }
        _ => 4317,
    };
    Ok(port)
}

/// W3C-baggage-like `k1=v1,k2=v2` (values percent-decoded).
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not `key=value`"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("`{item}` has an empty key"));
        }
        out.push((k.to_string(), percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b.get(i),
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (Some(b'%'), Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (Some(c), _, _) => {
                out.push(*c);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // serde-saphyr prefixes "error: line L column C: "; the location is reported separately.
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.split_once(": ") {
        Some((head, tail)) if head.starts_with("line ") => tail.to_string(),
        _ => line.to_string(),
    }
}

/// The field name inside backticks in a serde message, e.g. unknown field `compresion`.
fn quoted_field(reason: &str) -> Option<String> {
    let start = reason.find('`')? + 1;
    let len = reason.get(start..)?.find('`')?;
    reason.get(start..start + len).map(str::to_string)
}

/// Block-style YAML key path of the key at or enclosing (line, column), both 1-based.
fn field_path_at(text: &str, line: usize, _column: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line.checked_sub(1)?;
    // Start from the error line, or the nearest key line above it.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut want_indent = usize::MAX;
    for l in lines
        .get(..=idx.min(lines.len().saturating_sub(1)))?
        .iter()
        .rev()
    {
        let Some((indent, key)) = yaml_key(l) else {
            continue;
        };
        if indent < want_indent {
            stack.push((indent, key));
            want_indent = indent;
            if indent == 0 {
                break;
            }
        }
    }
    if stack.is_empty() {
        return None;
    }
    Some(
        stack
            .into_iter()
            .rev()
            .map(|(_, k)| k)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Line and column (1-based) of a dotted key path in block-style YAML.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let want: Vec<&str> = path.split('.').collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut best = None;
    for (n, l) in text.lines().enumerate() {
        let Some((indent, key)) = yaml_key(l) else {
            continue;
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        let matched =
            stack.len() <= want.len() && stack.iter().zip(&want).all(|((_, k), w)| k == w);
        if matched {
            best = Some((n + 1, indent + 1));
            if stack.len() == want.len() {
                return best;
            }
        }
    }
    best
}

/// `(indent, key)` of a `key:` line, skipping comments, list items and blank lines.
fn yaml_key(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
        return None;
    }
    let indent = line.len() - trimmed.len();
    let (key, _) = trimmed.split_once(':')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    if key.is_empty() || key.contains(' ') {
        return None;
    }
    Some((indent, key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("receiver.yaml"))
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let cfg = parse("").expect("empty config");
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.exporter.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(
            cfg.telemetry.metrics_address.to_string(),
            DEFAULT_METRICS_ADDRESS
        );
    }

    #[test]
    fn unknown_key_names_file_line_column_and_path() {
        let text = "ebpf:\n  max_capture_bytes: 4096\nexporter:\n  endpoint: http://localhost:4317\n  compresion: gzip\n";
        let err = parse(text).expect_err("typo must fail");
        let msg = err.to_string();
        match err {
            ConfigError::Invalid {
                line,
                column,
                field,
                ..
            } => {
                assert_eq!((line, column), (5, 3), "{msg}");
                assert_eq!(field, "exporter.compresion", "{msg}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            msg.starts_with("receiver.yaml:5:3: `exporter.compresion`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_value_type_is_located() {
        let err = parse("tracker:\n  idle_timeout_ms: soon\n").expect_err("bad type");
        match err {
            ConfigError::Invalid { line, field, .. } => {
                assert_eq!(line, 2);
                assert_eq!(field, "tracker.idle_timeout_ms");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn range_rules_are_located_at_the_field() {
        let err = parse("ebpf:\n  poll_interval_ms: 10\n  max_capture_bytes: 999999\n")
            .expect_err("range");
        match err {
            ConfigError::Invalid {
                line,
                column,
                field,
                ..
            } => {
                assert_eq!((line, column), (3, 3));
                assert_eq!(field, "ebpf.max_capture_bytes");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse("exporter:\n  endpoint: localhost:4317\n").is_err());
        assert!(parse("ebpf:\n  data_ring_bytes: 5000\n").is_err());
    }

    #[test]
    fn environment_wins_over_file() {
        let mut cfg =
            parse("exporter:\n  endpoint: http://file:4317\n  timeout_ms: 100\n").expect("ok");
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://env:4317".to_string()),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("http://traces:14317".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("Api-Key=a%20b, x=1".to_string()),
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("none".to_string()),
            "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("2500".to_string()),
            "OTEL_RESOURCE_ATTRIBUTES" => {
                Some("deployment.environment.name=prod,service.name=x".to_string())
            }
            "OTEL_SERVICE_NAME" => Some("svc".to_string()),
            _ => None,
        };
        let res = cfg.apply_env(env).expect("env ok");
        assert_eq!(cfg.exporter.endpoint, "http://traces:14317");
        assert_eq!(cfg.exporter_port(), Some(14317));
        assert_eq!(
            cfg.exporter.headers.get("api-key").map(String::as_str),
            Some("a b")
        );
        assert_eq!(cfg.exporter.compression, Compression::None);
        assert_eq!(cfg.exporter.timeout_ms, 2500);
        assert!(res.contains(&("service.name".to_string(), "svc".to_string())));
        assert!(!res.contains(&("service.name".to_string(), "x".to_string())));
        let mut cfg = Config::default();
        assert!(
            cfg.apply_env(|k| (k == "OTEL_EXPORTER_OTLP_TIMEOUT").then(|| "soon".into()))
                .is_err()
        );
        assert!(
            cfg.apply_env(|k| (k == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".into()))
                .is_err()
        );
    }

    #[test]
    fn every_yaml_file_we_ship_under_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut files = vec![dir.join("receiver.yaml")];
        if let Ok(rd) = std::fs::read_dir(dir.join("examples")) {
            files.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml")),
            );
        }
        assert!(
            files.len() >= 2,
            "expected config/receiver.yaml and at least one example"
        );
        for f in files {
            let cfg = Config::load(&f).unwrap_or_else(|e| panic!("{e}"));
            if f.ends_with("receiver.yaml") {
                assert_eq!(
                    cfg,
                    Config::default(),
                    "config/receiver.yaml must document the defaults"
                );
            }
        }
    }
}
