//! The stock OpenTelemetry Collector, and reading what it received.
//!
//! Tests start the Collector with `otel-collector-config/test.yaml`: OTLP/gRPC on a loopback port
//! → file exporter writing one OTLP JSON `ExportTraceServiceRequest` per line. [`SpanReader`]
//! reads that file incrementally into [`SpanView`]s, and [`Collector::wait_for`] polls it until a
//! condition on the spans holds or a deadline passes (the failure lists what was seen).
//!
//! OTLP JSON (protobuf JSON mapping): `resourceSpans[].resource.attributes`,
//! `resourceSpans[].scopeSpans[].spans[]`; 64-bit integers (times, `intValue`) are strings;
//! `kind` is the enum number (2 SERVER, 3 CLIENT); `status.code` 0 unset, 1 ok, 2 error.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::paths;
use crate::process::{Output, ProcessGuard};

pub const SPAN_KIND_SERVER: i64 = 2;
pub const SPAN_KIND_CLIENT: i64 = 3;
pub const STATUS_UNSET: i64 = 0;
pub const STATUS_ERROR: i64 = 2;

/// One attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps, bytes: kept as JSON.
    Other(Value),
}

impl AttrValue {
    fn from_json(v: &Value) -> AttrValue {
        if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
            return AttrValue::Str(s.to_string());
        }
        if let Some(i) = v.get("intValue") {
            // int64 is a JSON string in the protobuf mapping; accept a number too.
            let parsed = i
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| i.as_i64());
            if let Some(n) = parsed {
                return AttrValue::Int(n);
            }
        }
        if let Some(d) = v.get("doubleValue").and_then(Value::as_f64) {
            return AttrValue::Double(d);
        }
        if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
            return AttrValue::Bool(b);
        }
        AttrValue::Other(v.clone())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => write!(f, "{s:?}"),
            AttrValue::Int(n) => write!(f, "{n}"),
            AttrValue::Double(d) => write!(f, "{d}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Other(v) => write!(f, "{v}"),
        }
    }
}

/// A span as the Collector exported it, flattened with its resource.
#[derive(Clone, Debug)]
pub struct SpanView {
    pub name: String,
    pub kind: i64,
    pub trace_id: String,
    pub span_id: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status_code: i64,
    pub status_message: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub resource: BTreeMap<String, AttrValue>,
    pub scope_name: String,
}

impl SpanView {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(AttrValue::as_i64)
    }

    /// `process.pid` of the span's resource.
    pub fn pid(&self) -> Option<u32> {
        self.resource
            .get("process.pid")
            .and_then(AttrValue::as_i64)
            .map(|p| p as u32)
    }

    /// `db.query.text`.
    pub fn query_text(&self) -> Option<&str> {
        self.str_attr("db.query.text")
    }

    pub fn duration_ns(&self) -> i128 {
        i128::from(self.end_ns) - i128::from(self.start_ns)
    }

    pub fn is_client(&self) -> bool {
        self.kind == SPAN_KIND_CLIENT
    }

    pub fn is_server(&self) -> bool {
        self.kind == SPAN_KIND_SERVER
    }

    /// One line for failure messages.
    pub fn summary(&self) -> String {
        let kind = match self.kind {
            SPAN_KIND_SERVER => "SERVER",
            SPAN_KIND_CLIENT => "CLIENT",
            _ => "OTHER",
        };
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{kind} {:?} pid={} exe={} dur={:.3}ms status={} [{}]",
            self.name,
            self.pid().map_or("-".to_string(), |p| p.to_string()),
            self.resource
                .get("process.executable.name")
                .map_or("-".to_string(), |v| v.to_string()),
            self.duration_ns() as f64 / 1e6,
            self.status_code,
            attrs.join(", ")
        )
    }
}

fn attrs_map(v: Option<&Value>) -> BTreeMap<String, AttrValue> {
    let mut out = BTreeMap::new();
    for kv in v.and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = kv.get("key").and_then(Value::as_str) {
            let value = kv
                .get("value")
                .map(AttrValue::from_json)
                .unwrap_or(AttrValue::Other(Value::Null));
            out.insert(key.to_string(), value);
        }
    }
    out
}

fn u64_field(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(n) => n.as_u64().unwrap_or(0),
        None => 0,
    }
}

/// Parses one OTLP JSON `ExportTraceServiceRequest` into spans.
pub fn parse_otlp_json(line: &str) -> Result<Vec<SpanView>> {
    let doc: Value = serde_json::from_str(line).context("not OTLP JSON")?;
    let mut out = Vec::new();
    for rs in doc
        .get("resourceSpans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let resource = attrs_map(rs.get("resource").and_then(|r| r.get("attributes")));
        for ss in rs
            .get("scopeSpans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let scope_name = ss
                .get("scope")
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            for s in ss
                .get("spans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let status = s.get("status");
                out.push(SpanView {
                    name: s
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    kind: s.get("kind").and_then(Value::as_i64).unwrap_or(0),
                    trace_id: s
                        .get("traceId")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    span_id: s
                        .get("spanId")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    start_ns: u64_field(s, "startTimeUnixNano"),
                    end_ns: u64_field(s, "endTimeUnixNano"),
                    status_code: status
                        .and_then(|st| st.get("code"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                    status_message: status
                        .and_then(|st| st.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    attributes: attrs_map(s.get("attributes")),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// A Collector config of `otel-collector-config/` by file name.
fn test_config(name: &str) -> PathBuf {
    paths::collector_config_dir().join(name)
}

/// Fails for a span that ends before it starts. Every span the harness reads goes through it
/// ([`SpanReader::poll`]), so a negative duration anywhere fails the e2e test that produced it
/// (issue 8, R10), whatever that test was looking at.
pub fn check_span_times(s: &SpanView) -> Result<()> {
    if s.end_ns < s.start_ns {
        bail!(
            "span ends {} ns before it starts (negative duration): {}",
            s.start_ns - s.end_ns,
            s.summary()
        );
    }
    Ok(())
}

/// Waits until a starting Collector's OTLP port accepts connections (fails at once if the
/// process exits first).
pub fn wait_otlp_port(guard: &mut ProcessGuard, port: u16) -> Result<()> {
    crate::process::wait_tcp(
        "the Collector's OTLP port",
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        guard,
    )
}

/// Reads the file exporter's output incrementally (complete lines only).
pub struct SpanReader {
    path: PathBuf,
    offset: u64,
    pending: Vec<u8>,
    spans: Vec<SpanView>,
    /// Spans that failed [`check_span_times`]: every later poll fails with them.
    bad_times: Vec<String>,
}

impl SpanReader {
    pub fn new(path: &Path) -> SpanReader {
        SpanReader {
            path: path.to_path_buf(),
            offset: 0,
            pending: Vec::new(),
            spans: Vec::new(),
            bad_times: Vec::new(),
        }
    }

    /// Reads what was appended since the last call; returns all spans so far. Fails (now and
    /// on every later call) once any span ended before it started.
    pub fn poll(&mut self) -> Result<&[SpanView]> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(&self.spans),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open `{}`", self.path.display()));
            }
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.pending.extend_from_slice(&buf);
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if !text.is_empty() {
                for s in parse_otlp_json(text)? {
                    if let Err(e) = check_span_times(&s) {
                        self.bad_times.push(format!("{e:#}"));
                    }
                    self.spans.push(s);
                }
            }
        }
        if !self.bad_times.is_empty() {
            bail!(
                "{} span(s) with a negative duration in `{}`:\n  {}",
                self.bad_times.len(),
                self.path.display(),
                self.bad_times
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        Ok(&self.spans)
    }

    pub fn spans(&self) -> &[SpanView] {
        &self.spans
    }

    /// Cuts an unterminated last line (a writer killed mid-line) off the file and forgets it;
    /// returns its length.
    pub fn drop_torn_line(&mut self) -> Result<u64> {
        self.poll()?;
        let torn = self.pending.len() as u64;
        if torn > 0 {
            let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            self.offset -= torn;
            f.set_len(self.offset)?;
            self.pending.clear();
        }
        Ok(torn)
    }
}

/// A running Collector.
pub struct Collector {
    pub otlp_port: u16,
    pub spans_file: PathBuf,
    reader: SpanReader,
    guard: ProcessGuard,
    /// Where a test Collector logs (`None` for `cargo xtask run`'s).
    log: Option<PathBuf>,
}

impl Collector {
    /// Starts the Collector with `test.yaml` writing to `dir/spans.jsonl`; waits until its OTLP
    /// port accepts connections.
    pub fn start_test(dir: &Path, otlp_port: u16) -> Result<Collector> {
        let spans_file = dir.join("spans.jsonl");
        let log = dir.join("otelcol.log");
        let guard = Collector::spawn_test(&test_config("test.yaml"), otlp_port, &spans_file, &log)?;
        let mut c = Collector {
            otlp_port,
            reader: SpanReader::new(&spans_file),
            spans_file,
            guard,
            log: Some(log),
        };
        c.wait_listening()?;
        Ok(c)
    }

    fn spawn_test(config: &Path, port: u16, spans_file: &Path, log: &Path) -> Result<ProcessGuard> {
        let mut cmd = Command::new(paths::collector_bin());
        cmd.arg("--config")
            .arg(config)
            .env("E2E_OTLP_PORT", port.to_string())
            .env("E2E_SPANS_FILE", spans_file);
        ProcessGuard::spawn("otelcol", cmd, Output::File(log.to_path_buf()))
    }

    /// Stops the Collector with `sig` and waits until the process is gone (its port refuses
    /// connections). SIGTERM is a graceful stop (what `kill` and Kubernetes send: in-flight
    /// requests are answered and the file exporter flushes); after SIGKILL the spans the
    /// Collector acknowledged but had not written yet are lost *by the Collector*, and its last
    /// line may be torn (see [`restart_with`](Self::restart_with)).
    pub fn kill(&mut self, sig: libc::c_int) -> Result<()> {
        self.guard.signal(sig);
        self.guard.wait_timeout(Duration::from_secs(15))?;
        Ok(())
    }

    /// Starts a test Collector again on the same port and output file (the file exporter
    /// appends, so the spans read so far stay valid) with `config`, a file of
    /// `otel-collector-config/` (`test.yaml`, `test-refusing.yaml`, …), after [`kill`]; waits
    /// until its port accepts connections.
    ///
    /// [`kill`]: Self::kill
    pub fn restart_with(&mut self, config: &str) -> Result<()> {
        let Some(log) = self.log.clone() else {
            bail!("only a test Collector can be restarted");
        };
        if self.guard.try_wait()?.is_none() {
            bail!("the Collector is still running: kill it first");
        }
        // A line torn by SIGKILL would glue itself to the new Collector's first line.
        let len = self.reader.drop_torn_line()?;
        if len > 0 {
            eprintln!("[harness] the killed Collector left a torn line of {len} bytes: removed");
        }
        self.guard =
            Collector::spawn_test(&test_config(config), self.otlp_port, &self.spans_file, &log)?;
        self.wait_listening()
    }

    /// Starts the Collector with any config, output to the console (`cargo xtask run`).
    pub fn start_with_config(config: &Path, otlp_port: u16, output: Output) -> Result<Collector> {
        let mut cmd = Command::new(paths::collector_bin());
        cmd.arg("--config").arg(config);
        let guard = ProcessGuard::spawn("otelcol", cmd, output)?;
        let mut c = Collector {
            otlp_port,
            reader: SpanReader::new(Path::new("/dev/null")),
            spans_file: PathBuf::new(),
            guard,
            log: None,
        };
        c.wait_listening()?;
        Ok(c)
    }

    fn wait_listening(&mut self) -> Result<()> {
        wait_otlp_port(&mut self.guard, self.otlp_port)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    pub fn guard_mut(&mut self) -> &mut ProcessGuard {
        &mut self.guard
    }

    /// All spans received so far.
    pub fn spans(&mut self) -> Result<Vec<SpanView>> {
        Ok(self.reader.poll()?.to_vec())
    }

    /// Reads the rest of the output: fails when any span so far has a negative duration;
    /// else how many spans there are.
    pub fn check_output(&mut self) -> Result<usize> {
        Ok(self.reader.poll()?.len())
    }

    /// Polls the exported spans until `done(spans)` holds; on timeout the error shows up to 60
    /// of the spans seen (those passing `relevant`) and what `done` was waiting for.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        relevant: impl Fn(&SpanView) -> bool,
        done: impl Fn(&[&SpanView]) -> bool,
    ) -> Result<Vec<SpanView>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.reader.poll()?;
            let rel: Vec<&SpanView> = spans.iter().filter(|s| relevant(s)).collect();
            if done(&rel) {
                return Ok(rel.into_iter().cloned().collect());
            }
            if Instant::now() >= deadline {
                let total = spans.len();
                let shown: Vec<String> = rel
                    .iter()
                    .take(60)
                    .map(|s| format!("  {}", s.summary()))
                    .collect();
                bail!(
                    "timed out after {timeout:?} waiting for {what}; the Collector exported {total} spans, \
                     {} relevant{}:\n{}\ncollector log tail:\n{}",
                    rel.len(),
                    if rel.len() > 60 {
                        " (first 60 shown)"
                    } else {
                        ""
                    },
                    shown.join("\n"),
                    self.guard.log_tail(10)
                );
            }
            self.guard.ensure_running()?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"process.pid","value":{"intValue":"42"}},{"key":"service.name","value":{"stringValue":"unknown_service:mariadb"}}]},"scopeSpans":[{"scope":{"name":"ebpf-receiver"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"SELECT t1","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712660200000000","attributes":[{"key":"db.system.name","value":{"stringValue":"mysql"}},{"key":"server.port","value":{"intValue":"3306"}},{"key":"x.ok","value":{"boolValue":true}}],"status":{"code":2,"message":"boom"}},{"name":"PING","kind":2}]}]}]}"#;

    #[test]
    fn parses_otlp_json_lines() {
        let spans = parse_otlp_json(LINE).expect("parse");
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s.name, "SELECT t1");
        assert!(s.is_client());
        assert_eq!(s.pid(), Some(42));
        assert_eq!(s.str_attr("db.system.name"), Some("mysql"));
        assert_eq!(s.int_attr("server.port"), Some(3306));
        assert_eq!(s.attr("x.ok"), Some(&AttrValue::Bool(true)));
        assert_eq!(s.duration_ns(), 200_000_000);
        assert_eq!(
            (s.status_code, s.status_message.as_str()),
            (STATUS_ERROR, "boom")
        );
        assert!(spans[1].is_server());
        assert_eq!(spans[1].status_code, STATUS_UNSET);
    }

    #[test]
    fn reader_takes_complete_lines_only() {
        let dir = std::env::temp_dir().join(format!("spanreader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("spans.jsonl");
        let (a, b) = LINE.split_at(100);
        std::fs::write(&path, a).expect("write");
        let mut r = SpanReader::new(&path);
        assert_eq!(r.poll().expect("poll").len(), 0);
        std::fs::write(&path, format!("{a}{b}\n{a}")).expect("write");
        assert_eq!(r.poll().expect("poll").len(), 2);
        std::fs::write(&path, format!("{a}{b}\n{a}{b}\n")).expect("write");
        assert_eq!(r.poll().expect("poll").len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_negative_duration_fails_every_later_poll() {
        let dir = std::env::temp_dir().join(format!("spanreader-neg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("spans.jsonl");
        std::fs::write(&path, format!("{LINE}\n")).expect("write");
        let mut r = SpanReader::new(&path);
        assert_eq!(r.poll().expect("good spans").len(), 2);
        let bad = LINE.replace("1544712660200000000", "1544712659999999999");
        std::fs::write(&path, format!("{LINE}\n{bad}\n")).expect("write");
        let err = format!("{:#}", r.poll().expect_err("a negative duration"));
        assert!(
            err.contains("negative duration") && err.contains("SELECT t1"),
            "{err}"
        );
        assert!(r.poll().is_err(), "stays failed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
