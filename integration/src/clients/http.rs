//! HTTP/1.1 clients: `curl`, `wrk`, Python `requests`, and a raw-socket client for exact bytes
//! (pipelining, `Expect: 100-continue`, requests split over several writes).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ClientRun, PlanRun, RunningClient, python, run, run_plan, spawn, spawn_plan};
use crate::process::poll_until;

/// One transfer as `curl -w '%{json}'` reported it.
#[derive(Clone, Debug)]
pub struct CurlTransfer {
    pub url: String,
    pub method: String,
    /// 0 when no response arrived.
    pub http_code: u16,
    pub size_download: u64,
    pub size_upload: u64,
    /// New connections this transfer opened (0 when it reused a kept-alive one).
    pub num_connects: u64,
    /// The client's source port: the SERVER span's `network.peer.port`.
    pub local_port: u16,
    pub remote_port: u16,
    /// curl's `time_total` (request start → last byte).
    pub time_total: Duration,
    /// curl's `time_starttransfer` (→ first response byte).
    pub time_starttransfer: Duration,
    /// curl's exit code for this transfer (0 = ok).
    pub exitcode: i64,
    /// Where the body was written (`<dir>/<name>.body.<i>`).
    pub body_path: std::path::PathBuf,
    /// Every `%{json}` field.
    pub raw: Value,
}

/// A finished `curl` run: one process, one [`CurlTransfer`] per URL (in order; URLs to the same
/// host reuse one kept-alive connection).
#[derive(Clone, Debug)]
pub struct CurlRun {
    pub run: ClientRun,
    pub transfers: Vec<CurlTransfer>,
}

impl CurlRun {
    pub fn pid(&self) -> u32 {
        self.run.pid
    }
}

/// Runs `curl -sS --http1.1 [args] URL...` writing each body to `<dir>/<name>.body.<i>` and a
/// `%{json}` line per transfer on stdout. `args` apply to every URL (e.g. `-X POST`, `-d @file`,
/// `-H 'Expect:'`, `-I` for HEAD, `--no-keepalive`). A non-zero curl exit is not an error here:
/// check [`CurlTransfer::exitcode`] / `run.status`.
pub fn curl(dir: &Path, name: &str, args: &[&str], urls: &[&str]) -> Result<CurlRun> {
    let mut c = Command::new("curl");
    c.args(["-sS", "--http1.1", "--max-time", "120", "-w", "%{json}\\n"])
        .args(args);
    let mut bodies = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let body = dir.join(format!("{name}.body.{i}"));
        c.arg("-o").arg(&body).arg(u);
        bodies.push(body);
    }
    let r = run(dir, name, c)?;
    let mut transfers = Vec::new();
    for (i, line) in r.stdout.lines().filter(|l| l.starts_with('{')).enumerate() {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("curl -w json line {line:?}"))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let secs =
            |k: &str| Duration::from_secs_f64(v.get(k).and_then(Value::as_f64).unwrap_or(0.0));
        transfers.push(CurlTransfer {
            url: s("url_effective"),
            method: s("method"),
            http_code: n("http_code") as u16,
            size_download: n("size_download"),
            size_upload: n("size_upload"),
            num_connects: n("num_connects"),
            local_port: n("local_port") as u16,
            remote_port: n("remote_port") as u16,
            time_total: secs("time_total"),
            time_starttransfer: secs("time_starttransfer"),
            exitcode: v.get("exitcode").and_then(Value::as_i64).unwrap_or(0),
            body_path: bodies.get(i).cloned().unwrap_or_default(),
            raw: v.clone(),
        });
    }
    if transfers.len() != urls.len() {
        bail!(
            "curl reported {} transfers for {} URLs ({}): {}",
            transfers.len(),
            urls.len(),
            r.status,
            r.stderr.trim()
        );
    }
    Ok(CurlRun { run: r, transfers })
}

/// `wrk` options.
#[derive(Clone, Debug)]
pub struct WrkOptions {
    pub threads: u32,
    pub connections: u32,
    /// Rounded up to whole seconds (wrk's unit).
    pub duration: Duration,
    /// Extra arguments (e.g. `-H`, `--timeout`).
    pub extra: Vec<String>,
    /// Each thread stops after this many responses (`duration` is then an upper bound);
    /// requests in flight on its other connections at that moment are abandoned.
    pub max_requests_per_thread: Option<u64>,
    /// Environment for `clients/wrk_report.lua`, e.g. `WRK_UNIQUE_PATH_PREFIX` (a unique path
    /// per request) and `WRK_OTHER_METHOD_EVERY` (see the script).
    pub env: Vec<(String, String)>,
}

impl Default for WrkOptions {
    fn default() -> Self {
        WrkOptions {
            threads: 1,
            connections: 4,
            duration: Duration::from_secs(2),
            extra: Vec::new(),
            max_requests_per_thread: None,
            env: Vec::new(),
        }
    }
}

/// A finished `wrk` run (summary from `clients/wrk_report.lua`).
#[derive(Clone, Debug)]
pub struct WrkRun {
    pub run: ClientRun,
    /// Completed requests (responses read).
    pub requests: u64,
    pub duration: Duration,
    pub bytes: u64,
    /// Non-2xx/3xx responses.
    pub status_errors: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
    pub requests_per_sec: f64,
}

/// Runs `wrk` against `url` (every request a GET on kept-alive connections, `connections`
/// sockets over `threads` threads of ONE process: the CLIENT spans' pid).
pub fn wrk(dir: &Path, name: &str, url: &str, opts: &WrkOptions) -> Result<WrkRun> {
    let mut c = Command::new("wrk");
    c.arg("-t")
        .arg(opts.threads.to_string())
        .arg("-c")
        .arg(opts.connections.to_string())
        .arg("-d")
        // wrk takes whole seconds (`-d 2s`).
        .arg(format!(
            "{}s",
            opts.duration.as_secs_f64().ceil().max(1.0) as u64
        ))
        .arg("-s")
        .arg(crate::paths::clients_dir().join("wrk_report.lua"))
        .args(&opts.extra)
        .arg(url)
        .envs(opts.env.iter().map(|(k, v)| (k, v)));
    let r = match opts.max_requests_per_thread {
        None => run(dir, name, c)?,
        Some(n) => {
            c.env("WRK_MAX_REQUESTS", n.to_string());
            let running = spawn(dir, name, c)?;
            let out = dir.join(format!("{name}.out"));
            let threads = opts.threads.max(1) as usize;
            // Each thread prints WRK_CAP when it stops; wrk itself waits out the duration
            // unless SIGINT ends the wait (it then prints its summary at once).
            let capped = poll_until(
                "wrk's threads to reach their request cap",
                opts.duration + Duration::from_secs(5),
                Duration::from_millis(20),
                || {
                    let text = std::fs::read_to_string(&out).unwrap_or_default();
                    Ok((text.matches("WRK_CAP").count() >= threads).then_some(()))
                },
            );
            if capped.is_ok() {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's
                // and not reaped yet (finish() below reaps it).
                unsafe { libc::kill(running.pid() as libc::pid_t, libc::SIGINT) };
            }
            running.finish(super::DEFAULT_TIMEOUT)?
        }
    };
    r.ensure_success()?;
    let line = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .with_context(|| format!("wrk printed no summary:\n{}", r.stdout))?;
    let v: Value = serde_json::from_str(line).context("wrk summary")?;
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let duration = Duration::from_micros(n("duration_us"));
    let requests = n("requests");
    Ok(WrkRun {
        requests,
        duration,
        bytes: n("bytes"),
        status_errors: n("status_errors"),
        socket_errors: n("connect_errors") + n("read_errors") + n("write_errors") + n("timeouts"),
        requests_per_sec: requests as f64 / duration.as_secs_f64().max(1e-9),
        run: r,
    })
}

/// One request of a `requests` plan.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Map<String, Value>>,
    /// A text body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl HttpRequest {
    pub fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.into(),
            ..HttpRequest::default()
        }
    }
    pub fn new(method: &str, url: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            ..HttpRequest::default()
        }
    }
    pub fn body(mut self, data: &str) -> HttpRequest {
        self.data = Some(data.into());
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> HttpRequest {
        self.headers
            .get_or_insert_with(Default::default)
            .insert(k.into(), Value::String(v.into()));
        self
    }
}

/// Runs `clients/http_requests.py`: records of kind `request` (method, url, status, bytes,
/// local_port, ok, error, times). `session`: one kept-alive connection for all requests.
pub fn python_requests(
    dir: &Path,
    name: &str,
    requests: &[HttpRequest],
    session: bool,
) -> Result<PlanRun> {
    run_plan(
        dir,
        name,
        python("http_requests.py"),
        &json!({ "session": session, "requests": requests }),
    )
}

/// One step of a raw-socket plan (see `clients/http_raw.py`).
#[derive(Clone, Debug)]
pub enum RawStep {
    /// Bytes in one write, then read `responses` responses (several requests = pipelining).
    Send {
        data: String,
        responses: usize,
    },
    /// The request split over several writes `delay_ms` apart.
    SendParts {
        parts: Vec<String>,
        delay_ms: u64,
        responses: usize,
    },
    /// Head with `Expect: 100-continue`, wait up to `wait_ms` for `100 Continue`, then the
    /// body and the final response.
    ExpectContinue {
        head: String,
        body: String,
        wait_ms: u64,
    },
    Sleep {
        ms: u64,
    },
    /// Half-close (FIN) the connection's write side.
    ShutdownWrite,
}

impl RawStep {
    fn to_json(&self) -> Value {
        match self {
            RawStep::Send { data, responses } => json!({"send": data, "responses": responses}),
            RawStep::SendParts {
                parts,
                delay_ms,
                responses,
            } => json!({"send_parts": parts, "delay_ms": delay_ms, "responses": responses}),
            RawStep::ExpectContinue {
                head,
                body,
                wait_ms,
            } => json!({"expect_continue": {"head": head, "body": body}, "wait_ms": wait_ms}),
            RawStep::Sleep { ms } => json!({"sleep_ms": ms}),
            RawStep::ShutdownWrite => json!({"shutdown_write": true}),
        }
    }
}

/// A `GET path HTTP/1.1` request text with `Host` and keep-alive.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: e2e-raw\r\n\r\n")
}

/// A request with a body (`Content-Length`).
pub fn request_with_body(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: e2e-raw\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn raw_cmd(port: u16) -> Command {
    let mut c = python("http_raw.py");
    c.arg("--port").arg(port.to_string());
    c
}

fn raw_plan(steps: &[RawStep]) -> Value {
    json!({ "steps": steps.iter().map(RawStep::to_json).collect::<Vec<_>>() })
}

/// Runs `clients/http_raw.py` against `127.0.0.1:port` on one connection: records of kind
/// `response` (step, index, method, status, headers, body_len, chunked, interim, times); the
/// `connected` record has `local_port`.
pub fn raw(dir: &Path, name: &str, port: u16, steps: &[RawStep]) -> Result<PlanRun> {
    run_plan(dir, name, raw_cmd(port), &raw_plan(steps))
}

/// As [`raw`], held after connecting until [`RunningClient::go`] (a connection that predates
/// the receiver).
pub fn raw_held(dir: &Path, name: &str, port: u16, steps: &[RawStep]) -> Result<RunningClient> {
    spawn_plan(dir, name, raw_cmd(port), &raw_plan(steps), true)
}
