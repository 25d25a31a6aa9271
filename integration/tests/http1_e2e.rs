//! End-to-end HTTP/1.x: nginx (sendfile on, `/api/` proxied to a Python HTTP/1.1 upstream),
//! real clients (curl, Python `requests`, a raw-socket client, wrk), the stock Collector with a
//! file exporter, and the receiver tracing the whole host. Every exchange is seen up to four
//! times: the client's CLIENT span, nginx's SERVER span, and for `/api/` nginx's CLIENT span to
//! the upstream and the upstream's SERVER span. Spans are told apart by pid and side, and
//! nginx's SERVER spans by the client's source port (`network.peer.port`).
//!
//! Root only: built with `--features e2e` by `cargo xtask test`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use integration::check;
use integration::clients::http::{self, CurlRun, HttpRequest, RawStep, WrkOptions};
use integration::collector::{STATUS_ERROR, STATUS_UNSET, SpanView};
use integration::load::proc_sample;
use integration::receiver::http_get;
use integration::servers::nginx::{self, Nginx, NginxOptions};
use integration::world::{Checks, World, assert_no_secrets_anywhere, summaries};

/// Canaries: each must never appear in any span, attribute or resource.
const TOKEN: &str = "CANARY_TOKEN_5e2c71";
const BEARER: &str = "CANARY_BEARER_7f3a90";
const COOKIE: &str = "CANARY_COOKIE_91bd44";
const BODY: &str = "CANARY_BODY_a0c3f2";
const SECRETS: &[&str] = &[TOKEN, BEARER, COOKIE, BODY];

/// Slack between a span's clock (kernel time mapped to the wall clock) and a client's own
/// wall-clock stamps: the mapping is re-anchored every second and both sides read the same
/// clock, so a few ms cover the scheduling noise of this shared 2-core VM.
const CLOCK_SLACK_NS: i128 = 5_000_000;

fn world(name: &str) -> Result<World<Nginx>> {
    world_with(name, NginxOptions::default())
}

/// The world with the receiver running. nginx keeps its connection to the upstream from the
/// harness's readiness check, and the upstream's thread has been blocked in `recv` on it since
/// before the probes were attached: that one read is never seen (its syscall entry predates
/// the tracepoint), so one proxied request goes through first and is not part of any test.
fn world_with(name: &str, opts: NginxOptions) -> Result<World<Nginx>> {
    let mut w = World::start(name, |d| Nginx::start_with(&d.join("nginx"), &opts))?;
    w.start_receiver()?;
    let (status, _) = http_get(w.server.port, "/api/status/200?e2e-warmup")?;
    ensure!(status == 200, "warm-up request: {status}");
    Ok(w)
}

/// One expected exchange.
#[derive(Clone, Debug)]
struct Ex {
    method: &'static str,
    /// For `_OTHER`: the method sent.
    original: Option<&'static str>,
    path: String,
    query: Option<String>,
    status: i64,
    version: &'static str,
    response_body: Option<i64>,
    request_body: Option<i64>,
}

impl Ex {
    fn new(method: &'static str, target: &str, status: i64) -> Ex {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        Ex {
            method,
            original: None,
            path,
            query,
            status,
            version: "1.1",
            response_body: None,
            request_body: None,
        }
    }
    fn get(target: &str, status: i64) -> Ex {
        Ex::new("GET", target, status)
    }
    fn query(mut self, q: &str) -> Ex {
        self.query = Some(q.to_string());
        self
    }
    fn body(mut self, n: i64) -> Ex {
        self.response_body = Some(n);
        self
    }
    fn sent(mut self, n: i64) -> Ex {
        self.request_body = Some(n);
        self
    }
    fn other(mut self, original: &'static str) -> Ex {
        self.method = "_OTHER";
        self.original = Some(original);
        self
    }
    fn v10(mut self) -> Ex {
        self.version = "1.0";
        self
    }
    fn is_api(&self) -> bool {
        self.path.starts_with("/api/")
    }
}

fn is_http(s: &SpanView) -> bool {
    s.attr("http.request.method").is_some()
}

/// Checks one span against its expected exchange; `client`: the side (error rules differ).
fn check_span(s: &SpanView, e: &Ex, client: bool) -> Result<()> {
    let name = if e.method == "_OTHER" {
        "HTTP"
    } else {
        e.method
    };
    let what = s.summary();
    ensure!(
        s.name == name,
        "span name {:?}, expected {name:?}: {what}",
        s.name
    );
    ensure!(
        s.str_attr("http.request.method") == Some(e.method),
        "http.request.method: {what}"
    );
    ensure!(
        s.str_attr("http.request.method_original") == e.original,
        "http.request.method_original: {what}"
    );
    ensure!(
        s.str_attr("url.path") == Some(e.path.as_str()),
        "url.path: {what}"
    );
    ensure!(
        s.str_attr("url.query") == e.query.as_deref(),
        "url.query should be {:?}: {what}",
        e.query
    );
    ensure!(
        s.str_attr("url.scheme") == Some("http"),
        "url.scheme: {what}"
    );
    ensure!(
        s.int_attr("http.response.status_code") == Some(e.status),
        "status {}: {what}",
        e.status
    );
    ensure!(
        s.str_attr("network.protocol.version") == Some(e.version),
        "network.protocol.version {}: {what}",
        e.version
    );
    ensure!(
        s.str_attr("server.address").is_some() && s.int_attr("server.port").is_some(),
        "server.address/port: {what}"
    );
    ensure!(
        s.str_attr("network.peer.address") == Some("127.0.0.1")
            && s.int_attr("network.peer.port").is_some(),
        "network.peer.*: {what}"
    );
    if let Some(n) = e.response_body {
        ensure!(
            s.int_attr("http.response.body.size") == Some(n),
            "http.response.body.size {n}: {what}"
        );
    }
    if let Some(n) = e.request_body {
        ensure!(
            s.int_attr("http.request.body.size") == Some(n),
            "http.request.body.size {n}: {what}"
        );
    }
    let error = if client {
        e.status >= 400
    } else {
        e.status >= 500
    };
    if error {
        let code = e.status.to_string();
        ensure!(
            s.status_code == STATUS_ERROR && s.str_attr("error.type") == Some(code.as_str()),
            "expected an error with error.type={code}: {what}"
        );
    } else {
        ensure!(
            s.status_code == STATUS_UNSET && s.attr("error.type").is_none(),
            "expected no error: {what}"
        );
    }
    ensure!(
        client == s.attr("user_agent.original").is_none(),
        "user_agent.original only on SERVER spans: {what}"
    );
    ensure!(s.end_ns >= s.start_ns, "ends before it starts: {what}");
    assert_no_secrets_anywhere(s, SECRETS)
}

/// `spans` (sorted by start) are exactly `expected`, in order.
fn check_sequence(
    checks: &mut Checks,
    label: &str,
    spans: &[SpanView],
    expected: &[Ex],
    client: bool,
) {
    let refs: Vec<&SpanView> = spans.iter().collect();
    if spans.len() != expected.len() {
        checks.fail(format!(
            "{label}: {} spans for {} requests:\n{}",
            spans.len(),
            expected.len(),
            summaries(&refs)
        ));
        return;
    }
    for (s, e) in spans.iter().zip(expected) {
        checks.add(check_span(s, e, client).with_context(|| label.to_string()));
    }
}

/// `inner` lies within `outer` (± the clock slack): a server span inside its client span.
fn nested(inner: &SpanView, outer: &SpanView) -> bool {
    i128::from(inner.start_ns) >= i128::from(outer.start_ns) - CLOCK_SLACK_NS
        && i128::from(inner.end_ns) <= i128::from(outer.end_ns) + CLOCK_SLACK_NS
}

fn sorted(mut v: Vec<SpanView>) -> Vec<SpanView> {
    v.sort_by_key(|s| s.start_ns);
    v
}

/// Waits until at least `n` HTTP spans pass `relevant`; returns them sorted by start.
fn wait_n(
    w: &mut World<Nginx>,
    what: &str,
    n: usize,
    relevant: impl Fn(&SpanView) -> bool,
) -> Result<Vec<SpanView>> {
    let spans = w.wait_spans(what, |s| is_http(s) && relevant(s), |s| s.len() >= n)?;
    Ok(sorted(spans))
}

/// The spans of the four traced sides of a group of requests made by one client process over
/// one connection (`client_port`).
struct Sides {
    client: Vec<SpanView>,
    nginx_server: Vec<SpanView>,
    nginx_client: Vec<SpanView>,
    upstream_server: Vec<SpanView>,
}

/// Collects (after waiting for) the spans of `expected` made by `client_pid` from
/// `client_ports`, between `since` and `until` (wall clock, for nginx's upstream side).
fn sides(
    w: &mut World<Nginx>,
    label: &str,
    client_pid: u32,
    client_ports: &[u16],
    window: (u64, u64),
    expected: &[Ex],
) -> Result<Sides> {
    let nginx_pid = w.server.pid();
    let upstream_pid = w.server.upstream_pid();
    let n = expected.len();
    let api = expected.iter().filter(|e| e.is_api()).count();
    let ports: Vec<i64> = client_ports.iter().map(|&p| i64::from(p)).collect();
    // A span of this client starts after the client was spawned (no slack: the previous
    // group's last spans end within a few ms of it).
    let in_window = move |s: &SpanView| {
        s.str_attr("url.query") != Some("e2e-warmup")
            && s.start_ns >= window.0
            && i128::from(s.end_ns) <= i128::from(window.1) + CLOCK_SLACK_NS
    };
    let client = wait_n(w, &format!("{label}: CLIENT spans"), n, |s| {
        s.is_client() && s.pid() == Some(client_pid)
    })?;
    let nginx_server = wait_n(w, &format!("{label}: nginx SERVER spans"), n, |s| {
        s.is_server()
            && s.pid() == Some(nginx_pid)
            && s.int_attr("network.peer.port")
                .is_some_and(|p| ports.contains(&p))
    })?;
    let nginx_client = wait_n(
        w,
        &format!("{label}: nginx → upstream CLIENT spans"),
        api,
        |s| s.is_client() && s.pid() == Some(nginx_pid) && in_window(s),
    )?;
    let upstream_server = wait_n(w, &format!("{label}: upstream SERVER spans"), api, |s| {
        s.is_server() && s.pid() == Some(upstream_pid) && in_window(s)
    })?;
    Ok(Sides {
        client,
        nginx_server,
        nginx_client,
        upstream_server,
    })
}

/// Every side has exactly its spans in order; each nginx SERVER span lies in its CLIENT span,
/// each proxied exchange in nginx's SERVER span.
fn check_sides(checks: &mut Checks, label: &str, s: &Sides, expected: &[Ex]) {
    check_sequence(
        checks,
        &format!("{label} CLIENT"),
        &s.client,
        expected,
        true,
    );
    check_sequence(
        checks,
        &format!("{label} nginx SERVER"),
        &s.nginx_server,
        expected,
        false,
    );
    let api: Vec<Ex> = expected
        .iter()
        .filter(|e| e.is_api())
        .cloned()
        .map(|mut e| {
            // nginx speaks HTTP/1.1 to the upstream whatever the client spoke.
            e.version = "1.1";
            e
        })
        .collect();
    check_sequence(
        checks,
        &format!("{label} nginx→upstream CLIENT"),
        &s.nginx_client,
        &api,
        true,
    );
    check_sequence(
        checks,
        &format!("{label} upstream SERVER"),
        &s.upstream_server,
        &api,
        false,
    );
    for (c, sv) in s.client.iter().zip(&s.nginx_server) {
        check!(
            checks,
            nested(sv, c),
            "{label}: nginx's SERVER span is not inside the client's:\n  {}\n  {}",
            c.summary(),
            sv.summary()
        );
    }
    let proxied: Vec<&SpanView> = s
        .nginx_server
        .iter()
        .zip(expected)
        .filter(|(_, e)| e.is_api())
        .map(|(s, _)| s)
        .collect();
    for ((outer, mid), inner) in proxied.iter().zip(&s.nginx_client).zip(&s.upstream_server) {
        check!(
            checks,
            nested(mid, outer) && nested(inner, mid),
            "{label}: proxied spans not nested:\n  {}\n  {}\n  {}",
            outer.summary(),
            mid.summary(),
            inner.summary()
        );
    }
}

/// Each CLIENT span lies inside the client's own measurement of its request.
fn check_client_times(checks: &mut Checks, label: &str, spans: &[SpanView], times: &[(u64, u64)]) {
    for (s, &(start, end)) in spans.iter().zip(times) {
        check!(
            checks,
            i128::from(s.start_ns) >= i128::from(start) - CLOCK_SLACK_NS
                && i128::from(s.end_ns) <= i128::from(end) + CLOCK_SLACK_NS,
            "{label}: span [{}, {}] outside the client's own [{start}, {end}]: {}",
            s.start_ns,
            s.end_ns,
            s.summary()
        );
    }
}

fn curl_ports(c: &CurlRun) -> Vec<u16> {
    let mut p: Vec<u16> = c.transfers.iter().map(|t| t.local_port).collect();
    p.dedup();
    p
}

fn window(c: &CurlRun) -> (u64, u64) {
    (c.run.start_unix_ns, c.run.end_unix_ns)
}

/// (1) A scripted workload: curl on one kept-alive connection (static, query canary, 404, 500,
/// 204, chunked), HEAD and a conditional GET (304), Python `requests` (headers canaries, a
/// POST body, a slow response), and a raw socket (pipelining, `Expect: 100-continue`, an
/// unknown method, a request split over two writes, HTTP/1.0 answered until the close).
#[test]
fn a_scripted_workload_gives_one_exact_span_per_request_and_side() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("http_scripted")?;
    let dir = w.dir.clone();
    let auth = [
        "-H".to_string(),
        format!("Authorization: Bearer {BEARER}"),
        "-H".to_string(),
        format!("Cookie: sid={COOKIE}"),
    ];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();

    // --- curl, one connection ---
    let small = nginx::SMALL.size as i64;
    let keepalive_targets = [
        format!("{}?token={TOKEN}&page=2", nginx::SMALL.path),
        "/static/missing.txt".to_string(),
        "/api/status/500".to_string(),
        "/api/status/204".to_string(),
        "/api/chunked?chunks=5&size=100".to_string(),
        "/api/status/404".to_string(),
    ];
    let urls: Vec<String> = keepalive_targets.iter().map(|t| w.server.url(t)).collect();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let c1 = http::curl(&dir, "curl_keepalive", &auth, &url_refs)?;
    let codes: Vec<u16> = c1.transfers.iter().map(|t| t.http_code).collect();
    ensure!(
        codes == [200, 404, 500, 204, 200, 404],
        "curl statuses {codes:?}"
    );
    ensure!(
        curl_ports(&c1).len() == 1,
        "curl should keep one connection: {:?}",
        curl_ports(&c1)
    );
    let ex1 = vec![
        Ex::get(nginx::SMALL.path, 200)
            .query("token=REDACTED&page=2")
            .body(small),
        Ex::get("/static/missing.txt", 404),
        Ex::get("/api/status/500", 500).body(16),
        Ex::get("/api/status/204", 204),
        Ex::get("/api/chunked?chunks=5&size=100", 200).body(500),
        Ex::get("/api/status/404", 404).body(16),
    ];

    // --- HEAD, then a conditional GET with the Last-Modified it returned ---
    let head = http::curl(
        &dir,
        "curl_head",
        &["-I"],
        &[&w.server.url(nginx::SMALL.path)],
    )?;
    let head_text = std::fs::read_to_string(&head.transfers[0].body_path)?;
    let last_modified = head_text
        .lines()
        .find_map(|l| l.strip_prefix("Last-Modified: "))
        .context("HEAD response without Last-Modified")?
        .trim()
        .to_string();
    let ims = format!("If-Modified-Since: {last_modified}");
    let cond = http::curl(
        &dir,
        "curl_304",
        &["-H", &ims],
        &[&w.server.url(nginx::SMALL.path)],
    )?;
    ensure!(
        head.transfers[0].http_code == 200 && cond.transfers[0].http_code == 304,
        "HEAD {} / conditional GET {}",
        head.transfers[0].http_code,
        cond.transfers[0].http_code
    );

    // --- Python requests, one session ---
    let echo_body = format!("{{\"password\": \"{BODY}\"}}");
    let reqs = http::python_requests(
        &dir,
        "requests",
        &[
            HttpRequest::get(
                &w.server
                    .url(&format!("/api/headers?api_key={TOKEN}&page=2")),
            )
            .header("Authorization", &format!("Basic {BEARER}"))
            .header("Cookie", &format!("s={COOKIE}")),
            HttpRequest::new("POST", &w.server.url("/api/echo")).body(&echo_body),
            HttpRequest::get(&w.server.url("/api/slow?ms=150")),
        ],
        true,
    )?;
    let rq = reqs.of_kind("request");
    ensure!(
        rq.len() == 3 && rq.iter().all(|r| r.ok()),
        "requests: {:?}",
        reqs.records
    );
    let rq_ports: Vec<u16> = rq
        .iter()
        .filter_map(|r| r.u64("local_port"))
        .map(|p| p as u16)
        .collect();

    // --- raw socket ---
    let host = "Host: 127.0.0.1\r\nUser-Agent: e2e-raw\r\n";
    let pipelined = format!(
        "GET /api/status/201 HTTP/1.1\r\n{host}\r\nGET {} HTTP/1.1\r\n{host}\r\nHEAD /api/bytes?n=10 HTTP/1.1\r\n{host}\r\n",
        nginx::SMALL.path
    );
    let raw = http::raw(
        &dir,
        "raw",
        w.server.port,
        &[
            RawStep::Send {
                data: pipelined,
                responses: 3,
            },
            RawStep::ExpectContinue {
                head: format!(
                    "POST /api/echo HTTP/1.1\r\n{host}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
                ),
                body: "12345".into(),
                wait_ms: 2000,
            },
            RawStep::Send {
                data: format!("FOO {} HTTP/1.1\r\n{host}\r\n", nginx::SMALL.path),
                responses: 1,
            },
            RawStep::SendParts {
                parts: vec![
                    "GET /api/sta".into(),
                    format!("tus/202 HTTP/1.1\r\n{host}\r\n"),
                ],
                delay_ms: 50,
                responses: 1,
            },
            RawStep::Send {
                data: format!("GET /api/chunked?chunks=3&size=10 HTTP/1.0\r\n{host}\r\n"),
                responses: 1,
            },
        ],
    )?;
    let rr = raw.of_kind("response");
    let statuses: Vec<Option<u64>> = rr.iter().map(|r| r.u64("status")).collect();
    ensure!(
        statuses
            == [
                Some(201),
                Some(200),
                Some(200),
                Some(200),
                Some(405),
                Some(202),
                Some(200)
            ],
        "raw statuses {statuses:?}: {:?}",
        raw.records
    );
    ensure!(
        rr[3].get("interim") == Some(&serde_json::json!([100])),
        "no 100 Continue: {:?}",
        rr[3]
    );
    let raw_port = raw
        .connected
        .as_ref()
        .and_then(|c| c.u64("local_port"))
        .context("raw client port")? as u16;

    // --- the spans ---
    let s1 = sides(
        &mut w,
        "curl keep-alive",
        c1.pid(),
        &curl_ports(&c1),
        window(&c1),
        &ex1,
    )?;
    check_sides(&mut checks, "curl keep-alive", &s1, &ex1);
    let trans: Vec<(u64, u64)> = vec![(c1.run.start_unix_ns, c1.run.end_unix_ns); ex1.len()];
    check_client_times(&mut checks, "curl keep-alive", &s1.client, &trans);

    let ex_head = vec![Ex::new("HEAD", nginx::SMALL.path, 200)];
    let s2 = sides(
        &mut w,
        "curl HEAD",
        head.pid(),
        &curl_ports(&head),
        window(&head),
        &ex_head,
    )?;
    check_sides(&mut checks, "curl HEAD", &s2, &ex_head);
    check!(
        checks,
        s2.client
            .iter()
            .chain(&s2.nginx_server)
            .all(|s| s.attr("http.response.body.size").is_none()),
        "a HEAD response has no body:\n{}",
        summaries(&s2.client.iter().chain(&s2.nginx_server).collect::<Vec<_>>())
    );
    let ex_304 = vec![Ex::get(nginx::SMALL.path, 304)];
    let s3 = sides(
        &mut w,
        "curl 304",
        cond.pid(),
        &curl_ports(&cond),
        window(&cond),
        &ex_304,
    )?;
    check_sides(&mut checks, "curl 304", &s3, &ex_304);

    let ex_req = vec![
        Ex::get("/api/headers", 200).query("api_key=REDACTED&page=2"),
        Ex::new("POST", "/api/echo", 200)
            .sent(echo_body.len() as i64)
            .body(echo_body.len() as i64),
        Ex::get("/api/slow?ms=150", 200),
    ];
    let req_window = (reqs.run.start_unix_ns, reqs.run.end_unix_ns);
    let s4 = sides(
        &mut w,
        "requests",
        reqs.pid(),
        &rq_ports,
        req_window,
        &ex_req,
    )?;
    check_sides(&mut checks, "requests", &s4, &ex_req);
    let rq_times: Vec<(u64, u64)> = rq
        .iter()
        .map(|r| {
            (
                r.start_unix_ns().unwrap_or(0),
                r.end_unix_ns().unwrap_or(u64::MAX),
            )
        })
        .collect();
    check_client_times(&mut checks, "requests", &s4.client, &rq_times);
    // The slow response: the span's duration is the client's, to within the slack.
    if let (Some(span), Some(own)) = (s4.client.get(2), rq[2].duration_ns()) {
        check!(
            checks,
            span.duration_ns() >= 150_000_000
                && span.duration_ns() <= i128::from(own) + CLOCK_SLACK_NS,
            "slow request: span {} ns, client {own} ns",
            span.duration_ns()
        );
    }

    let ex_raw = vec![
        Ex::get("/api/status/201", 201).body(16),
        Ex::get(nginx::SMALL.path, 200).body(small),
        Ex::new("HEAD", "/api/bytes?n=10", 200),
        Ex::new("POST", "/api/echo", 200).sent(5).body(5),
        Ex::new("FOO", nginx::SMALL.path, 405).other("FOO"),
        Ex::get("/api/status/202", 202).body(16),
        Ex::get("/api/chunked?chunks=3&size=10", 200).v10(),
    ];
    let raw_window = (raw.run.start_unix_ns, raw.run.end_unix_ns);
    let s5 = sides(&mut w, "raw", raw.pid(), &[raw_port], raw_window, &ex_raw)?;
    check_sides(&mut checks, "raw", &s5, &ex_raw);
    let raw_times: Vec<(u64, u64)> = rr
        .iter()
        .map(|r| {
            (
                r.start_unix_ns().unwrap_or(0),
                r.end_unix_ns().unwrap_or(u64::MAX),
            )
        })
        .collect();
    check_client_times(&mut checks, "raw", &s5.client, &raw_times);
    // Pipelined requests all start in the one write; their responses end in order.
    if s5.client.len() >= 3 {
        let p = &s5.client[..3];
        check!(
            checks,
            p[0].end_ns <= p[1].end_ns && p[1].end_ns <= p[2].end_ns,
            "pipelined responses out of order:\n{}",
            summaries(&p.iter().collect::<Vec<_>>())
        );
    }

    // Nothing more arrives (no duplicates), and no canary anywhere in the Collector's output.
    let all_groups: [(&str, u32, usize); 5] = [
        ("curl keep-alive", c1.pid(), ex1.len()),
        ("curl HEAD", head.pid(), 1),
        ("curl 304", cond.pid(), 1),
        ("requests", reqs.pid(), ex_req.len()),
        ("raw", raw.pid(), ex_raw.len()),
    ];
    let settled = w.settled_spans(Duration::from_millis(1500), is_http)?;
    for (label, pid, n) in all_groups {
        let got = settled
            .iter()
            .filter(|s| s.is_client() && s.pid() == Some(pid))
            .count();
        check!(
            checks,
            got == n,
            "{label}: {got} CLIENT spans after settling, expected {n}"
        );
    }
    let nginx_pid = w.server.pid();
    let served: usize = settled
        .iter()
        .filter(|s| {
            s.is_server()
                && s.pid() == Some(nginx_pid)
                && s.str_attr("url.query") != Some("e2e-warmup")
        })
        .count();
    let total: usize = all_groups.iter().map(|g| g.2).sum();
    check!(
        checks,
        served == total,
        "nginx SERVER spans {served}, requests {total}"
    );
    let raw_out = std::fs::read_to_string(w.dir.join("spans.jsonl")).unwrap_or_default();
    check!(
        checks,
        !raw_out.is_empty(),
        "no Collector output at {}",
        w.dir.join("spans.jsonl").display()
    );
    for secret in SECRETS {
        check!(
            checks,
            !raw_out.contains(secret),
            "{secret} in the Collector's output"
        );
    }
    check!(
        checks,
        raw_out.contains("page=2"),
        "page=2 missing from the Collector's output"
    );
    let m = w.receiver().metrics()?;
    // Nor in the receiver's log or self-metrics.
    let log = std::fs::read_to_string(w.dir.join("receiver.log")).unwrap_or_default();
    let metrics_text = m.family("");
    for secret in SECRETS {
        check!(
            checks,
            !log.contains(secret) && !metrics_text.contains(secret),
            "{secret} in the receiver's log or metrics"
        );
    }
    check!(
        checks,
        m.get("ebpf_receiver_frames_invalid_total{protocol=\"http1\"}") == 0.0,
        "invalid HTTP frames:\n{}",
        m.family("ebpf_receiver_")
    );
    w.check_no_loss(&mut checks);
    w.done(checks)
}

/// (1b) The sendfile path: an 8 MiB static file sent at 6 MiB/s. nginx sends the body with
/// `sendfile` (length-only events, one per call as the rate allows), so only the pipeline's
/// last-byte logic can end its SERVER span; both spans must match curl's own time. The rate
/// limit is nginx's (`limit_rate`): curl 7.88's `--limit-rate` let this transfer finish in
/// 25 ms on this machine.
#[test]
fn b_a_rate_limited_sendfile_download_ends_at_its_last_byte() -> Result<()> {
    let mut checks = Checks::default();
    let root = nginx::static_root()?;
    let opts = NginxOptions {
        server_directives: format!(
            "        location /slow/ {{\n            alias {}/static/;\n            limit_rate 6m;\n        }}\n",
            root.display()
        ),
        ..NginxOptions::default()
    };
    let mut w = world_with("http_sendfile", opts)?;
    let dir = w.dir.clone();
    let path = nginx::LARGE.path.replacen("/static/", "/slow/", 1);
    let url = w.server.url(&path);
    let c = http::curl(&dir, "curl_large", &[], &[&url])?;
    let t = &c.transfers[0];
    ensure!(
        t.http_code == 200 && t.size_download == nginx::LARGE.size,
        "curl: {t:?}"
    );
    let own = t.time_total.as_nanos() as i128;
    check!(
        checks,
        own >= 700_000_000,
        "the transfer should take about a second: {own} ns"
    );
    let ex = vec![Ex::get(&path, 200).body(nginx::LARGE.size as i64)];
    let s = sides(&mut w, "large", c.pid(), &curl_ports(&c), window(&c), &ex)?;
    check_sides(&mut checks, "large", &s, &ex);
    let log = w
        .server
        .wait_access_log(|l| l.iter().any(|e| e.uri == path))?;
    let entry = log
        .iter()
        .find(|e| e.uri == path)
        .context("no access log line")?;
    let nginx_own = (entry.request_time * 1e9) as i128;
    if let (Some(client), Some(server)) = (s.client.first(), s.nginx_server.first()) {
        eprintln!(
            "[e2e:http_sendfile] curl time_total {:.1} ms, CLIENT span {:.1} ms, nginx SERVER span {:.1} ms, nginx $request_time {:.1} ms",
            own as f64 / 1e6,
            client.duration_ns() as f64 / 1e6,
            server.duration_ns() as f64 / 1e6,
            nginx_own as f64 / 1e6
        );
        // The transfer takes about a second: the spans must be that long, not the few ms a
        // tracer that stops at the head would report.
        let tolerance = 50_000_000 + own / 20;
        check!(
            checks,
            (client.duration_ns() - own).abs() <= tolerance,
            "CLIENT span {} ns vs curl {own} ns",
            client.duration_ns()
        );
        check!(
            checks,
            (server.duration_ns() - own).abs() <= tolerance,
            "nginx SERVER span {} ns vs curl {own} ns (sendfile end not followed?)",
            server.duration_ns()
        );
        // nginx's own measurement has ms resolution.
        check!(
            checks,
            (server.duration_ns() - nginx_own).abs() <= 20_000_000,
            "nginx SERVER span {} ns vs nginx's $request_time {nginx_own} ns",
            server.duration_ns()
        );
    }
    // Kernel counters are published once a second.
    let uncaptured = "ebpf_receiver_kernel_bytes_total{stream=\"uncaptured\"}";
    let m = integration::process::poll_until(
        "the kernel counters",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let m = w.receiver().metrics()?;
            Ok((m.get(uncaptured) >= nginx::LARGE.size as f64).then_some(m))
        },
    )
    .or_else(|_| w.receiver().metrics())?;
    check!(
        checks,
        m.get("ebpf_receiver_stream_bytes_lost_total{protocol=\"http1\"}") == 0.0
            && m.get(uncaptured) >= nginx::LARGE.size as f64,
        "the body should leave by sendfile and lose nothing:\n{}",
        m.family("ebpf_receiver_")
    );
    w.check_no_loss(&mut checks);
    w.done(checks)
}

/// (2) 20,000 requests from wrk on kept-alive connections against a small static file: every
/// request has nginx's SERVER span and wrk's CLIENT span, nothing is lost in the kernel.
#[test]
fn c_twenty_thousand_wrk_requests_lose_nothing() -> Result<()> {
    let mut checks = Checks::default();
    let count: u64 = std::env::var("E2E_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut w = world("http_load")?;
    let dir = w.dir.clone();
    let receiver_pid = w.receiver().pid();
    let nginx_pid = w.server.pid();
    // Kernel counters are published once a second: let the warm-up's be in `before`.
    std::thread::sleep(Duration::from_millis(1200));
    let before = w.receiver().metrics()?;
    let cpu_before = proc_sample(receiver_pid)?.cpu_s;
    let log_before = w.server.access_log()?.len();
    let connections = 4u32;
    let run = http::wrk(
        &dir,
        "wrk",
        &w.server.url(nginx::SMALL.path),
        &WrkOptions {
            threads: 1,
            connections,
            duration: Duration::from_secs(60),
            max_requests_per_thread: Some(count),
            ..WrkOptions::default()
        },
    )?;
    ensure!(
        run.status_errors == 0 && run.socket_errors == 0,
        "wrk errors: {} status, {} socket",
        run.status_errors,
        run.socket_errors
    );
    let wrk_pid = run.run.pid;
    let since = run.run.start_unix_ns;
    // nginx logs every request it answered, including the few wrk abandoned in flight.
    let log = w
        .server
        .wait_access_log(|l| l.len() >= log_before + run.requests as usize)?;
    let served = log.len() - log_before;
    eprintln!(
        "[e2e:http_load] wrk: {} requests in {:.2} s ({:.0}/s); nginx access log: {served}",
        run.requests,
        run.duration.as_secs_f64(),
        run.requests_per_sec
    );
    let is_load = |s: &SpanView| {
        is_http(s) && s.start_ns >= since && s.str_attr("url.path") == Some(nginx::SMALL.path)
    };
    let counts = |spans: &[&SpanView]| {
        let c = spans
            .iter()
            .filter(|s| s.is_client() && s.pid() == Some(wrk_pid))
            .count();
        let s = spans
            .iter()
            .filter(|s| s.is_server() && s.pid() == Some(nginx_pid))
            .count();
        (c, s)
    };
    let _ = w.wait_spans("the load spans", is_load, |s| {
        let (c, sv) = counts(s);
        c >= run.requests as usize && sv >= served
    });
    let spans = w.settled_spans(Duration::from_millis(1000), is_load)?;
    let refs: Vec<&SpanView> = spans.iter().collect();
    let (client, server) = counts(&refs);
    let cpu = proc_sample(receiver_pid)?.cpu_s - cpu_before;
    let m = w.receiver().metrics()?;
    let delta = |k: &str| m.get(k) - before.get(k);
    let kernel_bytes = delta("ebpf_receiver_kernel_bytes_total{stream=\"data\"}");
    let invalid = delta("ebpf_receiver_frames_invalid_total{protocol=\"http1\"}");
    let requests = run.requests;
    eprintln!("[e2e:http_load] CLIENT spans (wrk) {client}, SERVER spans (nginx) {server}");
    println!(
        "[figures] protocol=http1 tool=wrk requests={requests} spans={} invalid_frames={invalid:.0} kernel_bytes_per_request={:.1} receiver_cpu_us_per_1000={:.1}{}",
        client + server,
        kernel_bytes / requests.max(1) as f64,
        cpu * 1e6 / requests.max(1) as f64 * 1000.0,
        integration::figures::kernel_per_request(&before, &m, requests as u64)
    );
    check!(
        checks,
        requests >= count,
        "wrk completed {requests} of {count} requests"
    );
    check!(
        checks,
        client == requests as usize,
        "{client} CLIENT spans on wrk for {requests} requests it completed"
    );
    check!(
        checks,
        server == served,
        "{server} SERVER spans on nginx for {served} requests in its access log"
    );
    // wrk abandons at most one request in flight per other connection when it stops.
    check!(
        checks,
        served >= requests as usize && served <= requests as usize + connections as usize,
        "nginx served {served}, wrk completed {requests}"
    );
    check!(checks, invalid == 0.0, "{invalid} invalid HTTP frames");
    let bad: Vec<&SpanView> = refs
        .iter()
        .copied()
        .filter(|s| s.name != "GET" || s.int_attr("http.response.status_code") != Some(200))
        .take(5)
        .collect();
    check!(
        checks,
        bad.is_empty(),
        "unexpected load spans:\n{}",
        summaries(&bad)
    );
    let mut per_conn: BTreeMap<i64, usize> = BTreeMap::new();
    for s in refs.iter().filter(|s| s.is_server()) {
        *per_conn
            .entry(s.int_attr("network.peer.port").unwrap_or(0))
            .or_default() += 1;
    }
    check!(
        checks,
        per_conn.len() == connections as usize,
        "nginx SERVER spans per wrk connection: {per_conn:?}"
    );
    w.check_no_loss(&mut checks);
    w.done(checks)
}
