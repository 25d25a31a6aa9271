//! R7: every broken configuration is refused the same way, by `validate` and by `run`: exit
//! code 2, `file:line:column` where the input has a position (the offending token, found in
//! the input by this test), the dotted field path (or the variable / flag), words that say what
//! is wrong, and, for `run`, nothing loaded into the kernel and no socket opened (the process
//! runs under `strace -f`, which must see no bpf(2), perf_event_open(2), socket(2), bind(2),
//! connect(2) or mount(2)). Files that are empty, blank, comments only or an empty document
//! are accepted: they mean all defaults.
//!
//! Prints one line per case with the time to reject (wall clock, process start to exit) and
//! the peak RSS of the rejecting process. Run:
//! `cargo test -p ebpf-receiver --test bad_config -- --nocapture`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The receiver's exit code for configuration errors.
const EXIT_CONFIG: i32 = 2;

/// Where the error must point.
#[derive(Clone, Copy, Debug)]
enum At {
    /// No position: the whole file, an environment variable or a flag.
    Nowhere,
    /// `file:line:column` of the first occurrence of this text in the input.
    Token(&'static str),
    /// ... of its `n`-th occurrence (1-based).
    Nth(&'static str, usize),
    /// The line of the first occurrence; the column is the parser's business (inside a
    /// 20,000-character line of brackets, after a tab).
    LineOf(&'static str),
    /// The first byte that is not UTF-8 (found with `std::str::from_utf8`).
    BadUtf8,
}

/// What the configuration is.
enum Input {
    Yaml(String),
    Bytes(Vec<u8>),
    /// A file the receiver may not read (mode 000; the DAC capabilities dropped when root).
    Unreadable,
    Missing,
    Directory,
    /// No file; one environment variable.
    Env(&'static str, &'static str),
    /// No file; these command-line flags.
    Flags(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    input: Input,
    at: At,
    /// The dotted field path, environment variable or flag the message must name.
    field: Option<&'static str>,
    /// Words the message must contain to tell the user what to fix.
    says: &'static [&'static str],
    /// Text the message must not contain (a secret).
    never: Option<&'static str>,
}

fn yaml(
    name: &'static str,
    text: &str,
    at: At,
    field: &'static str,
    says: &'static [&'static str],
) -> Case {
    Case {
        name,
        input: Input::Yaml(text.to_string()),
        at,
        field: Some(field),
        says,
        never: None,
    }
}

fn env(
    name: &'static str,
    var: &'static str,
    value: &'static str,
    field: &'static str,
    says: &'static [&'static str],
) -> Case {
    Case {
        name,
        input: Input::Env(var, value),
        at: At::Nowhere,
        field: Some(field),
        says,
        never: None,
    }
}

/// Deterministic bytes (xorshift), so a failure replays.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn cases() -> Vec<Case> {
    use At::*;
    let mut v = vec![
        // --- unknown keys
        yaml(
            "unknown top-level key",
            "exporterr:\n  endpoint: http://localhost:4317\n",
            Token("exporterr"),
            "exporterr",
            &["unknown key `exporterr`", "did you mean `exporter`"],
        ),
        yaml(
            "unknown nested key (typo)",
            "exporter:\n  endpoint: http://localhost:4317\n  compresion: gzip\n",
            Token("compresion"),
            "exporter.compresion",
            &["unknown key `compresion`", "did you mean `compression`"],
        ),
        yaml(
            "unknown protocol",
            "protocols:\n  redis: true\n  kafka: true\n",
            Token("kafka"),
            "protocols.kafka",
            &["unknown key `kafka`", "redis"],
        ),
        yaml(
            "key in the wrong section",
            "ebpf:\n  idle_timeout_ms: 1000\n",
            Token("idle_timeout_ms"),
            "ebpf.idle_timeout_ms",
            &["unknown key `idle_timeout_ms`"],
        ),
        // --- wrong types
        yaml(
            "text for an integer",
            "tracker:\n  idle_timeout_ms: soon\n",
            Token("soon"),
            "tracker.idle_timeout_ms",
            &["`soon`", "whole number"],
        ),
        yaml(
            "mapping for an integer",
            "ebpf:\n  max_capture_bytes:\n    a: 1\n",
            Token("a: 1"),
            "ebpf.max_capture_bytes",
            &["expected a single value", "found a mapping"],
        ),
        yaml(
            "list for a mapping",
            "exporter: [1, 2]\n",
            Token("["),
            "exporter",
            &["expected a mapping", "found a list"],
        ),
        yaml(
            "empty section",
            "exporter: ~\n",
            Token("~"),
            "exporter",
            &["expected a mapping", "empty value"],
        ),
        yaml(
            "integer for a boolean",
            "protocols:\n  redis: 3\n",
            Token("3"),
            "protocols.redis",
            &["`3`", "`true` or `false`"],
        ),
        yaml(
            "negative integer",
            "ebpf:\n  max_connections: -1\n",
            Token("-1"),
            "ebpf.max_connections",
            &["`-1`", "whole number in 0..=4294967295"],
        ),
        yaml(
            "integer overflow",
            "ebpf:\n  data_ring_bytes: 99999999999\n",
            Token("99999999999"),
            "ebpf.data_ring_bytes",
            &["`99999999999`", "0..=4294967295"],
        ),
        yaml(
            "fraction for an integer",
            "ebpf:\n  max_capture_bytes: 1.5\n",
            Token("1.5"),
            "ebpf.max_capture_bytes",
            &["`1.5`", "whole number"],
        ),
        yaml(
            "port over 65535",
            "targets:\n  exclude_ports: [22, 70000]\n",
            Token("70000"),
            "targets.exclude_ports",
            &["`70000`", "0..=65535"],
        ),
        yaml(
            "list for a header value",
            "exporter:\n  headers:\n    api-key: [1]\n",
            Token("[1]"),
            "exporter.headers.api-key",
            &["expected a single value", "found a list"],
        ),
        // --- out of range and cross-field rules
        yaml(
            "zero capture bytes",
            "ebpf:\n  max_capture_bytes: 0\n",
            Token("max_capture_bytes"),
            "ebpf.max_capture_bytes",
            &["must be in 1..=16384", "got 0"],
        ),
        yaml(
            "capture bytes over the kernel's cap",
            "ebpf:\n  max_capture_bytes: 999999\n",
            Token("max_capture_bytes"),
            "ebpf.max_capture_bytes",
            &["1..=16384", "got 999999"],
        ),
        yaml(
            "ring not a power of two",
            "ebpf:\n  data_ring_bytes: 5000\n",
            Token("data_ring_bytes"),
            "ebpf.data_ring_bytes",
            &["power of two", "got 5000"],
        ),
        yaml(
            "poll interval over 1 s",
            "ebpf:\n  poll_interval_ms: 5000\n",
            Token("poll_interval_ms"),
            "ebpf.poll_interval_ms",
            &["1..=1000", "got 5000"],
        ),
        yaml(
            "idle timeout below request timeout",
            "tracker:\n  request_timeout_ms: 60000\n  idle_timeout_ms: 1000\n",
            Token("idle_timeout_ms"),
            "tracker.idle_timeout_ms",
            &["is 1000", "tracker.request_timeout_ms (60000)"],
        ),
        yaml(
            "queue smaller than one request",
            "exporter:\n  max_queue_bytes: 70000\n",
            Token("max_queue_bytes"),
            "exporter.max_queue_bytes",
            &["is 70000", "exporter.max_request_bytes"],
        ),
        yaml(
            "log filter that does not parse",
            "telemetry:\n  log_level: \"=[bad\"\n",
            Token("log_level"),
            "telemetry.log_level",
            &["`=[bad`", "not a log filter"],
        ),
        // --- YAML syntax
        yaml(
            "tab in the indentation",
            "ebpf:\n\tmax_capture_bytes: 4096\n",
            LineOf("\tmax"),
            "ebpf.max_capture_bytes",
            &["tab", "spaces"],
        ),
        yaml(
            "duplicate key",
            "ebpf:\n  max_capture_bytes: 4096\n  max_capture_bytes: 8192\n",
            Nth("max_capture_bytes", 2),
            "ebpf.max_capture_bytes",
            &["`max_capture_bytes` is set twice"],
        ),
        yaml(
            "duplicate section",
            "ebpf:\n  max_capture_bytes: 4096\nexporter:\n  timeout_ms: 5\nebpf:\n  poll_interval_ms: 5\n",
            Nth("ebpf", 2),
            "ebpf",
            &["`ebpf` is set twice"],
        ),
        yaml(
            "unclosed quote",
            "exporter:\n  endpoint: \"http://x:4317\n",
            Token("\""),
            "exporter.endpoint",
            &["unclosed quote"],
        ),
        yaml(
            "a list instead of a mapping",
            "- ebpf\n- exporter\n",
            Token("-"),
            "<document>",
            &["expected a mapping", "found a list"],
        ),
        yaml(
            "a bare word",
            "just a scalar\n",
            Token("just"),
            "<document>",
            &["expected a mapping", "`just a scalar`"],
        ),
        yaml(
            "two documents",
            "---\nebpf:\n  max_capture_bytes: 4096\n---\nebpf:\n  max_capture_bytes: 8\n",
            Nth("---", 2),
            "<document>",
            &["second YAML document"],
        ),
        // --- bad endpoints and addresses
        yaml(
            "endpoint without a scheme",
            "exporter:\n  endpoint: localhost:4317\n",
            Token("endpoint"),
            "exporter.endpoint",
            &["`localhost:4317`", "must start with http://"],
        ),
        yaml(
            "https endpoint",
            "exporter:\n  endpoint: https://collector:4317\n",
            Token("endpoint"),
            "exporter.endpoint",
            &["TLS is not built into this receiver"],
        ),
        yaml(
            "endpoint port out of range",
            "exporter:\n  endpoint: \"http://collector:99999\"\n",
            Token("endpoint"),
            "exporter.endpoint",
            &["bad port `99999`"],
        ),
        yaml(
            "endpoint without a host",
            "exporter:\n  endpoint: \"http://:4317\"\n",
            Token("endpoint"),
            "exporter.endpoint",
            &["has no host"],
        ),
        yaml(
            "metrics address without a port",
            "telemetry:\n  metrics_address: localhost\n",
            Token("localhost"),
            "telemetry.metrics_address",
            &["`localhost`", "socket address"],
        ),
        yaml(
            "unknown compression",
            "exporter:\n  compression: zstd\n",
            Token("zstd"),
            "exporter.compression",
            &["`zstd` is not one of gzip, none"],
        ),
        // --- hostile files
        yaml(
            "billion laughs (top level)",
            &billion_laughs(),
            Token("a:"),
            "a",
            &["unknown key `a`"],
        ),
        yaml(
            "aliases of a list where numbers go",
            &format!(
                "targets:\n  pids: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n  exclude_pids: [{}]\n",
                ["*a"; 10].join(", ")
            ),
            Token("*a"),
            "targets.exclude_pids",
            &["expected a single value", "found a list", "anchor"],
        ),
        yaml(
            "2,000 aliases of one anchor",
            &format!(
                "targets:\n  pids: [&p 1]\n  exclude_pids: [{}]\n",
                vec!["*p"; 2000].join(", ")
            ),
            LineOf("exclude_pids"),
            "<document>",
            &["aliases", "YAML bombs"],
        ),
        yaml(
            "10,000-deep flow nesting",
            &format!(
                "targets:\n  pids: {}{}\n",
                "[".repeat(10_000),
                "]".repeat(10_000)
            ),
            LineOf("pids"),
            "<document>",
            &["nested too deeply"],
        ),
        yaml(
            "10,000-deep block nesting",
            &format!("targets:\n  pids:\n    {}1\n", "- ".repeat(10_000)),
            Nth("- ", 2),
            "targets.pids",
            &["expected a single value", "found a list"],
        ),
        yaml(
            "10,000-deep mappings in headers",
            &format!(
                "exporter:\n  headers: {}1{}\n",
                "{a: ".repeat(10_000),
                "}".repeat(10_000)
            ),
            Nth("{", 2),
            "exporter.headers",
            &["expected a single value", "found a mapping"],
        ),
        yaml(
            "control characters",
            "\u{1}\u{2}\u{3} garbage\n",
            Token("\u{1}"),
            "<document>",
            &["unexpected character"],
        ),
    ];
    v.push(Case {
        name: "binary garbage (4 KiB)",
        input: Input::Bytes(garbage(4096, 0x9e37_79b9_7f4a_7c15)),
        at: At::BadUtf8,
        field: Some("<document>"),
        says: &["is not UTF-8"],
        never: None,
    });
    v.push(Case {
        name: "a value that is not UTF-8",
        input: Input::Bytes(b"spans:\n  host_name: caf\xe9\n".to_vec()),
        at: At::BadUtf8,
        field: Some("spans.host_name"),
        says: &["byte 0xe9 is not UTF-8"],
        never: None,
    });
    v.push(Case {
        name: "10 MB file",
        input: Input::Yaml(ten_megabytes()),
        at: At::Nowhere,
        field: None,
        says: &["larger than a configuration file may be"],
        never: None,
    });
    v.push(Case {
        name: "unreadable file",
        input: Input::Unreadable,
        at: At::Nowhere,
        field: None,
        says: &["cannot read", "Permission denied"],
        never: None,
    });
    v.push(Case {
        name: "missing file",
        input: Input::Missing,
        at: At::Nowhere,
        field: None,
        says: &["cannot read", "No such file"],
        never: None,
    });
    v.push(Case {
        name: "a directory",
        input: Input::Directory,
        at: At::Nowhere,
        field: None,
        says: &["cannot read", "Is a directory"],
        never: None,
    });
    // --- the environment
    v.extend([
        env(
            "OTEL_EXPORTER_OTLP_TIMEOUT not a number",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "soon",
            "exporter.timeout_ms",
            &["`soon`", "positive integer of milliseconds"],
        ),
        env(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT negative",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "-5",
            "exporter.timeout_ms",
            &["`-5`", "positive integer"],
        ),
        env(
            "OTEL_EXPORTER_OTLP_ENDPOINT ftp",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "ftp://collector:4317",
            "exporter.endpoint",
            &["must start with http://"],
        ),
        env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT https",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://collector:4317",
            "exporter.endpoint",
            &["TLS is not built into this receiver"],
        ),
        env(
            "OTEL_EXPORTER_OTLP_COMPRESSION unknown",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "zstd",
            "exporter.compression",
            &["`zstd` is not `gzip` or `none`"],
        ),
        env(
            "OTEL_EXPORTER_OTLP_PROTOCOL http",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/protobuf",
            "exporter",
            &["`http/protobuf` is not supported", "grpc"],
        ),
        env(
            "OTEL_RESOURCE_ATTRIBUTES empty key",
            "OTEL_RESOURCE_ATTRIBUTES",
            "=x",
            "resource",
            &["empty key"],
        ),
        env(
            "RUST_LOG that does not parse",
            "RUST_LOG",
            "=[x",
            "telemetry.log_level",
            &["`=[x`", "not a log filter"],
        ),
    ]);
    v.push(Case {
        name: "OTEL_EXPORTER_OTLP_HEADERS with a colon (secret not echoed)",
        input: Input::Env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization: Bearer CANARY-r7-5ec7e7",
        ),
        at: At::Nowhere,
        field: Some("exporter.headers"),
        says: &["item 1 is not `key=value`"],
        never: Some("CANARY-r7-5ec7e7"),
    });
    // --- flags
    for (name, flags, field, says) in [
        (
            "--endpoint ftp",
            &["--endpoint", "ftp://collector:4317"][..],
            "--endpoint",
            &["exporter.endpoint", "must start with http://"][..],
        ),
        (
            "--log-level that does not parse",
            &["--log-level", "=["][..],
            "--log-level",
            &["telemetry.log_level", "not a log filter"][..],
        ),
        (
            "--metrics-address without a port",
            &["--metrics-address", "localhost"][..],
            "--metrics-address",
            &["invalid", "socket address"][..],
        ),
    ] {
        v.push(Case {
            name,
            input: Input::Flags(flags),
            at: At::Nowhere,
            field: Some(field),
            says,
            never: None,
        });
    }
    v
}

fn billion_laughs() -> String {
    let mut s = String::from(
        "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        let _ = writeln!(s, "{name}: &{name} [{refs}]");
    }
    s
}

/// A well-formed 10 MB YAML file (a long list of pids).
fn ten_megabytes() -> String {
    let mut s = String::from("targets:\n  pids:\n");
    while s.len() < 10 << 20 {
        s.push_str("    - 1\n");
    }
    s
}

/// Scratch directory of one test of this process.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ebpf-receiver-bad-config-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A prepared case: the arguments and environment of the receiver, the file (if any) and its
/// bytes (for locating the expected position).
struct Prepared {
    args: Vec<String>,
    env: Option<(&'static str, &'static str)>,
    file: Option<PathBuf>,
    bytes: Vec<u8>,
    /// Run through `setpriv` without the DAC capabilities (root reads any file otherwise).
    drop_dac: bool,
}

fn prepare(case: &Case, n: usize, dir: &Path) -> Prepared {
    let path = dir.join(format!("case-{n:02}.yaml"));
    let mut p = Prepared {
        args: Vec::new(),
        env: None,
        file: Some(path.clone()),
        bytes: Vec::new(),
        drop_dac: false,
    };
    match &case.input {
        Input::Yaml(text) => p.bytes = text.as_bytes().to_vec(),
        Input::Bytes(b) => p.bytes = b.clone(),
        Input::Unreadable => {
            p.bytes = b"ebpf:\n  max_capture_bytes: 4096\n".to_vec();
            p.drop_dac = is_root();
        }
        Input::Missing => {
            let _ = std::fs::remove_file(&path);
        }
        Input::Directory => {
            std::fs::create_dir_all(&path).expect("dir");
        }
        Input::Env(var, value) => {
            p.file = None;
            p.env = Some((var, value));
        }
        Input::Flags(flags) => {
            p.file = None;
            p.args = flags.iter().map(|s| s.to_string()).collect();
        }
    }
    if matches!(
        case.input,
        Input::Yaml(_) | Input::Bytes(_) | Input::Unreadable
    ) {
        std::fs::write(&path, &p.bytes).expect("write config");
    }
    if matches!(case.input, Input::Unreadable) {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    if let Some(f) = &p.file {
        p.args.push("--config".into());
        p.args.push(f.display().to_string());
    }
    p
}

/// One run of the receiver: exit code, stderr, wall time.
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    took: Duration,
}

fn run_receiver(p: &Prepared, subcommand: Option<&str>, wrap: &[&str]) -> Outcome {
    let bin = env!("CARGO_BIN_EXE_ebpf-receiver");
    let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    if p.drop_dac {
        argv.extend(
            [
                "setpriv",
                "--inh-caps=-all",
                "--bounding-set=-dac_override,-dac_read_search",
                "--",
            ]
            .map(String::from),
        );
    }
    argv.push(bin.to_string());
    if let Some(s) = subcommand {
        argv.push(s.to_string());
    }
    argv.extend(p.args.iter().cloned());
    let (prog, args) = argv.split_first().expect("argv");
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k == "RUST_LOG" || k == "EBPF_RECEIVER_RECORD_EVENTS" {
            cmd.env_remove(k);
        }
    }
    if let Some((k, v)) = p.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn the receiver");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut s);
        s
    });
    // Poll, so that a hang fails the case instead of hanging the whole test run.
    let deadline = started + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the receiver") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the receiver did not exit within 30 s: {argv:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let took = started.elapsed();
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stderr: reader.join().expect("stderr reader"),
        took,
    }
}

/// Peak RSS of `run` for the case, in KiB, measured by GNU time: the receiver is its child,
/// forked from a small process. (The test's own `wait4` would not do: a child spawned with
/// `CLONE_VM` inherits this test process's high-water mark at exec.)
fn peak_rss_kib(p: &Prepared, dir: &Path) -> Option<u64> {
    let out = dir.join("time.out");
    let o = run_receiver(
        p,
        None,
        &[
            "/usr/bin/time",
            "-f",
            "%M",
            "-o",
            &out.display().to_string(),
        ],
    );
    (o.code == Some(EXIT_CONFIG)).then_some(())?;
    std::fs::read_to_string(&out)
        .ok()?
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

/// `path:line:column: ` for the case, located in its bytes.
fn expected_position(case: &Case, p: &Prepared) -> Option<(usize, usize)> {
    let text = String::from_utf8_lossy(&p.bytes);
    let offset = match case.at {
        At::Nowhere => return None,
        At::Token(t) | At::LineOf(t) => text.find(t),
        At::Nth(t, n) => text.match_indices(t).nth(n - 1).map(|(i, _)| i),
        At::BadUtf8 => {
            let at = std::str::from_utf8(&p.bytes)
                .err()
                .map(|e| e.valid_up_to())
                .expect("the input is not UTF-8");
            let before = std::str::from_utf8(&p.bytes[..at]).expect("valid prefix");
            return Some((
                before.matches('\n').count() + 1,
                before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
            ));
        }
    }
    .unwrap_or_else(|| panic!("{}: the token is not in the input", case.name));
    let before = &text[..offset];
    Some((
        before.matches('\n').count() + 1,
        before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
    ))
}

/// Every requirement on one rejection; the failures, empty when it is right.
fn judge(case: &Case, p: &Prepared, what: &str, o: &Outcome) -> Vec<String> {
    let mut bad = Vec::new();
    let err = &o.stderr;
    if o.code != Some(EXIT_CONFIG) {
        bad.push(format!(
            "{what}: exit {:?} (signal {:?}), expected {EXIT_CONFIG}",
            o.code, o.signal
        ));
    }
    if err.contains("panicked") || err.contains("stack overflow") || o.signal.is_some() {
        bad.push(format!("{what}: crashed"));
    }
    let first = err.lines().next().unwrap_or("");
    if !first.starts_with("error: ") {
        bad.push(format!("{what}: the first line is not `error: ...`"));
    }
    if let (Some(file), Some((line, column))) = (&p.file, expected_position(case, p)) {
        let want = match case.at {
            At::LineOf(_) => format!("{}:{line}:", file.display()),
            _ => format!("{}:{line}:{column}: ", file.display()),
        };
        if !first.contains(&want) {
            bad.push(format!("{what}: no `{want}`"));
        }
    } else if let Some(file) = &p.file
        && !first.contains(&format!("`{}`", file.display()))
    {
        bad.push(format!(
            "{what}: the file `{}` is not named",
            file.display()
        ));
    }
    if let Some(field) = case.field {
        // Backticks in ours, quotes in clap's.
        if !first.contains(&format!("`{field}`")) && !first.contains(&format!("'{field} ")) {
            bad.push(format!("{what}: the field `{field}` is not named"));
        }
    }
    for words in case.says {
        if !first.contains(words) {
            bad.push(format!("{what}: does not say `{words}`"));
        }
    }
    if let Some(secret) = case.never
        && err.contains(secret)
    {
        bad.push(format!("{what}: echoes the secret `{secret}`"));
    }
    if !bad.is_empty() {
        bad.push(format!("{what} stderr: {}", err.trim()));
    }
    bad
}

/// The syscalls that would mean something was loaded into the kernel or a socket opened.
const FORBIDDEN_SYSCALLS: &str = "bpf,perf_event_open,socket,socketpair,bind,listen,connect,mount";

#[test]
fn every_broken_configuration_exits_2_with_its_location_before_touching_the_kernel() {
    let dir = scratch("broken");
    let strace = have("strace");
    if !strace {
        println!("strace not found: not checking the syscalls of `run` (install strace)");
    }
    let cases = cases();
    let mut failures = Vec::new();
    println!(
        "{:<58} {:>9} {:>9} {:>9}  message",
        "case", "validate", "run", "peak RSS"
    );
    let mut worst = (Duration::ZERO, "");
    let mut worst_rss = (0, "");
    let time = Path::new("/usr/bin/time").exists();
    if !time {
        println!("/usr/bin/time not found: no peak RSS figures");
    }
    for (n, case) in cases.iter().enumerate() {
        let p = prepare(case, n, &dir);
        let validate = run_receiver(&p, Some("validate"), &[]);
        let run = run_receiver(&p, None, &[]);
        let mut bad = judge(case, &p, "validate", &validate);
        bad.extend(judge(case, &p, "run", &run));
        if validate.stderr.trim() != run.stderr.trim() {
            bad.push(format!(
                "validate and run disagree:\n  validate: {}\n  run: {}",
                validate.stderr.trim(),
                run.stderr.trim()
            ));
        }
        if strace {
            let trace = dir.join(format!("case-{n:02}.strace"));
            let traced = run_receiver(
                &p,
                None,
                &[
                    "strace",
                    "-f",
                    "-qq",
                    "-o",
                    &trace.display().to_string(),
                    "-e",
                    &format!("trace={FORBIDDEN_SYSCALLS}"),
                    "--",
                ],
            );
            if traced.code != Some(EXIT_CONFIG) {
                bad.push(format!("run under strace: exit {:?}", traced.code));
            }
            let calls = std::fs::read_to_string(&trace).unwrap_or_default();
            let calls: Vec<&str> = calls.lines().filter(|l| l.contains('(')).collect();
            if !calls.is_empty() {
                bad.push(format!(
                    "run called the kernel before refusing: {}",
                    calls.join(" | ")
                ));
            }
        }
        for o in [&validate, &run] {
            if o.took > worst.0 {
                worst = (o.took, case.name);
            }
        }
        let rss = if time { peak_rss_kib(&p, &dir) } else { None };
        if let Some(kib) = rss {
            if kib > worst_rss.0 {
                worst_rss = (kib, case.name);
            }
            // Bounded memory: a hostile file costs no more than a small one.
            if kib > 64 * 1024 {
                bad.push(format!("peak RSS {kib} KiB above 64 MiB"));
            }
        } else if time {
            bad.push("no peak RSS from /usr/bin/time".into());
        }
        let message = validate.stderr.lines().next().unwrap_or("").to_string();
        let message = message
            .replace(&format!("{}/", dir.display()), "")
            .chars()
            .take(150)
            .collect::<String>();
        println!(
            "{:<58} {:>6.1} ms {:>6.1} ms {:>6} KiB  {}",
            case.name,
            validate.took.as_secs_f64() * 1e3,
            run.took.as_secs_f64() * 1e3,
            rss.map_or("?".into(), |k| k.to_string()),
            message
        );
        if !bad.is_empty() {
            failures.push(format!("case `{}`:\n  {}", case.name, bad.join("\n  ")));
        }
    }
    println!(
        "{} broken configurations, each refused by `validate` and `run`{}; slowest rejection \
         {:.1} ms ({}), largest peak RSS {} KiB ({})",
        cases.len(),
        if strace {
            " (and `run` under strace)"
        } else {
            ""
        },
        worst.0.as_secs_f64() * 1e3,
        worst.1,
        worst_rss.0,
        worst_rss.1
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        cases.len() >= 25,
        "the issue asks for at least 25 broken configs"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn empty_blank_and_comment_only_files_mean_the_defaults() {
    let dir = scratch("accepted");
    for (name, text) in [
        ("empty", ""),
        ("blank lines and spaces", "\n   \n\n  \n"),
        ("comments only", "# the receiver\n\n  # all defaults\n"),
        ("document marker only", "---\n"),
        (
            "document marker and comments",
            "--- # receiver\n# nothing set\n",
        ),
        ("explicit null", "~\n"),
    ] {
        let path = dir.join("receiver.yaml");
        std::fs::write(&path, text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_ebpf-receiver"))
            .args(["validate", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .output()
            .expect("run validate");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{}: ok", path.display()),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
