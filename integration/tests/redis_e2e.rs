//! End-to-end: a real redis-server (one process serves every connection), real clients
//! (redis-py in RESP2 and RESP3, `redis-cli` reading stdin and in `--pipe` mode, a
//! telnet-style inline client, `redis-benchmark` with and without `-P 16`), the stock
//! Collector with a file exporter, and the receiver tracing the whole host. Spans are read
//! back per process and, on the server side, per connection (the client's port); unrelated
//! spans of other processes are ignored.
//!
//! Root only: built with `--features e2e` by `cargo xtask test --file redis_e2e`.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use integration::check;
use integration::clients::redis::{self as rc, BenchOptions, InlineStep, RedisStep, RedisVia};
use integration::clients::{PlanRun, Record};
use integration::collector::{STATUS_ERROR, SpanView};
use integration::load::proc_sample;
use integration::receiver::Metrics;
use integration::servers::redis::{PASSWORD, Redis, RedisOptions};
use integration::world::{Checks, Side, World, assert_in_order, assert_no_secrets_anywhere};

/// A value, an argument and a published message that must never show up in a span.
const VALUE_CANARY: &str = "value-canary-Kq7";
const ARG_CANARY: &str = "arg-canary-Zx3";
const MESSAGE_CANARY: &str = "pushed-canary-Wm5";

/// Slack between the kernel's timestamps and the client's own clock readings: the client reads
/// its clock in Python around the socket calls, the kernel at the syscalls, and this VM is
/// shared with other builds.
const TIME_TOLERANCE_NS: i128 = 2_000_000;

fn world(name: &str, password: bool) -> Result<World<Redis>> {
    let opts = if password {
        RedisOptions::with_password()
    } else {
        RedisOptions::default()
    };
    World::start(name, |dir| Redis::start_with(&dir.join("redis"), &opts))
}

fn world_with_receiver(name: &str, password: bool) -> Result<World<Redis>> {
    let mut w = world(name, password)?;
    w.start_receiver()?;
    Ok(w)
}

fn is_redis(s: &SpanView) -> bool {
    s.str_attr("db.system.name") == Some("redis")
}

/// What one span must be.
#[derive(Clone, Debug)]
struct Want {
    /// Span name and `db.operation.name`.
    name: &'static str,
    text: Option<&'static str>,
    /// `db.namespace` (`None`: absent).
    ns: Option<&'static str>,
    /// `error.type`, status ERROR.
    error: Option<&'static str>,
    /// `db.response.status_code`.
    code: Option<&'static str>,
    batch: Option<i64>,
    /// The client record whose clock readings bound this span.
    record: Option<usize>,
}

fn want(name: &'static str, text: &'static str, ns: &'static str) -> Want {
    Want {
        name,
        text: (!text.is_empty()).then_some(text),
        ns: (!ns.is_empty()).then_some(ns),
        error: None,
        code: None,
        batch: None,
        record: None,
    }
}

impl Want {
    /// A Redis error reply: its prefix is both `error.type` and `db.response.status_code`.
    fn err(self, code: &'static str) -> Want {
        Want {
            error: Some(code),
            code: Some(code),
            ..self
        }
    }
    /// The reply's end was never seen (no database error code).
    fn end_lost(self) -> Want {
        Want {
            error: Some("response_end_lost"),
            code: None,
            ..self
        }
    }
    fn batch(self, n: i64) -> Want {
        Want {
            batch: Some(n),
            ..self
        }
    }
    fn rec(self, i: usize) -> Want {
        Want {
            record: Some(i),
            ..self
        }
    }
}

/// Waits until `n` Redis spans pass `filter`, lets late duplicates arrive, and returns every
/// one of them sorted by start.
fn spans_where(
    w: &mut World<Redis>,
    what: &str,
    n: usize,
    filter: impl Fn(&SpanView) -> bool,
) -> Result<Vec<SpanView>> {
    w.wait_spans(what, |s| is_redis(s) && filter(s), |s| s.len() >= n)?;
    let mut spans = w.settled_spans(Duration::from_millis(400), |s| is_redis(s) && filter(s))?;
    spans.sort_by_key(|s| s.start_ns);
    Ok(spans)
}

/// The CLIENT spans of `pid`.
fn client_spans(w: &mut World<Redis>, pid: u32, n: usize) -> Result<Vec<SpanView>> {
    spans_where(w, &format!("{n} CLIENT spans of pid {pid}"), n, |s| {
        s.pid() == Some(pid) && Side::Client.matches(s)
    })
}

/// The SERVER spans of redis-server for the connection from `client_port`.
fn server_spans(w: &mut World<Redis>, client_port: u16, n: usize) -> Result<Vec<SpanView>> {
    let pid = w.server.pid();
    spans_where(
        w,
        &format!("{n} SERVER spans of the connection from port {client_port}"),
        n,
        |s| {
            s.pid() == Some(pid)
                && Side::Server.matches(s)
                && s.int_attr("network.peer.port") == Some(i64::from(client_port))
        },
    )
}

fn list(spans: &[SpanView]) -> String {
    spans
        .iter()
        .map(|s| format!("  {}", s.summary()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exactly the wanted spans, in order, with exact names and attributes.
fn check_sequence(checks: &mut Checks, label: &str, spans: &[SpanView], wants: &[Want]) {
    if spans.len() != wants.len() {
        checks.fail(format!(
            "{label}: {} spans, expected {}: {:?}\n{}",
            spans.len(),
            wants.len(),
            wants.iter().map(|w| w.name).collect::<Vec<_>>(),
            list(spans)
        ));
        return;
    }
    for (i, (s, w)) in spans.iter().zip(wants).enumerate() {
        let got = (
            s.name.as_str(),
            s.str_attr("db.operation.name"),
            s.str_attr("db.query.text"),
            s.str_attr("db.namespace"),
            s.str_attr("error.type"),
            s.str_attr("db.response.status_code"),
            s.status_code == STATUS_ERROR,
            s.int_attr("db.operation.batch.size"),
        );
        let expected = (
            w.name,
            Some(w.name),
            w.text,
            w.ns,
            w.error,
            w.code,
            w.error.is_some(),
            w.batch.filter(|&n| n > 1),
        );
        check!(
            checks,
            got == expected,
            "{label} span {i}: got {got:?}, expected {expected:?}: {}",
            s.summary()
        );
        check!(
            checks,
            s.end_ns >= s.start_ns,
            "{label} span {i} ends before it starts"
        );
    }
}

/// Network attributes of a TCP span to or from the test server.
fn check_tcp(checks: &mut Checks, label: &str, spans: &[SpanView], server_port: u16) {
    for s in spans {
        let ok = s.str_attr("network.transport") == Some("tcp")
            && s.str_attr("server.address") == Some("127.0.0.1")
            && s.int_attr("server.port") == Some(i64::from(server_port))
            && s.str_attr("network.peer.address") == Some("127.0.0.1")
            && s.int_attr("network.peer.port").is_some();
        check!(checks, ok, "{label}: network attributes: {}", s.summary());
    }
}

/// The client's own clock readings bound its span; the server's span lies inside the
/// client's.
fn check_times(
    checks: &mut Checks,
    label: &str,
    client: &[SpanView],
    server: &[SpanView],
    wants: &[Want],
    records: &[Record],
) {
    if client.len() != wants.len() || server.len() != wants.len() {
        return;
    }
    for ((c, s), w) in client.iter().zip(server).zip(wants) {
        check!(
            checks,
            i128::from(s.start_ns) + TIME_TOLERANCE_NS >= i128::from(c.start_ns)
                && i128::from(s.end_ns) <= i128::from(c.end_ns) + TIME_TOLERANCE_NS,
            "{label}: SERVER span not inside the CLIENT span:\n  {}\n  {}",
            c.summary(),
            s.summary()
        );
        let Some(r) = w.record.and_then(|i| records.get(i)) else {
            continue;
        };
        let (Some(start), Some(end), Some(dur)) =
            (r.start_unix_ns(), r.end_unix_ns(), r.duration_ns())
        else {
            checks.fail(format!("{label}: record without times: {r:?}"));
            continue;
        };
        check!(
            checks,
            i128::from(c.start_ns) + TIME_TOLERANCE_NS >= i128::from(start)
                && i128::from(c.end_ns) <= i128::from(end) + TIME_TOLERANCE_NS
                && c.duration_ns() <= i128::from(dur) + TIME_TOLERANCE_NS,
            "{label}: CLIENT span {:?} outside the client's own measurement [{start}, {end}] ({:.3} ms): {}",
            c.name,
            dur as f64 / 1e6,
            c.summary()
        );
    }
}

fn check_no_canary(checks: &mut Checks, spans: &[SpanView]) {
    for s in spans {
        checks.add(assert_no_secrets_anywhere(
            s,
            &[PASSWORD, VALUE_CANARY, ARG_CANARY, MESSAGE_CANARY],
        ));
    }
}

/// Both sides of one client connection against `wants`, with times and canaries.
fn check_both_sides(
    w: &mut World<Redis>,
    checks: &mut Checks,
    label: &str,
    run: &PlanRun,
    wants: &[Want],
) -> Result<(Vec<SpanView>, Vec<SpanView>)> {
    let port = w.server.port;
    let client = client_spans(w, run.pid(), wants.len())?;
    let server = server_spans(w, run.local_port()?, wants.len())?;
    for (side, spans) in [("CLIENT", &client), ("SERVER", &server)] {
        let l = format!("{label} {side}");
        check_sequence(checks, &l, spans, wants);
        check_tcp(checks, &l, spans, port);
        check_no_canary(checks, spans);
        checks.add(assert_in_order(&spans.iter().collect::<Vec<_>>()));
    }
    check_times(checks, label, &client, &server, wants, &run.records);
    Ok((client, server))
}

/// (a) redis-py speaking RESP2 to a server with a password: AUTH on connect, strings, hashes,
/// errors (WRONGTYPE, an unknown command), two-word commands, SELECT then commands in the new
/// database, a slow command timed against the client, a transaction and a pipeline written in
/// one go each. One CLIENT and one SERVER span per command (one per transaction), exact names
/// and attributes, in order, inside the client's own measurements; no canary anywhere.
#[test]
fn a_redis_py_resp2_scripted_workload() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_receiver("a_py_resp2", true)?;
    let steps = vec![
        RedisStep::cmd(&["SET", "user:1", VALUE_CANARY]),
        RedisStep::cmd(&["GET", "user:1"]),
        RedisStep::cmd(&["HMSET", "h", "f1", "v1", "f2", "v2"]),
        RedisStep::cmd(&["LPUSH", "user:1", "x"]),
        RedisStep::cmd(&["FOO", ARG_CANARY]),
        RedisStep::cmd(&["CLIENT", "SETNAME", "py"]),
        RedisStep::cmd(&["CONFIG", "GET", "maxmemory"]),
        RedisStep::cmd(&["SELECT", "2"]),
        RedisStep::cmd(&["SET", "k2", VALUE_CANARY]),
        RedisStep::cmd(&["DEBUG", "SLEEP", "0.2"]),
        RedisStep::transaction(&[&["SET", "t", "1"], &["INCR", "t"]]),
        RedisStep::pipeline(&[&["SET", "p", "a"], &["GET", "p"], &["DEL", "p"]]),
        RedisStep::transaction(&[&["INCR", "t"], &["INCR", "t"]]),
        RedisStep::cmd(&["GET", "t"]),
        // A 1 MiB value: its GET reply is far beyond one capture (followed by length).
        RedisStep::cmd(&["SETRANGE", "big", "1048575", "x"]),
        RedisStep::cmd(&["GET", "big"]),
        // A list whose LRANGE reply (an array of about 94 KiB) is longer than one capture.
        RedisStep::cmd(&[
            "EVAL",
            "for i = 1, 2000 do redis.call('rpush', KEYS[1], string.rep('e', 40)) end",
            "1",
            "biglist",
        ]),
        RedisStep::cmd(&["LRANGE", "biglist", "0", "-1"]),
        RedisStep::cmd(&["PING"]),
    ];
    let run = rc::redis_py(&w.dir, "py", &w.server, RedisVia::Tcp, &steps)?;
    let recs = &run.records;
    ensure!(recs.len() == 23, "redis-py records: {recs:?}");
    check!(
        checks,
        recs[3]
            .str("error")
            .is_some_and(|e| e.contains("WRONGTYPE"))
            && recs[4]
                .str("error")
                .is_some_and(|e| e.contains("unknown command")),
        "the errors the test relies on: {:?} {:?}",
        recs[3],
        recs[4]
    );
    let wants = vec![
        want("AUTH", "AUTH ?", "0"),
        want("SET", "SET ? ?", "0").rec(0),
        want("GET", "GET ?", "0").rec(1),
        want("HMSET", "HMSET ? ? ? ? ?", "0").rec(2),
        want("LPUSH", "LPUSH ? ?", "0").err("WRONGTYPE").rec(3),
        want("_OTHER", "", "0").err("ERR").rec(4),
        want("CLIENT SETNAME", "CLIENT SETNAME ?", "0").rec(5),
        want("CONFIG GET", "CONFIG GET ?", "0").rec(6),
        want("SELECT", "SELECT ?", "0").rec(7),
        want("SET", "SET ? ?", "2").rec(8),
        want("DEBUG SLEEP", "DEBUG SLEEP ?", "2").rec(9),
        want("MULTI", "SET ? ?; INCR ?", "2").batch(2).rec(10),
        want("SET", "SET ? ?", "2").rec(12),
        want("GET", "GET ?", "2").rec(13),
        want("DEL", "DEL ?", "2").rec(14),
        want("MULTI INCR", "INCR ?", "2").batch(2).rec(15),
        want("GET", "GET ?", "2").rec(17),
        want("SETRANGE", "SETRANGE ? ? ?", "2").rec(18),
        want("GET", "GET ?", "2").rec(19),
        want("EVAL", "EVAL ? ? ?", "2").rec(20),
        want("LRANGE", "LRANGE ? ? ?", "2").rec(21),
        want("PING", "PING", "2").rec(22),
    ];
    // An array reply cut by the capture limit cannot be followed to its end: that span may
    // say so (and only that one); the next reply is paired exactly again.
    let lrange = wants.len() - 2;
    let wants_for = |spans: &[SpanView]| {
        let mut v = wants.clone();
        if spans
            .get(lrange)
            .is_some_and(|s| s.str_attr("error.type") == Some("response_end_lost"))
        {
            v[lrange] = v[lrange].clone().end_lost();
        }
        v
    };
    let port = w.server.port;
    let client = client_spans(&mut w, run.pid(), wants.len())?;
    let server = server_spans(&mut w, run.local_port()?, wants.len())?;
    for (side, spans) in [("CLIENT", &client), ("SERVER", &server)] {
        let l = format!("redis-py {side}");
        check_sequence(&mut checks, &l, spans, &wants_for(spans));
        check_tcp(&mut checks, &l, spans, port);
        check_no_canary(&mut checks, spans);
        checks.add(assert_in_order(&spans.iter().collect::<Vec<_>>()));
        eprintln!(
            "[e2e:a_py_resp2] {side} LRANGE of ~94 KiB: {}",
            spans.get(lrange).map(SpanView::summary).unwrap_or_default()
        );
    }
    check_times(&mut checks, "redis-py", &client, &server, &wants, recs);
    if client.len() == wants.len() && server.len() == wants.len() {
        for (side, s) in [("CLIENT", &client[10]), ("SERVER", &server[10])] {
            let d = s.duration_ns();
            check!(
                checks,
                d >= 200_000_000,
                "{side}: DEBUG SLEEP 0.2 span only {:.3} ms",
                d as f64 / 1e6
            );
            eprintln!(
                "[e2e:a_py_resp2] {side} DEBUG SLEEP 0.2: span {:.3} ms, client {:.3} ms",
                d as f64 / 1e6,
                recs[9].duration_ns().unwrap_or(0) as f64 / 1e6
            );
        }
    }

    // The same over the Unix socket: transport and socket path.
    let run = rc::redis_py(
        &w.dir,
        "py_unix",
        &w.server,
        RedisVia::Socket,
        &[RedisStep::cmd(&["GET", "user:1"])],
    )?;
    let client = client_spans(&mut w, run.pid(), 2)?;
    check_sequence(
        &mut checks,
        "redis-py over the socket",
        &client,
        &[want("AUTH", "AUTH ?", "0"), want("GET", "GET ?", "0")],
    );
    let path = w.server.socket.display().to_string();
    for s in &client {
        // The socket path is the server's address when the tracker could resolve it.
        check!(
            checks,
            s.str_attr("network.transport") == Some("unix")
                && s.str_attr("server.address").is_none_or(|a| a == path)
                && s.int_attr("server.port").is_none(),
            "Unix socket attributes: {}",
            s.summary()
        );
    }
    check_no_canary(&mut checks, &client);
    check_artifacts(&w, &mut checks);
    w.done(checks)
}

/// No canary in the Collector's raw output, the receiver's log or its self-metrics.
fn check_artifacts(w: &World<Redis>, checks: &mut Checks) {
    let spans = std::fs::read(&w.collector.spans_file).unwrap_or_default();
    let log = std::fs::read(w.dir.join("receiver.log")).unwrap_or_default();
    let metrics = integration::receiver::http_get(w.receiver().metrics_port, "/metrics")
        .map(|(_, body)| body.into_bytes())
        .unwrap_or_default();
    for (what, bytes) in [
        ("the Collector's output", &spans),
        ("the receiver's log", &log),
        ("the self-metrics", &metrics),
    ] {
        for canary in [PASSWORD, VALUE_CANARY, ARG_CANARY, MESSAGE_CANARY] {
            let found = bytes.windows(canary.len()).any(|w| w == canary.as_bytes());
            check!(checks, !found, "{canary:?} in {what}");
        }
    }
    check!(checks, !spans.is_empty(), "no Collector output to scan");
}

/// (b) Pub/sub and RESP3. redis-py in RESP3 (`HELLO 3 AUTH default <password>`, the canary
/// never shows) subscribes on its own connection while another client (`redis-cli PUBLISH`)
/// publishes: the pushed messages are not replies and make no span, commands while subscribed
/// pair with their own replies. The same with a RESP2 subscriber, whose messages arrive as
/// plain arrays and whose PING in subscribe mode is answered `["pong", ""]`.
#[test]
fn b_pubsub_resp3_and_resp2_pushes_are_not_replies() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_receiver("b_pubsub", true)?;
    let publish = [("news", MESSAGE_CANARY), ("alerts", MESSAGE_CANARY)];
    let steps = vec![
        RedisStep::cmd(&["SET", "a", VALUE_CANARY]),
        RedisStep::cmd(&["HSET", "h", "f", "v"]),
        RedisStep::cmd(&["HGETALL", "h"]),
        RedisStep::cmd(&["INCR", "h"]),
        RedisStep::subscribe(&["news", "alerts"], &publish, true),
        RedisStep::cmd(&["GET", "a"]),
    ];
    let run = rc::redis_py_resp3(&w.dir, "py3", &w.server, &steps)?;
    let messages = run.of_kind("messages");
    ensure!(
        messages.first().and_then(|m| m.u64("count")) == Some(2),
        "the subscriber got the messages: {:?}",
        run.records
    );
    // Records: SET, HSET, HGETALL, INCR, SUBSCRIBE, published ×2, messages, PING,
    // UNSUBSCRIBE, GET.
    ensure!(run.records.len() == 11, "records: {:?}", run.records);
    let wants = vec![
        want("HELLO", "HELLO ? ? ? ?", "0"),
        // redis-py 8 asks for maintenance notifications after HELLO 3; Redis 7.0 refuses.
        want(
            "CLIENT MAINT_NOTIFICATIONS",
            "CLIENT MAINT_NOTIFICATIONS ? ? ?",
            "0",
        )
        .err("ERR"),
        want("SET", "SET ? ?", "0").rec(0),
        want("HSET", "HSET ? ? ?", "0").rec(1),
        want("HGETALL", "HGETALL ?", "0").rec(2),
        want("INCR", "INCR ?", "0").err("WRONGTYPE").rec(3),
        want("SUBSCRIBE", "SUBSCRIBE ? ?", "0").rec(4),
        want("PING", "PING", "0").rec(8),
        want("UNSUBSCRIBE", "UNSUBSCRIBE", "0").rec(9),
        want("GET", "GET ?", "0").rec(10),
    ];
    check_both_sides(&mut w, &mut checks, "RESP3 subscriber", &run, &wants)?;
    // The publishers: another client each, AUTH then PUBLISH.
    for p in run.of_kind("published") {
        let pid = p.u64("pid").context("publisher pid")? as u32;
        let spans = client_spans(&mut w, pid, 2)?;
        check_sequence(
            &mut checks,
            &format!("publisher {pid}"),
            &spans,
            &[
                want("AUTH", "AUTH ?", "0"),
                want("PUBLISH", "PUBLISH ? ?", "0"),
            ],
        );
        check_no_canary(&mut checks, &spans);
    }

    // RESP2: messages are arrays, PING answers ["pong", ""].
    let steps = vec![
        RedisStep::subscribe(&["c1", "c2"], &[("c1", MESSAGE_CANARY)], true),
        RedisStep::cmd(&["SET", "after", "1"]),
    ];
    let run = rc::redis_py(&w.dir, "py2", &w.server, RedisVia::Tcp, &steps)?;
    ensure!(
        run.of_kind("messages").first().and_then(|m| m.u64("count")) == Some(1),
        "RESP2 subscriber: {:?}",
        run.records
    );
    let wants = vec![
        want("AUTH", "AUTH ?", "0"),
        want("SUBSCRIBE", "SUBSCRIBE ? ?", "0").rec(0),
        want("PING", "PING", "0").rec(3),
        want("UNSUBSCRIBE", "UNSUBSCRIBE", "0").rec(4),
        want("SET", "SET ? ?", "0").rec(5),
    ];
    check_both_sides(&mut w, &mut checks, "RESP2 subscriber", &run, &wants)?;
    check_artifacts(&w, &mut checks);
    w.done(checks)
}

/// (c) redis-cli reading commands from stdin (one connection: AUTH, the `COMMAND DOCS` it
/// sends first — a reply of about 170 KiB, longer than one capture — then SELECT and commands
/// in database 2), `redis-cli --pipe` sending inline commands as they are, and a telnet-style
/// client sending inline commands (with an inline `AUTH <password>`) one at a time and three
/// PINGs in one write.
#[test]
fn c_redis_cli_and_inline_clients() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_receiver("c_cli_inline", true)?;
    let port = w.server.port;

    let run = rc::cli_lines(
        &w.dir,
        "cli",
        &w.server,
        &["SELECT 2", "SET a b", "GET a", "INCR a", "DEL a"],
    )?;
    run.ensure_success()?;
    let wants = vec![
        want("AUTH", "AUTH ?", "0"),
        want("COMMAND DOCS", "COMMAND DOCS", "0"),
        want("SELECT", "SELECT ?", "0"),
        want("SET", "SET ? ?", "2"),
        want("GET", "GET ?", "2"),
        want("INCR", "INCR ?", "2").err("ERR"),
        want("DEL", "DEL ?", "2"),
    ];
    let client = client_spans(&mut w, run.pid, wants.len())?;
    check_sequence(&mut checks, "redis-cli CLIENT", &client, &wants);
    check_tcp(&mut checks, "redis-cli CLIENT", &client, port);
    check_no_canary(&mut checks, &client);
    // The server writes COMMAND DOCS' reply in writes longer than the capture limit: its span
    // may say the end was not seen; every span after it is exact.
    let server_pid = w.server.pid();
    let (t0, t1) = (run.start_unix_ns, run.end_unix_ns);
    let server = spans_where(&mut w, "redis-cli's SERVER spans", wants.len(), |s| {
        s.pid() == Some(server_pid)
            && Side::Server.matches(s)
            && s.start_ns >= t0
            && s.end_ns <= t1
            && s.str_attr("db.operation.name") != Some("PING")
    })?;
    let mut server_wants = wants.clone();
    if server
        .get(1)
        .is_some_and(|s| s.str_attr("error.type") == Some("response_end_lost"))
    {
        server_wants[1] = server_wants[1].clone().end_lost();
    }
    check_sequence(&mut checks, "redis-cli SERVER", &server, &server_wants);
    check_no_canary(&mut checks, &server);

    // redis-cli --pipe: the input goes out as it is (inline commands), then an ECHO.
    let pipe = rc::cli_pipe(
        &w.dir,
        "pipe",
        &w.server,
        b"PING\r\nSET pipe-key v\r\nINCR pipe-key\r\nSELECT 3\r\nGET pipe-key\r\n",
    )?;
    // It exits 1 because one reply is an error.
    check!(
        checks,
        pipe.stdout.contains("errors: 1, replies: 5"),
        "redis-cli --pipe: {}",
        pipe.stdout
    );
    let spans = client_spans(&mut w, pipe.pid, 7)?;
    check_sequence(
        &mut checks,
        "redis-cli --pipe",
        &spans,
        &[
            want("AUTH", "AUTH ?", "0"),
            want("PING", "PING", "0"),
            want("SET", "SET ? ?", "0"),
            want("INCR", "INCR ?", "0").err("ERR"),
            want("SELECT", "SELECT ?", "0"),
            want("GET", "GET ?", "3"),
            want("ECHO", "ECHO ?", "3"),
        ],
    );
    check_no_canary(&mut checks, &spans);

    // A telnet-style client: inline commands, an inline AUTH with the password.
    let run = rc::inline(
        &w.dir,
        "inline",
        &w.server,
        &[
            InlineStep::Line("PING".into()),
            InlineStep::Line(format!("SET greeting \"{VALUE_CANARY} x\"")),
            InlineStep::Line("INCR greeting".into()),
            InlineStep::Line("SELECT 1".into()),
            InlineStep::Line("INCR counter".into()),
            InlineStep::Raw {
                bytes: "PING\r\nPING\r\nPING\r\n".into(),
                replies: 3,
            },
            InlineStep::Line(format!("NOSUCHCMD {ARG_CANARY}")),
        ],
    )?;
    let records: Vec<Record> = run.records.clone();
    ensure!(records.len() == 8, "inline client: {records:?}");
    // Records: auth, then one per step.
    let wants = vec![
        want("AUTH", "AUTH ?", "0").rec(0),
        want("PING", "PING", "0").rec(1),
        want("SET", "SET ? ?", "0").rec(2),
        want("INCR", "INCR ?", "0").err("ERR").rec(3),
        want("SELECT", "SELECT ?", "0").rec(4),
        want("INCR", "INCR ?", "1").rec(5),
        want("PING", "PING", "1").rec(6),
        want("PING", "PING", "1").rec(6),
        want("PING", "PING", "1").rec(6),
        want("_OTHER", "", "1").err("ERR").rec(7),
    ];
    check_both_sides(&mut w, &mut checks, "inline client", &run, &wants)?;
    check_artifacts(&w, &mut checks);
    w.done(checks)
}

/// (d) A connection opened before the receiver started: its first command on a socket of
/// unknown role is not guessed (an array may be a reply), its reply tells the kernel who is
/// who; from then on spans are exact, without `db.namespace` until a SELECT says it.
#[test]
fn d_connection_opened_before_the_receiver() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("d_before", false)?;
    let steps = vec![
        RedisStep::cmd(&["PING"]),
        RedisStep::cmd(&["GET", "a"]),
        RedisStep::cmd(&["SELECT", "4"]),
        RedisStep::cmd(&["SET", "a", VALUE_CANARY]),
        RedisStep::cmd(&["GET", "a"]),
    ];
    let mut held = rc::redis_py_held(&w.dir, "held", &w.server, &steps)?;
    held.wait_ready(Duration::from_secs(30))?;
    w.start_receiver()?;
    held.go()?;
    let run = integration::clients::finish_plan(held, Duration::from_secs(60))?;
    let full = vec![
        want("GET", "GET ?", "").rec(1),
        want("SELECT", "SELECT ?", "").rec(2),
        want("SET", "SET ? ?", "4").rec(3),
        want("GET", "GET ?", "4").rec(4),
    ];
    let pid = run.pid();
    let client_port = run.local_port()?;
    let server_pid = w.server.pid();
    for (side, filter_pid) in [(Side::Client, pid), (Side::Server, server_pid)] {
        let spans = spans_where(&mut w, side.label(), full.len(), |s| {
            s.pid() == Some(filter_pid)
                && side.matches(s)
                && (side == Side::Client
                    || s.int_attr("network.peer.port") == Some(i64::from(client_port)))
        })?;
        // The PING that told the kernel the roles has no span, or an exact one.
        let spans: Vec<SpanView> = match spans.first() {
            Some(first) if first.name == "PING" => {
                check_sequence(
                    &mut checks,
                    "PING",
                    &spans[..1],
                    &[want("PING", "PING", "")],
                );
                spans[1..].to_vec()
            }
            _ => spans,
        };
        check_sequence(&mut checks, side.label(), &spans, &full);
        check_tcp(&mut checks, side.label(), &spans, w.server.port);
        check_no_canary(&mut checks, &spans);
    }
    w.done(checks)
}

/// (e) 20,000 requests of each of SET and GET from redis-benchmark at full speed, without and
/// with `-P 16`: every request it sends (the server's command counters are the ground truth:
/// SET, GET and the CONFIG GETs it starts with) has its CLIENT span and its SERVER span, the
/// kernel lost nothing, and the run prints its figures.
fn benchmark_run(name: &str, pipeline: u32) -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_receiver(name, false)?;
    let requests: u32 = std::env::var("E2E_LOAD_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    rc::cli(&w.dir, "resetstat", &w.server, &["CONFIG", "RESETSTAT"])?.ensure_success()?;
    let metrics = |w: &World<Redis>| -> Result<Metrics> { w.receiver().metrics() };
    let before = metrics(&w)?;
    let cpu0 = proc_sample(w.receiver().pid())?.cpu_s;
    let since = integration::process::unix_now_ns();
    let bench = rc::benchmark(
        &w.dir,
        "bench",
        &w.server,
        &BenchOptions {
            tests: "set,get".into(),
            requests,
            clients: 2,
            pipeline,
        },
    )?;
    let stats = rc::commandstats(&w.dir, "stats", &w.server)?;
    let calls = |cmd: &str| stats.iter().find(|(c, _)| c == cmd).map_or(0, |(_, n)| *n);
    let truth = [
        ("SET", calls("set")),
        ("GET", calls("get")),
        ("CONFIG GET", calls("config|get")),
    ];
    let total: u64 = truth.iter().map(|(_, n)| n).sum();
    check!(
        checks,
        truth[0].1 == u64::from(requests) && truth[1].1 == u64::from(requests),
        "the server counted {truth:?} for -n {requests}"
    );
    eprintln!(
        "[e2e:{name}] redis-benchmark -P {pipeline}: {:?}; server counted {truth:?}",
        bench.rows
    );
    let bench_pid = bench.pid();
    let server_pid = w.server.pid();
    let names = ["SET", "GET", "CONFIG GET"];
    let counted = |spans: &[&SpanView]| {
        let mut c = [[0usize; 3]; 2];
        for s in spans {
            let side = usize::from(s.is_server());
            if let Some(i) = names.iter().position(|n| *n == s.name) {
                c[side][i] += 1;
            }
        }
        c
    };
    let relevant = |s: &SpanView| {
        is_redis(s)
            && s.start_ns >= since
            && names.contains(&s.name.as_str())
            && ((s.pid() == Some(bench_pid) && s.is_client())
                || (s.pid() == Some(server_pid) && s.is_server()))
    };
    let want_counts: Vec<usize> = truth.iter().map(|(_, n)| *n as usize).collect();
    let result = w.collector.wait_for(
        "every benchmark request's spans",
        Duration::from_secs(90),
        relevant,
        |spans| {
            let c = counted(spans);
            c.iter().all(|side| side.to_vec() == want_counts)
        },
    );
    // Let late duplicates arrive, then count once more.
    std::thread::sleep(Duration::from_millis(500));
    let all = w.collector.spans()?;
    let spans: Vec<&SpanView> = all.iter().filter(|s| relevant(s)).collect();
    let counts = counted(&spans);
    let cpu1 = proc_sample(w.receiver().pid())?.cpu_s;
    let after = metrics(&w)?;
    check!(
        checks,
        result.is_ok() && counts.iter().all(|side| side.to_vec() == want_counts),
        "spans per name (CLIENT, SERVER) {counts:?}, expected {want_counts:?} each ({names:?})\n{}",
        after.family("ebpf_receiver_")
    );
    let errors = spans
        .iter()
        .filter(|s| s.status_code == STATUS_ERROR)
        .count();
    check!(checks, errors == 0, "{errors} benchmark spans are errors");
    let text_ok = spans.iter().all(|s| match s.name.as_str() {
        "SET" => s.str_attr("db.query.text") == Some("SET ? ?"),
        "GET" => s.str_attr("db.query.text") == Some("GET ?"),
        _ => s.str_attr("db.query.text") == Some("CONFIG GET ?"),
    });
    check!(checks, text_ok, "benchmark spans with another query text");
    w.check_no_loss(&mut checks);
    let delta = |key: &str| after.get(key) - before.get(key);
    let invalid = delta("ebpf_receiver_frames_invalid_total{protocol=\"redis\"}");
    let bytes = delta("ebpf_receiver_kernel_bytes_total{stream=\"data\"}");
    let span_count = counts.iter().flatten().sum::<usize>();
    let tool = if pipeline > 1 {
        format!("redis-benchmark-P{pipeline}")
    } else {
        "redis-benchmark".to_string()
    };
    println!(
        "[figures] protocol=redis tool={tool} requests={total} spans={span_count} invalid_frames={invalid} kernel_bytes_per_request={:.1} receiver_cpu_us_per_1000={:.1}{}",
        bytes / total.max(1) as f64,
        (cpu1 - cpu0) / total.max(1) as f64 * 1e6 * 1000.0,
        integration::figures::kernel_per_request(&before, &after, total)
    );
    check!(checks, invalid == 0.0, "{invalid} invalid Redis frames");
    w.done(checks)
}

#[test]
fn e_benchmark_20000_requests_each_have_both_spans() -> Result<()> {
    benchmark_run("e_bench", 1)
}

#[test]
fn f_benchmark_pipelined_20000_requests_each_have_both_spans() -> Result<()> {
    benchmark_run("f_bench_p16", 16)
}
