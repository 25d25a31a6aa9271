//! Smoke tests of the harness itself, without the receiver: every server starts in its scratch
//! dir, answers its real clients (each driver's ground truth is checked against what the server
//! saw), and stops without leaving a process behind. A failure here is about the harness (or
//! the machine), not the receiver.
//!
//! Root only (PostgreSQL runs as `postgres`, dnsmasq binds port 53, the resolver namespace
//! needs CAP_SYS_ADMIN): built with `--features e2e` by `cargo xtask test`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use integration::check;
use integration::clients::dns::{self, DigOptions, Family};
use integration::clients::http::{self, HttpRequest, RawStep, WrkOptions};
use integration::clients::postgres::{self as pgc, PgStep, PgbenchOptions, QueryMode};
use integration::clients::redis::{self as rc, BenchOptions, RedisStep, RedisVia};
use integration::clients::{self, RunningClient};
use integration::paths;
use integration::process::{cmdline, group_members, is_root, wait_gone};
use integration::servers::Server;
use integration::servers::dnsmasq::{self, Dnsmasq};
use integration::servers::nginx::{self, Nginx};
use integration::servers::postgres::{self, PgOptions, Postgres};
use integration::servers::redis::{self, Redis, RedisOptions};
use integration::world::{Checks, World};
use serde_json::json;

/// A scratch dir removed when the test passed.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Result<Scratch> {
        assert!(is_root(), "run through `cargo xtask test` (root)");
        let dir = paths::scratch_dir(name)?;
        eprintln!("[harness:{name}] scratch dir {}", dir.display());
        Ok(Scratch { dir })
    }

    fn finish(self, checks: Checks) -> Result<()> {
        let r = checks.finish();
        if r.is_ok() {
            paths::remove_scratch_dir(&self.dir);
        } else {
            eprintln!("[harness] artefacts kept in {}", self.dir.display());
        }
        r
    }
}

/// Stops `server` and checks that every process it had (pids and process-group members) is
/// gone.
fn stop_and_check_gone(checks: &mut Checks, mut server: impl Server, extra: &[u32]) {
    let label = server.label();
    let mut pids = server.pids();
    pids.extend_from_slice(extra);
    for p in pids.clone() {
        pids.extend(group_members(p));
    }
    pids.sort_unstable();
    pids.dedup();
    check!(checks, !pids.is_empty(), "{label}: no pids before stop");
    server.stop();
    checks.add(
        wait_gone(
            &format!("{label} to leave nothing behind"),
            &pids,
            Duration::from_secs(10),
        )
        .map_err(|e| e.context(format!("pids before stop: {pids:?}"))),
    );
}

#[test]
fn postgres_starts_answers_psql_psycopg_pgbench_and_stops_clean() -> Result<()> {
    let s = Scratch::new("h_pg")?;
    let mut checks = Checks::default();
    let pg = Postgres::start_with(
        &s.dir.join("pg"),
        &PgOptions {
            log_statements: true,
            ..PgOptions::default()
        },
    )?;
    eprintln!("[harness:h_pg] postgres {} on port {}", pg.version, pg.port);
    let dir = &s.dir;

    // psql over TCP (SCRAM, SSLRequest answered N) and the socket.
    let r = pgc::psql(dir, "psql_tcp", &pg, "SELECT 1")?;
    check!(
        checks,
        r.success() && r.stdout.trim() == "1",
        "psql TCP: {r:?}"
    );
    let mut c = pg.psql_socket();
    c.args(["-At", "-c", "SELECT name FROM t1 WHERE id = 2"]);
    let r = clients::run(dir, "psql_sock", c)?;
    check!(checks, r.stdout.trim() == "bob", "psql socket: {r:?}");
    // A wrong password is refused (the SCRAM exchange is real).
    let mut c = pg.psql_as(postgres::USER, "not-the-password");
    c.args(["-At", "-c", "SELECT 1"]);
    let r = clients::run(dir, "psql_badpw", c)?;
    check!(
        checks,
        !r.success() && r.stderr.contains("password authentication failed"),
        "wrong password should fail: {r:?}"
    );
    // The cleartext-password user.
    let mut c = pg.psql_as(postgres::CLEARTEXT_USER, postgres::CLEARTEXT_PASSWORD);
    c.args(["-At", "-c", "SELECT current_user"]);
    let r = clients::run(dir, "psql_clear", c)?;
    check!(
        checks,
        r.stdout.trim() == postgres::CLEARTEXT_USER,
        "cleartext user: {r:?}"
    );
    // No TLS: sslmode=require must fail (so prefer continues in plaintext).
    let mut c = pg.psql();
    c.env("PGSSLMODE", "require")
        .args(["-At", "-c", "SELECT 1"]);
    let r = clients::run(dir, "psql_sslreq", c)?;
    check!(
        checks,
        !r.success() && r.stderr.contains("does not support SSL"),
        "sslmode=require should be refused: {r:?}"
    );

    // psycopg held after connecting: its backend is a child of the postmaster, found by port.
    let steps = [
        PgStep::prepared("SELECT name FROM t1 WHERE id = %s", vec![json!(1)]),
        PgStep::prepared("SELECT name FROM t1 WHERE id = %s", vec![json!(3)]),
        PgStep::simple("SELEC 1"),
        PgStep::extended("SELECT score FROM t1 WHERE name = %s", vec![json!("bob")]),
        PgStep::client_side("SELECT id FROM t1 WHERE name = %s", vec![json!("carol")]),
        PgStep::Pipeline(vec![
            PgStep::extended("SELECT 1", vec![]),
            PgStep::extended("SELECT 2", vec![]),
        ]),
    ];
    let mut held: RunningClient = pgc::psycopg_held(dir, "psycopg", &pg, &steps)?;
    held.wait_ready(Duration::from_secs(30))?;
    let connected = clients::parse_records(&std::fs::read_to_string(dir.join("psycopg.out"))?)?;
    let backend = connected
        .first()
        .and_then(|c| c.u64("backend_pid"))
        .context("psycopg connected line")? as u32;
    let local_port = connected[0].u64("local_port").unwrap_or(0) as u16;
    let by_port = pg.backend_for_client_port(local_port);
    check!(
        checks,
        by_port.as_ref().ok() == Some(&backend),
        "backend by client port {local_port}: {by_port:?}, psycopg says {backend}; backends {:?}",
        pg.backends()
    );
    check!(
        checks,
        pg.postmaster_children().contains(&backend),
        "backend {backend} is not a child of the postmaster {}",
        pg.pid()
    );
    held.go()?;
    let run = clients::finish_plan(held, Duration::from_secs(60))?;
    let q = run.of_kind("query");
    check!(checks, q.len() == 7, "psycopg records: {:?}", run.records);
    if q.len() == 7 {
        check!(
            checks,
            q[0].ok() && q[1].ok() && q[3].ok() && q[4].ok() && q[5].ok() && q[6].ok(),
            "psycopg steps should succeed: {q:?}"
        );
        check!(
            checks,
            !q[2].ok() && q[2].str("sqlstate") == Some("42601"),
            "SELEC 1 should be a syntax error: {:?}",
            q[2]
        );
        check!(
            checks,
            q.iter()
                .all(|r| r.start_unix_ns() <= r.end_unix_ns()
                    && r.duration_ns().is_some_and(|d| d > 0)),
            "times: {q:?}"
        );
    }
    // The server's statement log shows the named prepared statement executing twice.
    let logged = pg.logged_statements()?;
    let executes = logged
        .iter()
        .filter(|(pid, m)| *pid == backend && m.starts_with("execute _pg3_"))
        .count();
    check!(
        checks,
        executes == 2,
        "expected 2 `execute _pg3_*` lines from backend {backend}, log: {logged:?}"
    );

    // pgbench simple and prepared.
    pgc::pgbench_init(&pg, 1)?;
    for mode in [QueryMode::Simple, QueryMode::Prepared] {
        let b = pgc::pgbench(
            dir,
            &format!("pgbench_{mode:?}"),
            &pg,
            &PgbenchOptions {
                mode,
                transactions: 50,
                ..PgbenchOptions::default()
            },
        )?;
        check!(
            checks,
            b.processed == 50 && b.failed == 0 && b.tps > 0.0,
            "pgbench {mode:?}: processed {} failed {} tps {}",
            b.processed,
            b.failed,
            b.tps
        );
    }
    let data = pg.dir.join("data").display().to_string();
    stop_and_check_gone(&mut checks, pg, &[]);
    let strays: Vec<String> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| cmdline(p).filter(|c| c.contains(&data)))
        .collect();
    check!(
        checks,
        strays.is_empty(),
        "processes still use the data dir: {strays:?}"
    );
    s.finish(checks)
}

#[test]
fn redis_starts_answers_cli_benchmark_redis_py_and_stops_clean() -> Result<()> {
    let s = Scratch::new("h_redis")?;
    let dir = &s.dir;
    let mut checks = Checks::default();
    let r = Redis::start_with(&dir.join("redis"), &RedisOptions::with_password())?;

    let ping = rc::cli(dir, "ping", &r, &["PING"])?;
    check!(checks, ping.stdout.trim() == "PONG", "PING: {ping:?}");
    let mut c = r.cli_noauth();
    c.args(["GET", "k"]);
    let noauth = clients::run(dir, "noauth", c)?;
    check!(
        checks,
        format!("{}{}", noauth.stdout, noauth.stderr).contains("NOAUTH"),
        "no AUTH should be refused: {noauth:?}"
    );
    let lines = rc::cli_lines(dir, "lines", &r, &["SET greeting hello", "GET greeting"])?;
    check!(
        checks,
        lines.stdout.lines().collect::<Vec<_>>() == ["OK", "hello"],
        "SET/GET on one connection: {lines:?}"
    );
    let mut c = r.cli_socket();
    c.arg("PING");
    let sock = clients::run(dir, "sock", c)?;
    check!(
        checks,
        sock.stdout.trim() == "PONG",
        "PING over the socket: {sock:?}"
    );

    let run = rc::redis_py(
        dir,
        "redis_py",
        &r,
        RedisVia::Tcp,
        &[
            RedisStep::cmd(&["SET", "k1", "v1"]),
            RedisStep::cmd(&["GET", "k1"]),
            RedisStep::cmd(&["LPUSH", "k1", "x"]),
            RedisStep::pipeline(&[&["INCR", "n"], &["INCR", "n"], &["GET", "n"]]),
            RedisStep::cmd(&["DEBUG", "SLEEP", "0.1"]),
        ],
    )?;
    let cmds = run.of_kind("command");
    check!(
        checks,
        cmds.len() == 7,
        "redis-py records: {:?}",
        run.records
    );
    if cmds.len() == 7 {
        check!(
            checks,
            cmds[1].str("reply") == Some("b'v1'"),
            "GET: {:?}",
            cmds[1]
        );
        check!(
            checks,
            !cmds[2].ok()
                && cmds[2]
                    .str("error")
                    .is_some_and(|e| e.contains("WRONGTYPE")),
            "LPUSH on a string: {:?}",
            cmds[2]
        );
        check!(
            checks,
            cmds[5].str("reply") == Some("b'2'"),
            "pipelined GET: {:?}",
            cmds[5]
        );
        check!(
            checks,
            cmds[6].duration_ns().is_some_and(|d| d >= 100_000_000),
            "DEBUG SLEEP 0.1 took {:?} ns",
            cmds[6].duration_ns()
        );
    }
    check!(
        checks,
        run.connected
            .as_ref()
            .and_then(|c| c.u64("local_port"))
            .is_some(),
        "redis-py connected line: {:?}",
        run.connected
    );
    for pipeline in [1, 16] {
        let b = rc::benchmark(
            dir,
            &format!("bench_p{pipeline}"),
            &r,
            &BenchOptions {
                requests: 2000,
                pipeline,
                ..BenchOptions::default()
            },
        )?;
        let tests: Vec<&str> = b.rows.iter().map(|(t, _)| t.as_str()).collect();
        check!(
            checks,
            tests.contains(&"SET")
                && tests.contains(&"GET")
                && b.rows.iter().all(|(_, v)| *v > 0.0),
            "redis-benchmark -P {pipeline}: {:?}",
            b.rows
        );
    }
    check!(
        checks,
        r.password.as_deref() == Some(redis::PASSWORD),
        "password"
    );
    stop_and_check_gone(&mut checks, r, &[]);
    s.finish(checks)
}

#[test]
fn nginx_serves_static_and_proxied_requests_to_every_client_and_stops_clean() -> Result<()> {
    let s = Scratch::new("h_nginx")?;
    let dir = &s.dir;
    let mut checks = Checks::default();
    let n = Nginx::start(&dir.join("nginx"))?;

    // curl: small and large on one kept-alive connection; bytes as on disk.
    let c = http::curl(
        dir,
        "curl_static",
        &[],
        &[&n.url(nginx::SMALL.path), &n.url(nginx::LARGE.path)],
    )?;
    for (t, f) in c.transfers.iter().zip([nginx::SMALL, nginx::LARGE]) {
        check!(
            checks,
            t.http_code == 200 && t.size_download == f.size,
            "{}: {t:?}",
            f.path
        );
        let body = std::fs::read(&t.body_path)?;
        check!(
            checks,
            body == nginx::static_content(&f),
            "{}: body differs from the file",
            f.path
        );
    }
    check!(
        checks,
        c.transfers[0].num_connects == 1 && c.transfers[1].num_connects == 0,
        "curl should reuse its connection: {:?}",
        c.transfers
            .iter()
            .map(|t| t.num_connects)
            .collect::<Vec<_>>()
    );
    let huge = http::curl(dir, "curl_huge", &[], &[&n.url(nginx::HUGE.path)])?;
    check!(
        checks,
        huge.transfers[0].size_download == nginx::HUGE.size,
        "64 MiB: {:?}",
        huge.transfers[0]
    );
    let _ = std::fs::remove_file(&huge.transfers[0].body_path);

    // Proxied status codes through one curl.
    let codes = [200u16, 201, 204, 404, 500];
    let urls: Vec<String> = codes
        .iter()
        .map(|c| n.url(&format!("/api/status/{c}")))
        .collect();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let c = http::curl(dir, "curl_api", &[], &url_refs)?;
    let got: Vec<u16> = c.transfers.iter().map(|t| t.http_code).collect();
    check!(checks, got == codes, "proxied status codes: {got:?}");
    let status_path = |r: &serde_json::Value| {
        r.get("path")
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.starts_with("/api/status/") && !p.contains('?'))
    };
    let served: Vec<String> = n
        .wait_upstream_requests(|r| r.iter().filter(|r| status_path(r)).count() >= codes.len())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("path").and_then(|p| p.as_str()).map(str::to_string))
        .collect();
    for code in codes {
        check!(
            checks,
            served.contains(&format!("/api/status/{code}")),
            "the upstream did not serve /api/status/{code}: {served:?}"
        );
    }
    // The access log saw curl's requests on one connection.
    let is_api =
        |e: &&nginx::AccessEntry| e.uri.starts_with("/api/status/") && !e.uri.contains('?');
    let log = n
        .wait_access_log(|l| l.iter().filter(is_api).count() >= codes.len())
        .unwrap_or_default();
    let api: Vec<_> = log.iter().filter(is_api).collect();
    check!(
        checks,
        api.len() == codes.len()
            && api.iter().all(|e| e.connection == api[0].connection)
            && api.iter().map(|e| e.status).collect::<Vec<_>>() == codes,
        "access log: {api:?}"
    );

    // requests: a slow endpoint takes its time; a POST echoes.
    let run = http::python_requests(
        dir,
        "requests",
        &[
            HttpRequest::get(&n.url("/api/slow?ms=200")),
            HttpRequest::new("POST", &n.url("/api/echo")).body("hello body"),
            HttpRequest::get(&n.url("/api/chunked?chunks=5&size=100")),
        ],
        true,
    )?;
    let req = run.of_kind("request");
    check!(
        checks,
        req.len() == 3,
        "requests records: {:?}",
        run.records
    );
    if req.len() == 3 {
        check!(
            checks,
            req[0].u64("status") == Some(200)
                && req[0].duration_ns().is_some_and(|d| d >= 200_000_000),
            "slow: {:?}",
            req[0]
        );
        check!(
            checks,
            req[1].u64("bytes") == Some(10),
            "echo: {:?}",
            req[1]
        );
        check!(
            checks,
            req[2].u64("bytes") == Some(500),
            "chunked: {:?}",
            req[2]
        );
        check!(
            checks,
            req.iter().all(|r| r.u64("local_port").is_some()),
            "local ports: {req:?}"
        );
    }

    // Raw socket: pipelining, HEAD, chunked framing, Expect: 100-continue.
    let pipelined = format!(
        "{}{}{}",
        http::get_request("/api/status/201"),
        http::get_request(nginx::SMALL.path),
        "HEAD /api/bytes?n=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    );
    let run = http::raw(
        dir,
        "raw",
        n.port,
        &[
            RawStep::Send {
                data: pipelined,
                responses: 3,
            },
            RawStep::Send {
                data: http::get_request("/api/chunked?chunks=3&size=7"),
                responses: 1,
            },
            RawStep::ExpectContinue {
                head: "POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\
                       Expect: 100-continue\r\n\r\n"
                    .into(),
                body: "12345".into(),
                wait_ms: 2000,
            },
            RawStep::SendParts {
                parts: vec![
                    "GET /api/sta".into(),
                    "tus/404 HTTP/1.1\r\nHost: x\r\n\r\n".into(),
                ],
                delay_ms: 50,
                responses: 1,
            },
        ],
    )?;
    let resp = run.of_kind("response");
    let statuses: Vec<Option<u64>> = resp.iter().map(|r| r.u64("status")).collect();
    check!(
        checks,
        statuses
            == [
                Some(201),
                Some(200),
                Some(200),
                Some(200),
                Some(200),
                Some(404)
            ],
        "raw statuses: {statuses:?}; {:?}",
        run.records
    );
    if resp.len() == 6 {
        check!(
            checks,
            resp[1].u64("body_len") == Some(nginx::SMALL.size),
            "pipelined static: {:?}",
            resp[1]
        );
        check!(
            checks,
            resp[2].u64("body_len") == Some(0)
                && resp[2].get("headers").and_then(|h| h.get("content-length"))
                    == Some(&json!("10")),
            "HEAD: {:?}",
            resp[2]
        );
        check!(
            checks,
            resp[3].bool("chunked") == Some(true) && resp[3].u64("body_len") == Some(21),
            "chunked: {:?}",
            resp[3]
        );
        check!(
            checks,
            resp[4].get("interim") == Some(&json!([100])) && resp[4].u64("body_len") == Some(5),
            "100-continue: {:?}",
            resp[4]
        );
    }

    // wrk: one process, kept-alive connections, no errors.
    let w = http::wrk(
        dir,
        "wrk",
        &n.url(nginx::SMALL.path),
        &WrkOptions {
            duration: Duration::from_secs(1),
            ..WrkOptions::default()
        },
    )?;
    check!(
        checks,
        w.requests > 10 && w.status_errors == 0 && w.socket_errors == 0,
        "wrk: {} requests, {} status errors, {} socket errors",
        w.requests,
        w.status_errors,
        w.socket_errors
    );
    eprintln!(
        "[harness:h_nginx] wrk: {} requests in {:?} ({:.0}/s)",
        w.requests, w.duration, w.requests_per_sec
    );
    stop_and_check_gone(&mut checks, n, &[]);
    s.finish(checks)
}

#[test]
fn dnsmasq_answers_dig_and_getaddrinfo_in_a_private_namespace_and_stops_clean() -> Result<()> {
    let s = Scratch::new("h_dns")?;
    let dir = &s.dir;
    let mut checks = Checks::default();
    let host_resolv = std::fs::read("/etc/resolv.conf")?;
    let d = Dnsmasq::start(&dir.join("dns"))?;
    let server = d.server();
    eprintln!("[harness:h_dns] dnsmasq on {server}");

    let a = dns::dig(
        dir,
        "dig_a",
        server,
        dnsmasq::WEB,
        "A",
        &DigOptions::default(),
    )?;
    check!(
        checks,
        a.status == "NOERROR"
            && a.flags.contains(&"aa".to_string())
            && a.transport == "UDP"
            && a.answers
                .iter()
                .any(|x| x.rtype == "A" && x.data == dnsmasq::WEB_V4),
        "dig A: {a:?}"
    );
    let aaaa = dns::dig(
        dir,
        "dig_aaaa",
        server,
        dnsmasq::ALIAS,
        "AAAA",
        &DigOptions::default(),
    )?;
    check!(
        checks,
        aaaa.answers.iter().any(|x| x.rtype == "CNAME")
            && aaaa
                .answers
                .iter()
                .any(|x| x.rtype == "AAAA" && x.data == dnsmasq::WEB_V6),
        "dig AAAA via CNAME: {aaaa:?}"
    );
    let nx = dns::dig(
        dir,
        "dig_nx",
        server,
        dnsmasq::NXDOMAIN,
        "A",
        &DigOptions::default(),
    )?;
    check!(checks, nx.status == "NXDOMAIN", "dig NXDOMAIN: {nx:?}");
    let tcp = dns::dig(
        dir,
        "dig_tcp",
        server,
        dnsmasq::TXT,
        "TXT",
        &DigOptions {
            tcp: true,
            ..DigOptions::default()
        },
    )?;
    check!(
        checks,
        tcp.transport == "TCP"
            && tcp
                .answers
                .iter()
                .any(|x| x.data.contains(dnsmasq::TXT_VALUE)),
        "dig +tcp TXT: {tcp:?}"
    );
    let trunc = dns::dig(
        dir,
        "dig_tc",
        server,
        dnsmasq::MANY,
        "A",
        &DigOptions {
            noedns: true,
            extra: vec!["+ignore".into()],
            ..DigOptions::default()
        },
    )?;
    check!(
        checks,
        trunc.flags.contains(&"tc".to_string()),
        "{} over UDP without EDNS should be truncated: {trunc:?}",
        dnsmasq::MANY
    );

    // glibc in the namespace: UDP answers, NXDOMAIN, and the TCP retry of a truncated answer.
    let run = dns::getaddrinfo(
        dir,
        "gai",
        &d,
        &[
            dnsmasq::WEB,
            dnsmasq::NXDOMAIN,
            dnsmasq::MANY,
            dnsmasq::V4ONLY,
        ],
        Family::Any,
        &[],
    )?;
    let r = run.of_kind("resolve");
    check!(
        checks,
        r.len() == 4,
        "getaddrinfo records: {:?}",
        run.records
    );
    if r.len() == 4 {
        let addrs = |i: usize| -> Vec<String> {
            r[i].get("addresses")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        check!(
            checks,
            addrs(0).contains(&dnsmasq::WEB_V4.to_string())
                && addrs(0).contains(&dnsmasq::WEB_V6.to_string()),
            "getaddrinfo web: {:?}",
            r[0]
        );
        check!(
            checks,
            r[1].str("error") == Some("EAI_NONAME"),
            "getaddrinfo NXDOMAIN: {:?}",
            r[1]
        );
        check!(
            checks,
            addrs(2).len() == usize::from(dnsmasq::MANY_COUNT),
            "getaddrinfo many (TCP retry): {} addresses",
            addrs(2).len()
        );
        check!(
            checks,
            addrs(3) == [dnsmasq::V4ONLY_V4.to_string()],
            "getaddrinfo v4only: {:?}",
            r[3]
        );
    }
    // The query log shows who answered: the main process for UDP, a forked child for TCP.
    let log = d.query_log()?;
    let many: Vec<_> = log.iter().filter(|q| q.name == dnsmasq::MANY).collect();
    check!(
        checks,
        many.iter().any(|q| q.pid == d.pid()) && many.iter().any(|q| q.pid != d.pid()),
        "{} should be asked over UDP (main pid {}) and TCP (a child): {many:?}",
        dnsmasq::MANY,
        d.pid()
    );
    check!(
        checks,
        log.iter()
            .any(|q| q.name == dnsmasq::WEB && q.qtype == "AAAA"),
        "getaddrinfo should ask AAAA too: {log:?}"
    );
    // use-vc: every lookup over TCP.
    let vc = dns::getaddrinfo(
        dir,
        "gai_vc",
        &d,
        &[dnsmasq::WEB],
        Family::Inet,
        &["use-vc"],
    )?;
    check!(
        checks,
        vc.of_kind("resolve").first().is_some_and(|r| r.ok()),
        "getaddrinfo with use-vc: {:?}",
        vc.records
    );
    // The host's resolver configuration was never touched.
    check!(
        checks,
        std::fs::read("/etc/resolv.conf")? == host_resolv,
        "/etc/resolv.conf changed on the host"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    check!(
        checks,
        !mounts
            .lines()
            .any(|l| l.contains(" /etc/resolv.conf ") && l.contains("e2e")),
        "a resolv.conf bind mount leaked into the harness's namespace"
    );
    stop_and_check_gone(&mut checks, d, &[]);
    s.finish(checks)
}

/// The World keeps artefacts of a failed test and removes those of a passed one.
#[test]
fn world_keeps_artefacts_only_on_failure() -> Result<()> {
    let failed_dir = {
        let w = World::start("h_world_fail", |_| Ok(()))?;
        let dir = w.dir.clone();
        let mut c = Checks::default();
        c.fail("deliberate");
        ensure!(w.done(c).is_err(), "a failed check must fail the world");
        dir
    };
    let passed_dir = {
        let w = World::start("h_world_pass", |_| Ok(()))?;
        let dir = w.dir.clone();
        std::fs::write(dir.join("artefact"), b"x")?;
        w.done(Checks::default())?;
        dir
    };
    let mut checks = Checks::default();
    check!(
        checks,
        failed_dir.join("otelcol.log").exists(),
        "artefacts of the failed world are gone: {}",
        failed_dir.display()
    );
    check!(
        checks,
        !passed_dir.exists(),
        "the passed world's dir remains: {}",
        passed_dir.display()
    );
    paths::remove_scratch_dir(&failed_dir);
    checks.finish()
}
