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
pub const DEFAULT_MAX_TOTAL_BUFFER_BYTES: usize = 128 * 1024 * 1024;
pub const DEFAULT_MAX_QUERY_TEXT_BYTES: usize = 2048;
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_BATCH_SPANS: usize = 2048;
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
    /// Most unparsed bytes kept by all connections together; past it the connection that went
    /// over drops its buffered bytes (counted as buffer overflow). Default 134217728.
    pub max_total_buffer_bytes: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            max_connections: DEFAULT_TRACKER_MAX_CONNECTIONS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_buffer_bytes_per_connection: DEFAULT_MAX_BUFFER_BYTES_PER_CONNECTION,
            max_total_buffer_bytes: DEFAULT_MAX_TOTAL_BUFFER_BYTES,
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
    /// A batch is sent when it holds this many spans. Default 2048. Under load a larger
    /// request costs the receiver and the Collector less per span (redis-benchmark on
    /// loopback, 512 → 2048: receiver 2.4 → 2.0 µs, Collector 5.6 → 4.3 µs per span); it is
    /// also the most spans one retried request can duplicate. (2048 once left 1.7–2.8 MiB
    /// more resident after a Collector outage: free memory at the top of glibc's second arena,
    /// which `malloc_trim` does not return; the receiver now uses one arena, `app.rs`.)
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
    #[error(
        "`{path}` is larger than a configuration file may be ({MAX_CONFIG_FILE_BYTES} bytes); \
         is it the right file?"
    )]
    TooLarge { path: PathBuf },
    #[error("environment variable `{var}` (for `{field}`): {reason}")]
    Env {
        var: String,
        field: String,
        reason: String,
    },
    #[error("`{flag}` (for `{field}`): {reason}")]
    Flag {
        flag: String,
        field: String,
        reason: String,
    },
}

/// Largest configuration file read, in bytes. Real ones are a few KiB; the cap bounds what a
/// wrong path (a log, an image, `/dev/zero`) costs before it is rejected.
pub const MAX_CONFIG_FILE_BYTES: usize = 1 << 20;

/// serde-saphyr's limits for a configuration: the schema is three levels deep and a few dozen
/// keys long, so these are generous for a real file and stop YAML bombs (alias expansion,
/// deep nesting, node floods) early, with bounded memory and time.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_CONFIG_FILE_BYTES),
            max_depth: 16,
            max_documents: 1,
            max_nodes: 50_000,
            max_events: 100_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_recorded_anchor_events: 100_000,
            max_recorded_anchor_bytes: MAX_CONFIG_FILE_BYTES,
            max_total_scalar_bytes: MAX_CONFIG_FILE_BYTES,
            max_merge_keys: 1_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

impl Config {
    /// Reads and validates a YAML file (no environment applied). At most
    /// [`MAX_CONFIG_FILE_BYTES`] are read; the text must be UTF-8.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read as _;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_CONFIG_FILE_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(read_err)?;
        if bytes.len() > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            // The bytes before `at` are valid UTF-8: locate the bad byte in them.
            let before = std::str::from_utf8(bytes.get(..at).unwrap_or_default()).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: field_path_at(before, line, column, false)
                    .unwrap_or_else(|| DOCUMENT.to_string()),
                reason: format!(
                    "byte 0x{:02x} is not UTF-8: a configuration file is YAML text",
                    bytes.get(at).copied().unwrap_or(0)
                ),
            }
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates YAML text; `path` is used in error messages only. An empty
    /// document (no text, only comments, `---` or `~`) means all defaults.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parsed: Option<Config> = if text.trim().is_empty() {
            None
        } else {
            serde_saphyr::from_str_with_options(text, yaml_options())
                .map_err(|e| yaml_error(&e, text, path))?
        };
        let cfg = parsed.unwrap_or_default();
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
            let v = self.ebpf.max_capture_bytes;
            return e(
                "ebpf.max_capture_bytes",
                format!("must be in 1..={max}, got {v}"),
            );
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
            return e("ebpf.max_connections", "must be > 0, got 0".into());
        }
        if self.ebpf.poll_interval_ms == 0 || self.ebpf.poll_interval_ms > 1000 {
            let v = self.ebpf.poll_interval_ms;
            return e(
                "ebpf.poll_interval_ms",
                format!("must be in 1..=1000, got {v}"),
            );
        }
        if self.tracker.max_connections == 0 {
            return e("tracker.max_connections", "must be > 0, got 0".into());
        }
        if self.tracker.max_buffer_bytes_per_connection < 1024 {
            return e(
                "tracker.max_buffer_bytes_per_connection",
                format!(
                    "must be ≥ 1024, got {}",
                    self.tracker.max_buffer_bytes_per_connection
                ),
            );
        }
        if self.tracker.max_total_buffer_bytes < self.tracker.max_buffer_bytes_per_connection {
            return e(
                "tracker.max_total_buffer_bytes",
                "must be ≥ tracker.max_buffer_bytes_per_connection".into(),
            );
        }
        if self.tracker.request_timeout_ms == 0 {
            return e("tracker.request_timeout_ms", "must be > 0, got 0".into());
        }
        if self.tracker.idle_timeout_ms < self.tracker.request_timeout_ms {
            return e(
                "tracker.idle_timeout_ms",
                format!(
                    "is {}, must be ≥ tracker.request_timeout_ms ({})",
                    self.tracker.idle_timeout_ms, self.tracker.request_timeout_ms
                ),
            );
        }
        if let Err(r) = endpoint_port(&self.exporter.endpoint) {
            return e("exporter.endpoint", r);
        }
        if self.exporter.timeout_ms == 0 {
            return e("exporter.timeout_ms", "must be > 0, got 0".into());
        }
        if self.exporter.max_batch_spans == 0 {
            return e("exporter.max_batch_spans", "must be > 0, got 0".into());
        }
        if self.exporter.max_request_bytes < 64 * 1024 {
            let v = self.exporter.max_request_bytes;
            return e(
                "exporter.max_request_bytes",
                format!("must be ≥ 65536, got {v}"),
            );
        }
        if self.exporter.max_queue_bytes < self.exporter.max_request_bytes {
            return e(
                "exporter.max_queue_bytes",
                format!(
                    "is {}, must be ≥ exporter.max_request_bytes ({})",
                    self.exporter.max_queue_bytes, self.exporter.max_request_bytes
                ),
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
        if let Err(why) = log_filter_ok(&self.telemetry.log_level) {
            return e("telemetry.log_level", why);
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
        let env_err = |var: &str, field: &str, reason: String| ConfigError::Env {
            var: var.to_string(),
            field: field.to_string(),
            reason,
        };
        // The signal-specific variable wins over the general one (OTLP exporter spec).
        let pick = |traces: &'static str, general: &'static str| {
            get(traces)
                .map(|v| (traces, v))
                .or_else(|| get(general).map(|v| (general, v)))
        };
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ) {
            endpoint_port(&v).map_err(|r| env_err(var, "exporter.endpoint", r))?;
            self.exporter.endpoint = v;
        }
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            for (k, val) in parse_key_values(&v).map_err(|r| env_err(var, "exporter.headers", r))? {
                self.exporter.headers.insert(k.to_ascii_lowercase(), val);
            }
        }
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            self.exporter.compression = match v.trim() {
                "gzip" => Compression::Gzip,
                "none" | "" => Compression::None,
                other => {
                    return Err(env_err(
                        var,
                        "exporter.compression",
                        format!("`{other}` is not `gzip` or `none`"),
                    ));
                }
            };
        }
        if let Some((var, v)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            self.exporter.timeout_ms =
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or_else(|| {
                        env_err(
                            var,
                            "exporter.timeout_ms",
                            format!("`{v}` is not a positive integer of milliseconds"),
                        )
                    })?;
        }
        if let Some((var, p)) = pick(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        )
        .filter(|(_, p)| p.trim() != "grpc")
        {
            return Err(env_err(
                var,
                "exporter",
                format!("`{p}` is not supported: only `grpc`"),
            ));
        }
        let mut resource = Vec::new();
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            resource = parse_key_values(&v)
                .map_err(|r| env_err("OTEL_RESOURCE_ATTRIBUTES", "resource", r))?;
        }
        if let Some(name) = get("OTEL_SERVICE_NAME").filter(|n| !n.trim().is_empty()) {
            resource.retain(|(k, _)| k != "service.name");
            resource.push(("service.name".to_string(), name));
        }
        // RUST_LOG replaces telemetry.log_level when logging starts: a typo there would
        // otherwise fall back to the file's level without a word.
        if let Some(v) = get("RUST_LOG").filter(|v| !v.trim().is_empty()) {
            log_filter_ok(&v).map_err(|r| env_err("RUST_LOG", "telemetry.log_level", r))?;
        }
        self.validate()
            .map_err(|(field, reason)| env_err("OTEL_*", &field, reason))?;
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

/// W3C-baggage-like `k1=v1,k2=v2` (values percent-decoded). Errors name the item by its
/// position, never its text: headers carry credentials (`authorization=Bearer ...`).
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, item) in text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("item {} is not `key=value` (no `=`)", n + 1))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("item {} has an empty key", n + 1));
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

/// Whether `filter` is a `tracing` filter (`info`, `ebpf_receiver=debug,warn`, ...).
fn log_filter_ok(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| {
            format!("`{filter}` is not a log filter such as `info` or `ebpf_receiver=debug`: {e}")
        })
}

/// The field path of an error about the whole document.
const DOCUMENT: &str = "<document>";

/// A serde-saphyr error as a located [`ConfigError::Invalid`] whose reason names what was
/// found and what was expected, in the words of this file's schema rather than the parser's.
fn yaml_error(err: &serde_saphyr::Error, text: &str, path: &Path) -> ConfigError {
    use serde_saphyr::Error as E;
    let err = err.without_snippet();
    let (line, column) = position(err).unwrap_or((1, 1));
    // Through an alias, the reason is about the anchored value; the location is the use.
    if let E::AliasError { error, .. } = err {
        let inner = yaml_error(error, text, path);
        if let ConfigError::Invalid {
            line: l,
            column: c,
            reason,
            ..
        } = inner
        {
            return ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: field_path_at(text, line, column, false)
                    .unwrap_or_else(|| DOCUMENT.to_string()),
                reason: format!("{reason} (the alias's anchor is at {l}:{c})"),
            };
        }
        return inner;
    }
    // Whether the location is the offending key itself (unknown, twice) rather than a value.
    let mut at_key = false;
    let mut whole_document = false;
    let reason = match err {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            at_key = true;
            unknown_key(field, expected)
        }
        E::DuplicateMappingKey { key, .. } => {
            at_key = true;
            match key {
                Some(k) => format!("`{k}` is set twice in the same mapping"),
                None => "a key is set twice in the same mapping".to_string(),
            }
        }
        E::InvalidScalar { ty, .. } => {
            format!(
                "`{}` is not {}",
                scalar_at(text, line, column),
                type_words(ty)
            )
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!("`{variant}` is not one of {}", expected.join(", ")),
        E::Unexpected { expected, .. } => {
            let want = match *expected {
                "mapping start" => "a mapping of `key: value` lines",
                "sequence start" => "a list",
                "string scalar" | "scalar" => "a single value",
                other => other,
            };
            format!("expected {want}, found {}", node_at(text, line, column))
        }
        E::MultipleDocuments { .. } => {
            whole_document = true;
            "a second YAML document (after `---`): a configuration file holds one".to_string()
        }
        E::Budget {
            breach: serde_saphyr::budget::BudgetBreach::Documents { .. },
            ..
        } => {
            whole_document = true;
            "a second YAML document (after `---`): a configuration file holds one".to_string()
        }
        E::Budget { breach, .. } => {
            whole_document = true;
            format!(
                "{}: a limit against YAML bombs; a configuration file is small and flat",
                budget_words(breach)
            )
        }
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            whole_document = true;
            "aliases (`*name`) expand to too much: a limit against YAML bombs".to_string()
        }
        other => {
            let msg = first_line(&other.to_string());
            if msg.contains("tabs disallowed") {
                at_key = true;
                "a tab in the indentation: YAML indents with spaces only".to_string()
            } else if msg.contains("recursion limit exceeded") {
                whole_document = true;
                "nested too deeply: a limit against YAML bombs".to_string()
            } else if matches!(other, E::Message { .. } | E::SerdeInvalidValue { .. }) {
                // A value's own parser said no (e.g. a socket address): show the value.
                format!("`{}`: {msg}", scalar_at(text, line, column))
            } else {
                msg
            }
        }
    };
    let field = if whole_document {
        None
    } else {
        field_path_at(text, line, column, at_key)
    };
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        field: field.unwrap_or_else(|| DOCUMENT.to_string()),
        reason,
    }
}

/// 1-based (line, column) of a serde-saphyr error, when it has one.
fn position(err: &serde_saphyr::Error) -> Option<(usize, usize)> {
    err.location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .filter(|(l, c)| *l > 0 && *c > 0)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // serde-saphyr prefixes "error: line L column C: "; the location is reported separately.
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let line = match line.split_once(": ") {
        Some((head, tail)) if head.starts_with("line ") => tail,
        _ => line,
    };
    // ... and some messages end with " at line L, column C".
    match line.rsplit_once(" at line ") {
        Some((msg, pos)) if pos.contains(", column ") => msg.to_string(),
        _ => line.to_string(),
    }
}

/// "unknown key `compresion` (did you mean `compression`?); the keys here are ...".
fn unknown_key(field: &str, expected: &[&str]) -> String {
    let near = expected
        .iter()
        .map(|e| (edit_distance(field, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) || (field.len() >= 4 && e.starts_with(field)))
        .min();
    let hint = near
        .map(|(_, e)| format!(" (did you mean `{e}`?)"))
        .unwrap_or_default();
    format!(
        "unknown key `{field}`{hint}; the keys here are {}",
        expected.join(", ")
    )
}

/// Levenshtein distance, for "did you mean" (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// What a serde-saphyr scalar type name means to the user.
fn type_words(ty: &str) -> String {
    let range = |max: u64| format!("a whole number in 0..={max}");
    match ty {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" | "usize" => "a whole number (0 or more)".to_string(),
        "bool" | "boolean" => "`true` or `false`".to_string(),
        "floating point" | "f32" | "f64" => "a number".to_string(),
        other => format!("a valid {other}"),
    }
}

fn budget_words(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { depth } => format!("nested {depth} levels deep"),
        B::Aliases { aliases } => format!("{aliases} aliases (`*name`)"),
        B::Anchors { anchors } => format!("{anchors} anchors (`&name`)"),
        B::AliasAnchorRatio { aliases, anchors } => {
            format!("{aliases} aliases (`*name`) of {anchors} anchors")
        }
        B::Nodes { nodes } => format!("more than {} values", nodes.saturating_sub(1)),
        B::Events { .. } => "too many YAML events".to_string(),
        B::Documents { documents } => format!("{documents} YAML documents"),
        B::ScalarBytes { total_scalar_bytes } => {
            format!("{total_scalar_bytes} bytes of values")
        }
        B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } => {
            "anchors (`&name`) that hold too much".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// The 1-based (line, column) character position in `text`, as a char iterator from there.
fn chars_at(text: &str, line: usize, column: usize) -> impl Iterator<Item = char> + '_ {
    text.lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .chars()
        .skip(column.saturating_sub(1))
}

/// The plain scalar at a position, cut at a comment or a flow delimiter (and at 40 chars).
fn scalar_at(text: &str, line: usize, column: usize) -> String {
    let mut out = String::new();
    let mut prev = ' ';
    for c in chars_at(text, line, column) {
        if matches!(c, ',' | ']' | '}') || (c == '#' && prev == ' ') {
            break;
        }
        if out.chars().count() == 40 {
            out.push('…');
            break;
        }
        out.push(c);
        prev = c;
    }
    out.trim().to_string()
}

/// What kind of YAML node starts at a position: "a list", "a mapping", "an empty value"...
fn node_at(text: &str, line: usize, column: usize) -> String {
    let rest: String = chars_at(text, line, column).collect();
    let rest = rest.trim();
    let is_key = yaml_key(rest).is_some() && !rest.starts_with(['"', '\'']);
    match rest.chars().next() {
        None | Some('~' | '#') => "an empty value".to_string(),
        Some('[' | '-') => "a list".to_string(),
        Some('{') => "a mapping".to_string(),
        _ if rest == "null" || rest == "Null" || rest == "NULL" => "an empty value".to_string(),
        _ if is_key => "a mapping".to_string(),
        _ => format!("the value `{}`", scalar_at(text, line, column)),
    }
}

/// Block-style YAML key path of the value at (line, column), both 1-based: the keys that
/// enclose it, and with `at_key` the key that starts there (an unknown or repeated key).
fn field_path_at(text: &str, line: usize, column: usize, at_key: bool) -> Option<String> {
    let idx = line.checked_sub(1)?;
    let mut stack: Vec<String> = Vec::new();
    let mut want_indent = usize::MAX;
    for (n, l) in text
        .lines()
        .enumerate()
        .take(idx + 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let Some((indent, key)) = yaml_key(l) else {
            continue;
        };
        // A value error located at a key means the mapping starting there is the bad value:
        // it belongs to the key above.
        if n == idx && !at_key && indent + 1 >= column {
            continue;
        }
        if indent < want_indent {
            stack.push(key);
            want_indent = indent;
            if indent == 0 {
                break;
            }
        }
    }
    if stack.is_empty() {
        return None;
    }
    stack.reverse();
    Some(stack.join("."))
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
    fn a_value_error_at_a_key_belongs_to_the_key_above() {
        let text = "ebpf:\n  max_capture_bytes:\n    a: 1\n";
        // The mapping `a: 1` is the bad value of max_capture_bytes...
        assert_eq!(
            field_path_at(text, 3, 5, false).as_deref(),
            Some("ebpf.max_capture_bytes")
        );
        // ... while an unknown key `a` there would be named itself.
        assert_eq!(
            field_path_at(text, 3, 5, true).as_deref(),
            Some("ebpf.max_capture_bytes.a")
        );
        // A value on the key's own line belongs to that key.
        let text = "exporter:\n  headers:\n    a: b\n  timeout_ms: soon\n";
        assert_eq!(
            field_path_at(text, 4, 15, false).as_deref(),
            Some("exporter.timeout_ms")
        );
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_one() {
        let keys = ["endpoint", "compression", "timeout_ms"];
        assert!(unknown_key("compresion", &keys).contains("did you mean `compression`?"));
        assert!(unknown_key("timeout", &keys).contains("did you mean `timeout_ms`?"));
        assert!(!unknown_key("zzz", &keys).contains("did you mean"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn header_errors_never_echo_the_header() {
        let err = parse_key_values("x=1, authorization: Bearer s3cret").expect_err("no `=`");
        assert_eq!(err, "item 2 is not `key=value` (no `=`)");
        assert!(!err.contains("s3cret"));
    }

    #[test]
    fn yaml_bombs_are_refused_within_the_budget() {
        // 2,000 aliases of one anchor.
        let aliases = format!(
            "targets:\n  pids: [&p 1]\n  exclude_pids: [{}]\n",
            vec!["*p"; 2000].join(", ")
        );
        // 10,000-deep flow nesting.
        let deep = format!(
            "targets:\n  pids: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        for (what, text) in [("aliases", aliases), ("depth", deep)] {
            match parse(&text) {
                Err(ConfigError::Invalid { field, reason, .. }) => {
                    assert_eq!(field, DOCUMENT, "{what}: {reason}");
                    assert!(reason.contains("YAML bombs"), "{what}: {reason}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn files_over_the_cap_are_not_read_whole() {
        let dir = std::env::temp_dir().join(format!("ebpf-receiver-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("big.yaml");
        let mut text = String::from("targets:\n  pids:\n");
        while text.len() <= MAX_CONFIG_FILE_BYTES {
            text.push_str("    - 1\n");
        }
        std::fs::write(&path, &text).expect("write");
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::TooLarge { .. })
        ));
        // Just under the cap is read (and then refused for what it says).
        std::fs::write(&path, "# padding\n".repeat(MAX_CONFIG_FILE_BYTES / 16)).expect("write");
        assert_eq!(
            Config::load(&path).expect("comments only"),
            Config::default()
        );
        let _ = std::fs::remove_dir_all(&dir);
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
