//! Attach mid-stream (issue 8, R3): connections opened before the receiver started, and
//! connections the receiver joins in the middle of a large message, for every protocol.
//!
//! One world holds nginx (and its Python upstream), Redis, MariaDB, PostgreSQL and dnsmasq. One
//! raw-wire client per protocol (`clients/attach_client.py`: exact bytes, its own clock) opens
//! several keep-alive connections and brings each to a hold point:
//! - `idle`: a few requests, then idle;
//! - `mid-response`: a large response (8 MiB) read partly, the server blocked in its write;
//! - `mid-request`: a large request (4–8 MiB) written partly, the rest after the start.
//!
//! The large messages are made of *fake messages of the protocol itself* (and, on one Redis
//! connection, of HTTP): the first bytes the receiver sees on such a connection, in both
//! directions, are a plausible request or response that is not one. Only then does the
//! receiver start; the clients finish their large message and send 30 more requests per
//! connection. The ground truth is what each client sent and got, with its own timestamps,
//! and the upstream's log for nginx's proxied requests. The test asserts:
//! - **never a wrong span**: every span of the clients' processes, and every SERVER span the
//!   servers produced for the clients' connections, matches a real request of that
//!   connection: name, method/statement/command/question, status, and its time window (a span
//!   for a message the receiver joined in the middle cannot be exact: its start is not seen);
//! - **every request after the join has exactly one span** on each side (the recall is printed
//!   per connection).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use integration::bench::procs;
use integration::check;
use integration::clients::{self, PlanRun, Record, RunningClient};
use integration::collector::{STATUS_ERROR, SpanView};
use integration::process::unix_now_ns;
use integration::servers::dnsmasq::{self, Dnsmasq};
use integration::servers::mariadb::{self, MariaDb};
use integration::servers::nginx::{Nginx, NginxOptions};
use integration::servers::postgres::{self, Postgres};
use integration::servers::redis::Redis;
use integration::world::{Checks, World};
use serde_json::{Value, json};

/// Requests per connection after the join.
const AFTER: usize = 30;
/// Clock agreement between the client's wall clock and the spans (loopback, same host).
const CLOCK_SLACK_NS: i128 = 5_000_000;
/// How late after the client's own start a span may start: the client writes right after it
/// reads the clock; a server reads the request when it is scheduled (a loaded 2-vCPU VM).
const CLIENT_START_SLACK_NS: i128 = 50_000_000;
const SERVER_START_SLACK_NS: i128 = 250_000_000;
/// Size of the large messages.
const BIG: usize = 8 << 20;

/// Fake HTTP messages: a request, then a response.
const HTTP_UNIT: &str =
    "GET /fake HTTP/1.1\r\nHost: f\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
/// Fake HTTP requests only: the rest of a body made of them frames as a pipeline of requests,
/// which the next real response would answer.
const HTTP_REQUESTS_UNIT: &str = "GET /fake HTTP/1.1\r\nHost: f\r\n\r\n";
/// Fake RESP: a command, a status, a bulk string, an integer, an error.
const REDIS_UNIT: &str = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n+OK\r\n$5\r\nhello\r\n:4\r\n-ERR fake\r\n";
/// Fake PostgreSQL messages: Query, ReadyForQuery, CommandComplete, DataRow.
const PG_UNIT: &[u8] =
    b"Q\0\0\0\x0dSELECT 1\0Z\0\0\0\x05IC\0\0\0\x0dSELECT 1\0D\0\0\0\x0b\0\x01\0\0\0\x011";
/// Fake MySQL packets: COM_QUERY, OK, COM_PING.
const MYSQL_UNIT: &[u8] = b"\x09\0\0\0\x03SELECT 1\x07\0\0\x01\0\0\0\x02\0\0\0\x01\0\0\0\x0e";

type Servers = ((Nginx, Redis), MariaDb, Postgres, Dnsmasq);

/// Bytes as a latin-1 string (the client encodes plan strings back with latin-1).
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

fn repeat(unit: &str, bytes: usize) -> Value {
    json!({"repeat": unit, "bytes": bytes})
}

/// A hold after `n` bytes of the response body, the next read starting at `marker`.
fn hold_received(n: usize, marker: &str) -> Value {
    json!({"received": n, "align": marker})
}

/// A hold after `n` bytes of the request, the rest starting at `marker`.
fn hold_sent(n: usize, marker: &str) -> Value {
    json!({"sent": n, "align": marker})
}

fn with(mut req: Value, key: &str, v: Value) -> Value {
    if let Some(o) = req.as_object_mut() {
        o.insert(key.to_string(), v);
    }
    req
}

/// One connection of a client's plan.
struct ConnPlan {
    label: &'static str,
    transport: Option<&'static str>,
    before: Vec<Value>,
    big: Option<Value>,
    after: Vec<Value>,
}

impl ConnPlan {
    fn new(label: &'static str, before: Vec<Value>, big: Option<Value>, after: Vec<Value>) -> Self {
        ConnPlan {
            label,
            transport: None,
            before,
            big,
            after,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "transport": self.transport.unwrap_or("tcp"),
            "before": self.before,
            "big": self.big,
            "after": self.after,
        })
    }
}

/// `n` requests cycling through `menu`.
fn cycle(menu: &[Value], n: usize) -> Vec<Value> {
    menu.iter().cycle().take(n).cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// Plans

fn http_get(path: &str) -> Value {
    json!({"method": "GET", "path": path})
}

fn http_plan() -> Vec<ConnPlan> {
    let menu = [
        http_get("/static/small.txt"),
        http_get("/api/status/404"),
        json!({"method": "HEAD", "path": "/static/small.txt"}),
        json!({"method": "POST", "path": "/api/echo", "body": "hello attach"}),
        http_get("/api/chunked?chunks=3&size=100"),
        json!({"method": "DELETE", "path": "/api/status/204"}),
        http_get("/api/status/500"),
        json!({"method": "PUT", "path": "/api/echo", "body": repeat(HTTP_UNIT, 3000)}),
    ];
    let warm = vec![http_get("/static/small.txt"), http_get("/api/status/200")];
    vec![
        ConnPlan::new("idle", warm.clone(), None, cycle(&menu, AFTER)),
        // Sent by sendfile: the receiver sees the body only on the client's side.
        ConnPlan::new(
            "mid-response-sendfile",
            warm.clone(),
            Some(with(
                http_get("/attach/fake.http"),
                "hold",
                hold_received(1 << 20, "HTTP/1.1 200"),
            )),
            cycle(&menu, AFTER),
        ),
        // Proxied: nginx writes the body it got from the upstream with its own writes.
        ConnPlan::new(
            "mid-response-proxied",
            warm.clone(),
            Some(
                json!({"method": "POST", "path": "/api/echo", "body": repeat(HTTP_UNIT, BIG / 2),
                        "hold": hold_received(1 << 20, "GET /fake")}),
            ),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-request",
            warm.clone(),
            Some(
                json!({"method": "POST", "path": "/api/echo", "body": repeat(HTTP_UNIT, BIG / 2),
                        "hold": hold_sent(1 << 20, "GET /fake")}),
            ),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-request-of-requests",
            warm,
            Some(json!({"method": "PUT", "path": "/api/echo",
                        "body": repeat(HTTP_REQUESTS_UNIT, BIG / 2),
                        "hold": hold_sent(1 << 20, "GET /fake")})),
            cycle(&menu, AFTER),
        ),
    ]
}

fn redis_cmd(args: &[&str]) -> Value {
    json!({"cmd": args})
}

fn redis_plan() -> Vec<ConnPlan> {
    let menu = [
        redis_cmd(&["SET", "k1", "v1"]),
        redis_cmd(&["GET", "k1"]),
        redis_cmd(&["INCR", "n"]),
        redis_cmd(&["LPUSH", "l", "a", "b"]),
        redis_cmd(&["LRANGE", "l", "0", "3"]),
        redis_cmd(&["GET", "l"]),
        redis_cmd(&["PING"]),
        redis_cmd(&["DEL", "k1"]),
        redis_cmd(&["GETRANGE", "big", "0", "99"]),
        redis_cmd(&["EXISTS", "k1"]),
    ];
    let setup = vec![
        json!({"cmd": ["SET", "big", repeat(REDIS_UNIT, BIG)]}),
        json!({"cmd": ["SET", "bighttp", repeat(HTTP_UNIT, BIG)]}),
        redis_cmd(&["PING"]),
    ];
    vec![
        ConnPlan::new("idle", setup, None, cycle(&menu, AFTER)),
        ConnPlan::new(
            "mid-response",
            vec![redis_cmd(&["PING"])],
            Some(json!({"cmd": ["GET", "big"], "hold": hold_received(1 << 20, "+OK\r\n$5")})),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-response-of-http",
            vec![redis_cmd(&["PING"])],
            Some(
                json!({"cmd": ["GET", "bighttp"], "hold": hold_received(1 << 20, "HTTP/1.1 200")}),
            ),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-request",
            vec![redis_cmd(&["PING"])],
            Some(json!({"cmd": ["SET", "big2", repeat(REDIS_UNIT, BIG)],
                        "hold": hold_sent(1 << 20, "*2\r\n$3\r\nGET")})),
            cycle(&menu, AFTER),
        ),
    ]
}

fn sql(query: &str, name: &str, text: &str) -> Value {
    json!({"query": query, "x_name": name, "x_text": text})
}

fn pg_plan() -> Vec<ConnPlan> {
    let unit_hex = hex(PG_UNIT);
    let copies = BIG / PG_UNIT.len();
    let menu = [
        sql(
            "SELECT name FROM t1 WHERE id = 2",
            "SELECT t1",
            "SELECT name FROM t1 WHERE id = ?",
        ),
        json!({"extended": "SELECT note FROM t2 WHERE id = $1", "params": ["20"],
               "x_name": "SELECT t2", "x_text": "SELECT note FROM t2 WHERE id = $1"}),
        sql(
            "SELECT count(*) FROM t1",
            "SELECT t1",
            "SELECT count(*) FROM t1",
        ),
        sql("SELEC 1", "postgresql", "SELEC ?"),
        sql(
            "SELECT g FROM generate_series(1, 500) g",
            "SELECT generate_series",
            "SELECT g FROM generate_series(?, ?) g",
        ),
    ];
    let big_select = format!("SELECT decode(repeat('{unit_hex}', {copies}), 'hex')");
    vec![
        ConnPlan::new(
            "idle",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            None,
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-response",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            Some(json!({"extended": big_select, "binary": true,
                        "hold": hold_received(1 << 20, "Q\u{0}\u{0}\u{0}\u{d}SELECT")})),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-response-rows",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            Some(
                json!({"query": "SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g",
                        "hold": {"received": 1 << 20}}),
            ),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-request",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            Some(
                json!({"extended": "SELECT length($1::bytea)", "binary": true,
                        "params": [{"repeat": latin1(PG_UNIT), "bytes": BIG / 2}],
                        "hold": hold_sent(1 << 20, "Q\u{0}\u{0}\u{0}\u{d}SELECT")}),
            ),
            cycle(&menu, AFTER),
        ),
    ]
}

fn mysql_plan() -> Vec<ConnPlan> {
    let unit_hex = hex(MYSQL_UNIT);
    let copies = BIG / MYSQL_UNIT.len();
    let menu = [
        sql(
            "SELECT name FROM t1 WHERE id = 2",
            "SELECT t1",
            "SELECT name FROM t1 WHERE id = ?",
        ),
        json!({"ping": true, "x_name": "PING", "x_op": "PING"}),
        sql(
            "SELECT note FROM t2 WHERE t1_id = 1",
            "SELECT t2",
            "SELECT note FROM t2 WHERE t1_id = ?",
        ),
        sql("SELEC 1", "mysql", "SELEC ?"),
        sql(
            "SELECT seq FROM seq_1_to_300",
            "SELECT seq_1_to_300",
            "SELECT seq FROM seq_1_to_300",
        ),
        sql(
            "UPDATE t1 SET score = score WHERE id = 3",
            "UPDATE t1",
            "UPDATE t1 SET score = score WHERE id = ?",
        ),
    ];
    let big_select = format!("SELECT REPEAT(UNHEX('{unit_hex}'), {copies})");
    let big_literal = format!(
        "SELECT LENGTH('{}')",
        latin1(&MYSQL_UNIT.repeat(BIG / 2 / MYSQL_UNIT.len()))
    );
    vec![
        ConnPlan::new(
            "idle",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            None,
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-response",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            Some(json!({"query": big_select,
                        "hold": hold_received(1 << 20, "\u{9}\u{0}\u{0}\u{0}\u{3}SELECT")})),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-response-rows",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            Some(
                json!({"query": "SELECT seq, REPEAT('x', 200) FROM seq_1_to_40000",
                        "hold": {"received": 1 << 20}}),
            ),
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-request",
            vec![sql("SELECT 1", "SELECT", "SELECT ?")],
            Some(json!({"query": big_literal,
                        "hold": hold_sent(1 << 20, "\u{9}\u{0}\u{0}\u{0}\u{3}SELECT")})),
            cycle(&menu, AFTER),
        ),
    ]
}

fn dns_q(name: &str, qtype: &str) -> Value {
    json!({"name": name, "qtype": qtype})
}

fn dns_plan() -> Vec<ConnPlan> {
    let menu = [
        dns_q(dnsmasq::WEB, "A"),
        dns_q(dnsmasq::WEB, "AAAA"),
        dns_q(dnsmasq::TXT, "TXT"),
        dns_q(dnsmasq::NXDOMAIN, "A"),
        dns_q(dnsmasq::MANY, "A"),
        dns_q(dnsmasq::V4ONLY, "A"),
    ];
    let batch: Vec<Value> = cycle(&[dns_q(dnsmasq::MANY, "A")], 40);
    let mut udp = ConnPlan::new(
        "udp-idle",
        vec![dns_q(dnsmasq::WEB, "A")],
        None,
        cycle(&menu, AFTER),
    );
    udp.transport = Some("udp");
    vec![
        ConnPlan::new(
            "idle",
            vec![dns_q(dnsmasq::WEB, "A")],
            None,
            cycle(&menu, AFTER),
        ),
        ConnPlan::new(
            "mid-response",
            vec![dns_q(dnsmasq::WEB, "A")],
            Some(json!({"batch": batch, "hold": {"received": 10_000}})),
            cycle(&menu, AFTER),
        ),
        udp,
    ]
}

// ---------------------------------------------------------------------------------------------
// Ground truth

/// An attribute value a span must carry.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    S(String),
    I(i64),
}

impl Want {
    fn holds(&self, s: &SpanView, key: &str) -> bool {
        match self {
            Want::S(v) => s.str_attr(key) == Some(v.as_str()),
            Want::I(v) => s.int_attr(key) == Some(*v),
        }
    }
}

/// What the span of one request must say.
#[derive(Clone, Debug)]
struct Expect {
    name: String,
    attrs: Vec<(&'static str, Want)>,
    /// Status ERROR on the CLIENT / SERVER span.
    client_error: bool,
    server_error: bool,
}

impl Expect {
    fn new(name: impl Into<String>) -> Expect {
        Expect {
            name: name.into(),
            attrs: Vec::new(),
            client_error: false,
            server_error: false,
        }
    }

    fn attr(mut self, key: &'static str, v: Want) -> Expect {
        self.attrs.push((key, v));
        self
    }

    fn error(mut self, e: bool) -> Expect {
        self.client_error = e;
        self.server_error = e;
        self
    }

    fn matches(&self, s: &SpanView, client: bool) -> bool {
        let error = if client {
            self.client_error
        } else {
            self.server_error
        };
        s.name == self.name
            && self.attrs.iter().all(|(k, v)| v.holds(s, k))
            && (s.status_code == STATUS_ERROR) == error
    }
}

/// One request the clients (or the upstream) completed.
#[derive(Clone, Debug)]
struct Truth {
    /// `http/idle/after#3`.
    label: String,
    /// The group its spans are looked for in: the client process (CLIENT spans) and the
    /// connection's client port (SERVER spans).
    client_pid: u32,
    port: u16,
    /// After the join: must have exactly one span on each side.
    after: bool,
    start: u64,
    end: u64,
    /// The earliest the response can have been complete: `end` for a client's record; for the
    /// upstream's, the time just before its last write (its `end` is read after the write
    /// returned, which on a busy machine can be milliseconds later).
    end_at_least: u64,
    clock: Clock,
    expect: Expect,
}

fn s(v: &str) -> Want {
    Want::S(v.to_string())
}

fn expect_http(req: &Value, r: &Record) -> Result<Expect> {
    let method = req["method"].as_str().context("method")?;
    let path = req["path"].as_str().context("path")?;
    let status = r.i64("status").context("status")?;
    Ok(Expect {
        client_error: status >= 400,
        server_error: status >= 500,
        ..Expect::new(method)
            .attr("http.request.method", s(method))
            .attr("url.path", s(path.split('?').next().unwrap_or(path)))
            .attr("http.response.status_code", Want::I(status))
    })
}

fn expect_redis(req: &Value, r: &Record) -> Result<Expect> {
    let args: Vec<&Value> = req["cmd"].as_array().context("cmd")?.iter().collect();
    let name = args
        .first()
        .and_then(|v| v.as_str())
        .context("command")?
        .to_uppercase();
    let text = std::iter::once(name.clone())
        .chain(args.iter().skip(1).map(|_| "?".to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut e = Expect::new(&name)
        .attr("db.system.name", s("redis"))
        .attr("db.query.text", Want::S(text));
    if let Some(prefix) = r.str("error") {
        e = e.attr("db.response.status_code", s(prefix)).error(true);
    }
    Ok(e)
}

fn expect_sql(system: &str, req: &Value, r: &Record) -> Result<Expect> {
    // The large requests have no expected span (the receiver joins them in the middle).
    let name = req["x_name"].as_str().unwrap_or("(joined mid-message)");
    let mut e = Expect::new(name).attr("db.system.name", s(system));
    if let Some(text) = req["x_text"].as_str() {
        e = e.attr("db.query.text", s(text));
    }
    if let Some(op) = req["x_op"].as_str() {
        e = e.attr("db.operation.name", s(op));
    }
    let code = match system {
        "postgresql" => r.str("sqlstate").map(str::to_string),
        _ => r.i64("error").filter(|&n| n != 0).map(|n| n.to_string()),
    };
    if let Some(code) = code {
        e = e.attr("db.response.status_code", Want::S(code)).error(true);
    }
    Ok(e)
}

fn rcode_name(rcode: i64) -> &'static str {
    match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "_OTHER",
    }
}

fn expect_dns(r: &Record) -> Result<Expect> {
    let name = r.str("name").context("answer to an unknown query")?;
    let qtype = r.str("qtype").context("qtype")?;
    let rcode = r.i64("rcode").context("rcode")?;
    let mut e = Expect::new(format!("DNS {qtype}")).attr("dns.question.name", s(name));
    if rcode != 0 {
        e = e.attr("error.type", s(rcode_name(rcode))).error(true);
    }
    Ok(e)
}

/// A protocol to run: its name, its server's executable and serving pid (when one process
/// serves every connection), the client command and the connections' plans.
type Spec = (
    &'static str,
    &'static str,
    Option<u32>,
    Command,
    Vec<ConnPlan>,
);

/// A protocol's client and what it needs.
struct Scenario {
    proto: &'static str,
    /// The server's `process.executable.name` (its SERVER spans; forked children included).
    server_exe: &'static str,
    /// The serving process, when one process serves every connection.
    server_pid: Option<u32>,
    conns: Vec<ConnPlan>,
    /// The client process.
    pid: u32,
}

fn attach_cmd(proto: &str, port: u16, extra: &[&str]) -> Command {
    let mut c = clients::python("attach_client.py");
    c.args(["--proto", proto, "--port", &port.to_string()])
        .args(extra);
    c
}

fn spawn_scenario(
    dir: &Path,
    proto: &'static str,
    cmd: Command,
    conns: Vec<ConnPlan>,
) -> Result<(Vec<ConnPlan>, RunningClient)> {
    let plan = json!({"conns": conns.iter().map(ConnPlan::to_json).collect::<Vec<_>>()});
    let client = clients::spawn_plan(dir, &format!("attach-{proto}"), cmd, &plan, true)?;
    Ok((conns, client))
}

/// The truths of one finished client: every request it completed.
fn truths_of(sc: &Scenario, run: &PlanRun, joined_ns: u64) -> Result<Vec<Truth>> {
    let mut out = Vec::new();
    for r in &run.records {
        if r.kind != "request" {
            continue;
        }
        let conn = r.str("conn").context("conn")?;
        let plan = sc
            .conns
            .iter()
            .find(|c| c.label == conn)
            .with_context(|| format!("record of unknown connection {conn}"))?;
        let phase = r.str("phase").context("phase")?;
        let index = r.u64("index").context("index")? as usize;
        if !r.ok() {
            bail!(
                "{}/{conn}/{phase}#{index} failed: {}",
                sc.proto,
                r.str("error_text").unwrap_or("?")
            );
        }
        let req = match phase {
            "before" => plan.before.get(index),
            "after" => plan.after.get(index),
            _ => plan.big.as_ref(),
        }
        .with_context(|| format!("record of unknown request {conn}/{phase}#{index}"))?;
        let expect = match sc.proto {
            "http" => expect_http(req, r)?,
            "redis" => expect_redis(req, r)?,
            "postgres" => expect_sql("postgresql", req, r)?,
            "mysql" => expect_sql("mysql", req, r)?,
            _ => expect_dns(r)?,
        };
        let (start, end) = (
            r.start_unix_ns().context("start")?,
            r.end_unix_ns().context("end")?,
        );
        out.push(Truth {
            label: format!(
                "{}/{conn}/{phase}#{index}{}",
                sc.proto,
                r.i64("batch_index")
                    .map(|i| format!(".{i}"))
                    .unwrap_or_default()
            ),
            client_pid: run.pid(),
            port: r.u64("local_port").unwrap_or(0) as u16,
            after: phase == "after" && start > joined_ns,
            start,
            end,
            end_at_least: end,
            clock: Clock::Client,
            expect,
        });
    }
    Ok(out)
}

/// The upstream's own log of nginx's proxied requests (nginx is the client).
fn upstream_truths(w: &World<Servers>, joined_ns: u64) -> Result<Vec<Truth>> {
    let nginx = &w.server.0.0;
    let mut out = Vec::new();
    for (i, u) in nginx.upstream_requests()?.iter().enumerate() {
        let method = u["method"].as_str().context("method")?;
        let path = u["path"].as_str().context("path")?;
        let status = u["status"].as_i64().context("status")?;
        let start = u["start_unix_ns"].as_u64().context("start")?;
        let end = u["end_unix_ns"].as_u64().context("end")?;
        out.push(Truth {
            label: format!("upstream#{i} {method} {path}"),
            client_pid: nginx.pid(),
            port: u["client_port"].as_u64().context("client_port")? as u16,
            after: start > joined_ns,
            start,
            end,
            end_at_least: u["last_write_unix_ns"].as_u64().unwrap_or(end).min(end),
            clock: Clock::Server,
            expect: Expect {
                client_error: status >= 400,
                server_error: status >= 500,
                ..Expect::new(method)
                    .attr("http.request.method", s(method))
                    .attr("url.path", s(path.split('?').next().unwrap_or(path)))
                    .attr("http.response.status_code", Want::I(status))
            },
        });
    }
    Ok(out)
}

/// The labels of the first request after the join on each connection that predates the
/// receiver (by client process and port; for the upstream leg, a port that served a request
/// before the join).
fn first_after_join<'a>(truths: impl Iterator<Item = &'a Truth>) -> HashSet<String> {
    let mut by_conn: BTreeMap<(u32, u16), Vec<&Truth>> = BTreeMap::new();
    for t in truths {
        by_conn.entry((t.client_pid, t.port)).or_default().push(t);
    }
    let mut out = HashSet::new();
    for ts in by_conn.values() {
        let predates = ts.iter().any(|t| !t.after);
        if !predates {
            continue;
        }
        if let Some(first) = ts.iter().filter(|t| t.after).min_by_key(|t| t.start) {
            out.insert(first.label.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Matching

/// Whose clock a truth's times are: the client's (its span lies inside them, a server's starts
/// a little later) or the server's (the upstream's log: a client's span starts before and ends
/// after, by the time the bytes take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    Client,
    Server,
}

/// Whether span `sp` can be the span of `t` by time: it starts at the request's start and ends
/// at its end, as far as the two clocks and the scheduling of the two processes allow. A span
/// of a message the receiver joined in the middle starts where it joined: too late.
fn in_window(sp: &SpanView, t: &Truth, client_span: bool) -> bool {
    let (ss, se) = (i128::from(sp.start_ns), i128::from(sp.end_ns));
    let (ts, te) = (i128::from(t.start), i128::from(t.end));
    let c = CLOCK_SLACK_NS;
    se >= ss
        && match (t.clock, client_span) {
            (Clock::Client, true) => {
                ss >= ts - c && ss <= ts + CLIENT_START_SLACK_NS && se <= te + c
            }
            (Clock::Client, false) => {
                ss >= ts - c && ss <= ts + SERVER_START_SLACK_NS && se <= te + c
            }
            // The upstream logs after it parsed the request line and after its last write.
            (Clock::Server, false) => {
                ss >= ts - SERVER_START_SLACK_NS && ss <= ts + c && se <= te + c
            }
            (Clock::Server, true) => {
                ss >= ts - SERVER_START_SLACK_NS
                    && ss <= ts + c
                    && se >= i128::from(t.end_at_least) - c
                    && se <= te + SERVER_START_SLACK_NS
            }
        }
}

/// A group of spans and the truths they must be the spans of.
struct Group<'a> {
    label: String,
    client: bool,
    spans: Vec<&'a SpanView>,
    truths: Vec<&'a Truth>,
}

#[derive(Default)]
struct Tally {
    /// Spans that match no request.
    wrong: Vec<String>,
    /// Per truth label: spans matched (CLIENT, SERVER).
    matched: BTreeMap<String, (usize, usize)>,
}

/// Pairs the spans of a group with its requests, in order: the requests of a group follow
/// one another (one connection, or a client's connections one after the other), and so do
/// their spans, so the pairing is the longest order-preserving sequence of compatible (span,
/// request) pairs. Nearest-in-time pairing is not enough: a server that reads a request late
/// starts its span closer to the next identical request than to its own.
fn align(spans: &[&SpanView], truths: &[&Truth], client: bool) -> Vec<Option<usize>> {
    let ok = |s: &SpanView, t: &Truth| t.expect.matches(s, client) && in_window(s, t, client);
    let (n, m) = (spans.len(), truths.len());
    // best[i][j]: most pairs among spans[i..] and truths[j..].
    let mut best = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let pair = if ok(spans[i], truths[j]) {
                best[i + 1][j + 1] + 1
            } else {
                0
            };
            best[i][j] = pair.max(best[i + 1][j]).max(best[i][j + 1]);
        }
    }
    let mut out = vec![None; n];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if ok(spans[i], truths[j]) && best[i][j] == best[i + 1][j + 1] + 1 {
            out[i] = Some(j);
            i += 1;
            j += 1;
        } else if best[i][j] == best[i + 1][j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn match_group(g: &Group<'_>, tally: &mut Tally) {
    let mut spans = g.spans.clone();
    spans.sort_by_key(|s| s.start_ns);
    let mut truths = g.truths.clone();
    truths.sort_by_key(|t| t.start);
    for (sp, m) in spans.iter().zip(align(&spans, &truths, g.client)) {
        if let Some(t) = m.and_then(|j| truths.get(j)) {
            let e = tally.matched.entry(t.label.clone()).or_default();
            if g.client {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
            continue;
        }
        // The requests it overlaps in time, for the message.
        let near = truths
            .iter()
            .filter(|t| {
                i128::from(sp.start_ns) <= i128::from(t.end) + CLOCK_SLACK_NS
                    && i128::from(sp.end_ns) + CLOCK_SLACK_NS >= i128::from(t.start)
            })
            .map(|t| format!("{} {:?} [{}, {}]", t.label, t.expect.name, t.start, t.end))
            .collect::<Vec<_>>();
        tally.wrong.push(format!(
            "{}: {} [{}, {}] overlaps {}",
            g.label,
            sp.summary(),
            sp.start_ns,
            sp.end_ns,
            if near.is_empty() {
                "no request".to_string()
            } else {
                near.join("; ")
            }
        ));
    }
}

fn exe(sp: &SpanView) -> &str {
    sp.resource
        .get("process.executable.name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

fn peer_port(sp: &SpanView) -> Option<u16> {
    sp.int_attr("network.peer.port").map(|p| p as u16)
}

/// Every group of spans to check: each client's CLIENT spans, each connection's SERVER spans,
/// and nginx's upstream leg (nginx's CLIENT spans and the upstream's SERVER spans).
fn groups<'a>(
    spans: &'a [SpanView],
    scenarios: &[Scenario],
    truths: &'a [Truth],
    upstream: &'a [Truth],
    nginx: &Nginx,
) -> Vec<Group<'a>> {
    let mut out = Vec::new();
    for sc in scenarios {
        let pid = sc.pid;
        let mine: Vec<&Truth> = truths.iter().filter(|t| t.client_pid == pid).collect();
        out.push(Group {
            label: format!("{} client pid {pid}", sc.proto),
            client: true,
            spans: spans.iter().filter(|sp| sp.pid() == Some(pid)).collect(),
            truths: mine.clone(),
        });
        let ports: HashSet<u16> = mine.iter().map(|t| t.port).collect();
        for port in ports {
            out.push(Group {
                label: format!("{} server, client port {port}", sc.proto),
                client: false,
                spans: spans
                    .iter()
                    .filter(|sp| {
                        sp.is_server()
                            && peer_port(sp) == Some(port)
                            && match sc.server_pid {
                                Some(p) => sp.pid() == Some(p),
                                // Forked children serve: any process of that executable.
                                None => exe(sp) == sc.server_exe,
                            }
                    })
                    .collect(),
                truths: mine.iter().copied().filter(|t| t.port == port).collect(),
            });
        }
    }
    let up: Vec<&Truth> = upstream.iter().collect();
    out.push(Group {
        label: "nginx → upstream, nginx's CLIENT spans".to_string(),
        client: true,
        spans: spans
            .iter()
            .filter(|sp| {
                sp.pid() == Some(nginx.pid())
                    && sp.is_client()
                    && peer_port(sp) == Some(nginx.upstream_port)
            })
            .collect(),
        truths: up.clone(),
    });
    out.push(Group {
        label: "nginx → upstream, the upstream's SERVER spans".to_string(),
        client: false,
        spans: spans
            .iter()
            .filter(|sp| sp.pid() == Some(nginx.upstream_pid()) && sp.is_server())
            .collect(),
        truths: up,
    });
    out
}

// ---------------------------------------------------------------------------------------------

fn start_servers(dir: &Path) -> Result<Servers> {
    let fake = dir.join("attach");
    std::fs::create_dir_all(&fake)?;
    let unit = HTTP_UNIT.as_bytes();
    std::fs::write(fake.join("fake.http"), unit.repeat(BIG / unit.len()))?;
    let nginx = Nginx::start_with(
        &dir.join("nginx"),
        &NginxOptions {
            server_directives: format!(
                "        location /attach/ {{ alias {}/; default_type application/octet-stream; }}\n",
                fake.display()
            ),
            ..NginxOptions::default()
        },
    )?;
    let redis = Redis::start(&dir.join("redis"))?;
    let maria = MariaDb::start(
        &dir.join("mariadb"),
        integration::process::free_port()?,
        integration::process::Output::File(dir.join("mariadb/mariadbd.log")),
    )?;
    let pg = Postgres::start(&dir.join("pg"))?;
    let dns = Dnsmasq::start(&dir.join("dns"))?;
    Ok(((nginx, redis), maria, pg, dns))
}

#[test]
fn every_span_after_a_mid_stream_attach_is_exact_or_absent() -> Result<()> {
    let t0 = Instant::now();
    let mut checks = Checks::default();
    let mut w = World::start("attach", |dir| {
        std::fs::create_dir_all(dir.join("mariadb"))?;
        start_servers(dir)
    })?;
    eprintln!("[attach] servers up in {:.1} s", t0.elapsed().as_secs_f64());
    let ((nginx, redis), maria, pg, dns) = &w.server;
    let specs: Vec<Spec> = vec![
        (
            "http",
            "nginx",
            Some(nginx.pid()),
            attach_cmd("http", nginx.port, &[]),
            http_plan(),
        ),
        (
            "redis",
            "redis-server",
            Some(redis.pid()),
            attach_cmd("redis", redis.port, &[]),
            redis_plan(),
        ),
        (
            "mysql",
            "mariadbd",
            Some(maria.pid()),
            attach_cmd(
                "mysql",
                maria.port,
                &[
                    "--user",
                    mariadb::USER,
                    "--password",
                    mariadb::PASSWORD,
                    "--database",
                    mariadb::DATABASE,
                ],
            ),
            mysql_plan(),
        ),
        (
            "postgres",
            "postgres",
            None,
            attach_cmd(
                "postgres",
                pg.port,
                &[
                    "--user",
                    postgres::CLEARTEXT_USER,
                    "--password",
                    postgres::CLEARTEXT_PASSWORD,
                    "--database",
                    postgres::DATABASE,
                ],
            ),
            pg_plan(),
        ),
        (
            "dns",
            "dnsmasq",
            None,
            attach_cmd("dns", dns.port, &["--host", &dns.addr.to_string()]),
            dns_plan(),
        ),
    ];
    let mut scenarios = Vec::new();
    let mut running = Vec::new();
    for (proto, server_exe, server_pid, cmd, conns) in specs {
        let (conns, client) = spawn_scenario(&w.dir, proto, cmd, conns)?;
        scenarios.push(Scenario {
            proto,
            server_exe,
            server_pid,
            conns,
            pid: client.pid(),
        });
        running.push(client);
    }
    for (sc, client) in scenarios.iter().zip(&mut running) {
        client
            .wait_ready(Duration::from_secs(120))
            .with_context(|| format!("the {} client to reach its hold points", sc.proto))?;
    }
    eprintln!(
        "[attach] every connection at its hold point after {:.1} s; starting the receiver",
        t0.elapsed().as_secs_f64()
    );
    // Only this test's processes: the machine is shared, and the host's other traffic would
    // bury these spans. Every one of them exists already (the clients connected, PostgreSQL and
    // dnsmasq forked the children serving them), so the filter loses nothing.
    let mut pids: Vec<u32> = scenarios.iter().map(|sc| sc.pid).collect();
    {
        let ((nginx, redis), maria, pg, dns) = &w.server;
        pids.extend([nginx.pid(), nginx.upstream_pid(), redis.pid(), maria.pid()]);
        pids.extend(procs::tree(&[pg.pid(), dns.pid()]));
    }
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    w.start_receiver_with(&format!("targets:\n  pids: [{list}]\n"))?;
    let joined_ns = unix_now_ns();
    for client in &running {
        client.go()?;
    }
    let mut truths = Vec::new();
    for (sc, client) in scenarios.iter().zip(running) {
        let run = clients::finish_plan(client, Duration::from_secs(120))?;
        truths.extend(truths_of(sc, &run, joined_ns)?);
    }
    let finished = scenarios;
    eprintln!(
        "[attach] clients done after {:.1} s; waiting for the spans",
        t0.elapsed().as_secs_f64()
    );

    // The first request after the join on each connection opened before the receiver: the
    // receiver cannot tell a fresh message from the middle of one, so it infers the protocol
    // where the conversation turns (`ebpf_common::turn`). When the first bytes it sees in a
    // direction are that fresh request, its exchange has no span (exact or absent).
    let up0 = upstream_truths(&w, joined_ns)?;
    let turning = first_after_join(truths.iter().chain(&up0));

    // Wait until every other request after the join has its spans (or 20 s), then a little
    // more so that late wrong spans would show up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = w.collector.spans()?;
        let up = upstream_truths(&w, joined_ns)?;
        let mut tally = Tally::default();
        for g in groups(&spans, &finished, &truths, &up, &w.server.0.0) {
            match_group(&g, &mut tally);
        }
        let missing = truths
            .iter()
            .chain(&up)
            .filter(|t| {
                t.after
                    && !turning.contains(&t.label)
                    && tally.matched.get(&t.label).copied().unwrap_or_default() != (1, 1)
            })
            .count();
        if missing == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let spans = w.collector.spans()?;
    let up = upstream_truths(&w, joined_ns)?;
    let turning = first_after_join(truths.iter().chain(&up));
    let mut tally = Tally::default();
    let gs = groups(&spans, &finished, &truths, &up, &w.server.0.0);
    let considered: usize = gs.iter().map(|g| g.spans.len()).sum();
    for g in &gs {
        match_group(g, &mut tally);
    }

    // Figures: per connection, the requests after the join and the spans each side got.
    let mut per_conn: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let (mut all, mut both_all) = (0usize, 0usize);
    for t in truths.iter().chain(&up).filter(|t| t.after) {
        let key = if t.label.starts_with("upstream") {
            "http/upstream-leg".to_string()
        } else {
            t.label.split('/').take(2).collect::<Vec<_>>().join("/")
        };
        let e = per_conn.entry(key).or_default();
        let (c, sv) = tally.matched.get(&t.label).copied().unwrap_or_default();
        e.0 += 1;
        e.1 += usize::from(c == 1);
        e.2 += usize::from(sv == 1);
        e.3 += usize::from(c == 1 && sv == 1);
        all += 1;
        both_all += usize::from(c == 1 && sv == 1);
    }
    for (conn, (n, c, sv, both)) in &per_conn {
        eprintln!(
            "[attach] {conn:<28} {n:>3} requests after the join: CLIENT spans {c:>3}, SERVER spans {sv:>3}, both {both:>3} (recall {:.1} %)",
            100.0 * *both as f64 / (*n).max(1) as f64
        );
    }
    let mut big: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in truths.iter().filter(|t| t.label.contains("/big#")) {
        let (c, sv) = tally.matched.get(&t.label).copied().unwrap_or_default();
        let e = big
            .entry(t.label.split("/big#").next().unwrap_or("").to_string())
            .or_default();
        e.0 += 1;
        e.1 += c + sv;
    }
    for (conn, (n, spans)) in &big {
        eprintln!(
            "[attach] {conn:<28} joined in the middle of its large message ({n} request(s)): {spans} span(s)"
        );
    }
    let turned_missing = truths
        .iter()
        .chain(&up)
        .filter(|t| {
            turning.contains(&t.label)
                && tally.matched.get(&t.label).copied().unwrap_or_default() != (1, 1)
        })
        .count();
    eprintln!(
        "[attach] {all} requests after the join, {both_all} with both spans (recall {:.2} %); \
         {turned_missing} of the {} first exchanges of a connection opened before the receiver lack a span; \
         {considered} spans checked, {} wrong; {:.1} s in all",
        100.0 * both_all as f64 / all.max(1) as f64,
        turning.len(),
        tally.wrong.len(),
        t0.elapsed().as_secs_f64()
    );
    for wrong in &tally.wrong {
        checks.fail(format!("wrong span: {wrong}"));
    }
    for t in truths.iter().chain(&up).filter(|t| t.after) {
        let (c, sv) = tally.matched.get(&t.label).copied().unwrap_or_default();
        let ok = if turning.contains(&t.label) {
            c <= 1 && sv <= 1
        } else {
            (c, sv) == (1, 1)
        };
        check!(
            checks,
            ok,
            "{}: {c} CLIENT and {sv} SERVER span(s) after the join, expected one each",
            t.label
        );
    }
    check!(
        checks,
        per_conn.len() >= 15,
        "only {} connections had requests after the join",
        per_conn.len()
    );
    w.check_no_loss(&mut checks);
    w.done(checks)
}

/// `targets.pids` follows the processes the named ones start while the receiver runs: a shell
/// named in the filter starts a `redis-cli` (fork + exec), a Python that starts one with
/// `subprocess` (a grandchild), and one with `posix_spawn` (clone with CLONE_VM|CLONE_VFORK: no
/// sockets to copy, but traced like its parent); each runs one `SET` and records its own pid. Both children are
/// traced, a `redis-cli` started by a process outside the filter is not (its command still has
/// its SERVER span: the server is named). Ground truth: the pids the children wrote and the
/// commands they ran.
#[test]
fn b_processes_started_by_a_traced_pid_are_traced() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = World::start("attach_forks", |dir| Redis::start(&dir.join("redis")))?;
    let port = w.server.port;
    let go = w.dir.join("forks.go");
    let dir = w.dir.clone();
    let pid_file = |name: &str| dir.join(format!("{name}.pid"));
    let child = |name: &str| {
        format!(
            "echo $$ > {}; exec redis-cli -p {port} SET {name} v",
            pid_file(name).display()
        )
    };
    // Inside the outer shell's double quotes: `$$` must reach the inner shell.
    let quoted = |name: &str| child(name).replace('$', "\\$");
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.02; done; sh -c '{direct}'; \
         python3 -c \"import subprocess; subprocess.run(['sh', '-c', '{spawned}'], check=True)\"; \
         python3 -c \"import os; os.waitpid(os.posix_spawn('/bin/sh', ['sh', '-c', '{posix}'], os.environ), 0)\"",
        go = go.display(),
        direct = child("forked"),
        spawned = quoted("spawned"),
        posix = quoted("posix_spawned"),
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let parent = clients::spawn(&w.dir, "parent", cmd)?;
    let redis_pid = w.server.pid();
    w.start_receiver_with(&format!(
        "targets:\n  pids: [{}, {redis_pid}]\n",
        parent.pid()
    ))?;
    std::fs::write(&go, "go")?;
    let run = parent.finish(Duration::from_secs(30))?;
    run.ensure_success()?;
    let outsider = clients::redis::cli(&w.dir, "outsider", &w.server, &["SET", "outsider", "v"])?;
    outsider.ensure_success()?;
    let mut pids = Vec::new();
    for name in ["forked", "spawned", "posix_spawned"] {
        let text = std::fs::read_to_string(pid_file(name))?;
        pids.push((name, text.trim().parse::<u32>().context("child pid")?));
    }
    w.wait_spans(
        "the SERVER spans of the four SETs",
        |s| s.pid() == Some(redis_pid) && s.is_server() && s.name == "SET",
        |s| s.len() >= 4,
    )?;
    let spans = w.settled_spans(Duration::from_millis(1000), |s| s.name == "SET")?;
    for (name, pid) in &pids {
        let n = spans
            .iter()
            .filter(|s| s.pid() == Some(*pid) && s.is_client())
            .count();
        eprintln!("[attach:forks] {name} child (pid {pid}): {n} CLIENT span(s)");
        check!(
            checks,
            n == 1,
            "{name} child pid {pid}: {n} CLIENT spans, expected 1"
        );
    }
    let n = spans
        .iter()
        .filter(|s| s.pid() == Some(outsider.pid))
        .count();
    eprintln!(
        "[attach:forks] outsider (pid {}): {n} span(s)",
        outsider.pid
    );
    check!(
        checks,
        n == 0,
        "a process outside the filter was traced: {n} spans"
    );
    w.check_no_loss(&mut checks);
    w.done(checks)
}
