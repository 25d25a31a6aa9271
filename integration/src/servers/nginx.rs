//! nginx in front of a small Python upstream, on `127.0.0.1:<free port>`.
//!
//! - nginx runs in the foreground (`daemon off`) with `master_process off`: **one process**
//!   accepts and serves every request ([`Nginx::pid`]); its own config, logs and temp dirs live
//!   in the scratch dir. `sendfile on` (static bodies leave through `sendfile`), keep-alive on
//!   (`keepalive_requests 10000`).
//! - `/static/` serves [`STATIC_FILES`] (1 KiB text, 8 MiB and 64 MiB binary, an empty file),
//!   generated once under `target/e2e-static/` and shared by every run (read-only).
//! - `/api/` is proxied (HTTP/1.1, upstream keep-alive) to `integration/servers/http_upstream.py`
//!   ([`Nginx::upstream_pid`], reachable directly at [`Nginx::upstream_url`]), which serves:
//!   - `/api/status/<code>`: that status (`204`/`304` without a body), small JSON body;
//!   - `/api/chunked?chunks=N&size=M&delay_ms=D`: a `Transfer-Encoding: chunked` body;
//!   - `/api/bytes?n=N`: N bytes with `Content-Length`;
//!   - `/api/slow?ms=N`: waits N ms, then 200;
//!   - `/api/echo` (POST/PUT): echoes the request body (`Expect: 100-continue` honoured);
//!   - `/api/headers`: the request headers as JSON;
//!   - `HEAD` on any of them: the same head, no body.
//!
//!   It prints one JSON line per request (method, path, status, start/end unix ns) to
//!   `dir/upstream.out.jsonl`: [`Nginx::upstream_requests`].
//! - `/healthz` answers 200 from nginx itself. nginx's access log (`dir/access.log`, one line
//!   per request with `$connection` and `$connection_requests`) is [`Nginx::access_log`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::paths;
use crate::process::{Output, ProcessGuard, free_port, poll_until, wait_tcp};
use crate::receiver::http_get;

/// The proxied path the harness requests until nginx and the upstream answer (it shows up in
/// [`Nginx::upstream_requests`] and the access log before any test request).
pub const READY_PATH: &str = "/api/status/200?harness-ready";

/// A file under `/static/`.
#[derive(Clone, Copy, Debug)]
pub struct StaticFile {
    /// URL path, e.g. `/static/small.txt`.
    pub path: &'static str,
    pub size: u64,
}

pub const SMALL: StaticFile = StaticFile {
    path: "/static/small.txt",
    size: 1024,
};
pub const LARGE: StaticFile = StaticFile {
    path: "/static/large.bin",
    size: 8 << 20,
};
/// Far larger than the capture cap (and than the receiver's per-connection buffer).
pub const HUGE: StaticFile = StaticFile {
    path: "/static/huge.bin",
    size: 64 << 20,
};
pub const EMPTY: StaticFile = StaticFile {
    path: "/static/empty.txt",
    size: 0,
};
pub const STATIC_FILES: &[StaticFile] = &[SMALL, LARGE, HUGE, EMPTY];

/// Deterministic content of a static file: printable text for `.txt`, an xorshift stream for
/// `.bin` (so a client can check what it received byte for byte).
pub fn static_content(file: &StaticFile) -> Vec<u8> {
    let n = file.size as usize;
    if file.path.ends_with(".txt") {
        let line = b"ebpf-receiver e2e static text 0123456789 abcdefghijklmnopqrstuvwxyz\n";
        line.iter().copied().cycle().take(n).collect()
    } else {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ file.size;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// `target/e2e-static/`, (re)generated when a file is missing or has the wrong size.
pub fn static_root() -> Result<PathBuf> {
    let root = paths::target_dir().join("e2e-static");
    let dir = root.join("static");
    std::fs::create_dir_all(&dir)?;
    for f in STATIC_FILES {
        let name = f.path.trim_start_matches("/static/");
        let path = dir.join(name);
        if path.metadata().map(|m| m.len()).ok() != Some(f.size) {
            // Write then rename: a concurrent run never serves a half-written file.
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::write(&tmp, static_content(f))?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(root)
}

/// Start options.
#[derive(Clone, Debug, Default)]
pub struct NginxOptions {
    /// Extra directives inside the `server { }` block (e.g. another `location`).
    pub server_directives: String,
    /// Extra directives inside `http { }`.
    pub http_directives: String,
}

/// nginx + its upstream; both stopped on drop.
pub struct Nginx {
    pub dir: PathBuf,
    pub port: u16,
    pub upstream_port: u16,
    /// The directory served at `/` (it contains `static/`).
    pub root: PathBuf,
    upstream_out: PathBuf,
    // Declared first: nginx stops before its upstream.
    guard: ProcessGuard,
    upstream: ProcessGuard,
}

impl Nginx {
    pub fn start(dir: &Path) -> Result<Nginx> {
        Nginx::start_with(dir, &NginxOptions::default())
    }

    /// Starts the upstream (`dir/upstream.*`), writes `dir/nginx.conf`, starts nginx (logs in
    /// `dir/`), and waits until `/healthz` and a proxied `/api/status/200` answer.
    pub fn start_with(dir: &Path, opts: &NginxOptions) -> Result<Nginx> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let root = static_root()?;
        let upstream_port = free_port()?;
        let upstream_out = dir.join("upstream.out.jsonl");
        let mut up = Command::new(paths::python());
        up.arg(paths::servers_dir().join("http_upstream.py"))
            .arg("--port")
            .arg(upstream_port.to_string());
        let mut upstream = ProcessGuard::spawn(
            "http_upstream.py",
            up,
            Output::Split {
                stdout: upstream_out.clone(),
                stderr: dir.join("upstream.err"),
            },
        )?
        .with_grace(Duration::from_secs(5));
        wait_tcp(
            "the HTTP upstream to listen",
            SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            &mut upstream,
        )?;

        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir, &root, port, upstream_port, opts))?;
        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"));
        let guard = ProcessGuard::spawn("nginx", cmd, Output::File(dir.join("nginx.out")))?
            .with_grace(Duration::from_secs(5));
        let mut n = Nginx {
            dir: dir.to_path_buf(),
            port,
            upstream_port,
            root,
            upstream_out,
            guard,
            upstream,
        };
        let guard = &mut n.guard;
        poll_until(
            "nginx to answer /healthz and a proxied request",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                guard.ensure_running()?;
                let ok = matches!(http_get(port, "/healthz"), Ok((200, _)))
                    && matches!(http_get(port, READY_PATH), Ok((200, _)));
                Ok(ok.then_some(()))
            },
        )
        .with_context(|| {
            format!(
                "nginx error log:\n{}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            )
        })?;
        Ok(n)
    }

    /// The nginx process (with `master_process off` it accepts and serves every request).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The Python upstream (the SERVER side of proxied requests; nginx is its client).
    pub fn upstream_pid(&self) -> u32 {
        self.upstream.pid()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The upstream directly, bypassing nginx.
    pub fn upstream_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.upstream_port)
    }

    /// On-disk path of a static file.
    pub fn static_path(&self, file: &StaticFile) -> PathBuf {
        self.root.join(file.path.trim_start_matches('/'))
    }

    /// Requests the upstream served so far, one JSON object each: `method`, `path`, `status`,
    /// `bytes`, `start_unix_ns`, `end_unix_ns`, `client_port`.
    pub fn upstream_requests(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.upstream_out).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("upstream line {l:?}")))
            .collect()
    }

    /// Polls [`upstream_requests`](Self::upstream_requests) until `done` holds (up to 10 s):
    /// the upstream logs a request after its response left, so a client can be faster.
    pub fn wait_upstream_requests(&self, done: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
        poll_until(
            "the upstream's request log",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let r = self.upstream_requests()?;
                Ok(done(&r).then_some(r))
            },
        )
    }

    /// Polls [`access_log`](Self::access_log) until `done` holds (up to 10 s): nginx logs a
    /// request when it finalises it, which can be after the client has the response.
    pub fn wait_access_log(
        &self,
        done: impl Fn(&[AccessEntry]) -> bool,
    ) -> Result<Vec<AccessEntry>> {
        poll_until(
            "nginx's access log",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let r = self.access_log()?;
                Ok(done(&r).then_some(r))
            },
        )
    }

    /// nginx's access log so far.
    pub fn access_log(&self) -> Result<Vec<AccessEntry>> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(AccessEntry::parse)
            .collect()
    }

    pub fn stop(&mut self) {
        self.guard.stop();
        self.upstream.stop();
    }
}

impl super::Server for Nginx {
    fn label(&self) -> String {
        format!(
            "nginx 127.0.0.1:{} → upstream 127.0.0.1:{}",
            self.port, self.upstream_port
        )
    }
    fn pids(&self) -> Vec<u32> {
        vec![self.pid(), self.upstream_pid()]
    }
    fn log_tail(&self, lines: usize) -> String {
        let error = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let error: Vec<&str> = error.lines().collect();
        format!(
            "error.log:\n{}\nupstream stderr:\n{}",
            error[error.len().saturating_sub(lines)..].join("\n"),
            self.upstream.log_tail(lines)
        )
    }
    fn stop(&mut self) {
        Nginx::stop(self);
    }
}

/// One line of the access log (`log_format e2e`).
#[derive(Clone, Debug, PartialEq)]
pub struct AccessEntry {
    /// `$msec`: request end, seconds since the epoch.
    pub msec: f64,
    /// `$connection`: the connection's serial number.
    pub connection: u64,
    /// `$connection_requests`: 1 for the first request on a connection.
    pub connection_requests: u64,
    pub method: String,
    pub uri: String,
    pub status: u16,
    pub body_bytes_sent: u64,
    /// `$request_time` in seconds.
    pub request_time: f64,
    /// `$remote_port`: the client's port.
    pub remote_port: u16,
}

impl AccessEntry {
    fn parse(line: &str) -> Result<AccessEntry> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 9 {
            bail!("bad access log line {line:?}");
        }
        let num = |i: usize| -> Result<u64> {
            f[i].parse()
                .with_context(|| format!("field {i} of access log line {line:?}"))
        };
        Ok(AccessEntry {
            msec: f[0].parse().context("msec")?,
            connection: num(1)?,
            connection_requests: num(2)?,
            method: f[3].to_string(),
            uri: f[4].to_string(),
            status: num(5)? as u16,
            body_bytes_sent: num(6)?,
            request_time: f[7].parse().context("request_time")?,
            remote_port: num(8)? as u16,
        })
    }
}

fn nginx_conf(
    dir: &Path,
    root: &Path,
    port: u16,
    upstream_port: u16,
    opts: &NginxOptions,
) -> String {
    let d = dir.display();
    let r = root.display();
    format!(
        r#"# Written by the integration harness.
daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    types {{
        text/plain txt;
        text/html html;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    log_format e2e '$msec\t$connection\t$connection_requests\t$request_method\t$request_uri\t$status\t$body_bytes_sent\t$request_time\t$remote_port';
    access_log {d}/access.log e2e;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    sendfile on;
    tcp_nopush off;
    keepalive_timeout 65s;
    keepalive_requests 10000;
    client_max_body_size 64m;
{http_extra}
    upstream e2e_api {{
        server 127.0.0.1:{upstream_port};
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {r};

        location = /healthz {{
            access_log off;
            return 200 "ok\n";
        }}
        location /static/ {{
        }}
        location /api/ {{
            proxy_pass http://e2e_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
{server_extra}
    }}
}}
"#,
        http_extra = opts.http_directives,
        server_extra = opts.server_directives,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_content_has_the_size_and_is_deterministic() {
        for f in [
            SMALL,
            EMPTY,
            StaticFile {
                path: "/x.bin",
                size: 1001,
            },
        ] {
            let a = static_content(&f);
            assert_eq!(a.len() as u64, f.size);
            assert_eq!(a, static_content(&f));
        }
        assert!(static_content(&SMALL).iter().all(|b| b.is_ascii()));
    }

    #[test]
    fn access_log_lines() {
        let e = AccessEntry::parse(
            "1764300000.123\t7\t2\tGET\t/api/status/201?x=1\t201\t15\t0.004\t51234",
        )
        .expect("parse");
        assert_eq!(
            (e.connection, e.connection_requests, e.status, e.remote_port),
            (7, 2, 201, 51234)
        );
        assert_eq!(e.uri, "/api/status/201?x=1");
        assert!(AccessEntry::parse("garbage").is_err());
    }
}
