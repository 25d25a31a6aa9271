//! End-to-end: a real PostgreSQL server (one backend process per connection), real clients
//! (psql over TCP with its SSLRequest refused and over the Unix socket, the cleartext-password
//! user, psycopg 3 with the extended protocol, server-side prepared statements, errors and a
//! pipeline, pgbench simple and `-M prepared`), the stock Collector, the receiver tracing the
//! whole host. CLIENT spans come from the client process; SERVER spans from the backend that
//! served the connection (a child of the postmaster: the kernel hands it the socket the
//! postmaster accepted). Every test starts its own server, Collector and receiver.
//!
//! Root only: built with `--features e2e` by `cargo xtask test`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use integration::check;
use integration::clients::postgres::{self as pgc, PgStep, PgbenchOptions, QueryMode};
use integration::clients::{self, PlanRun, Record};
use integration::collector::{STATUS_ERROR, STATUS_UNSET, SpanView};
use integration::figures::LoadProbe;
use integration::servers::postgres::{self as pgs, PgOptions, Postgres};
use integration::world::{
    Checks, Side, World, assert_in_order, assert_no_secrets_anywhere, summaries,
};
use serde_json::json;

/// How much a span may stick out of the client's own measurement of the same request: the
/// clocks are the same wall clock, but the client reads it in Python around the call.
const TOLERANCE_NS: i128 = 1_000_000;
/// How far a span's duration may fall short of the client's for a 200 ms query (the client
/// also measures its own work before the first byte and after the last; a shared 2-core VM).
const SHORT_BY_NS: i128 = 3_000_000;
/// The canaries no span, log or metric may ever hold.
const SECRETS: &[&str] = &[
    pgs::PASSWORD,
    pgs::CLEARTEXT_PASSWORD,
    "top-secret-note",
    "bind-canary-psycopg",
    "literal-canary-psycopg",
    "alice",
];

fn world(name: &str) -> Result<World<Postgres>> {
    World::start(name, |dir| {
        Postgres::start_with(&dir.join("pg"), &PgOptions::default())
    })
}

/// What one span must be.
#[derive(Clone, Copy, Debug)]
struct Want {
    /// The span name (`db.query.summary`, `PREPARE {summary}`, `EXECUTE`, …).
    name: &'static str,
    /// `db.query.text`; `None`: absent.
    text: Option<&'static str>,
    /// SQLSTATE of an error (status ERROR, `error.type`, `db.response.status_code`).
    error: Option<&'static str>,
    /// `db.operation.name` (`PREPARE`, `EXECUTE`), else absent.
    operation: Option<&'static str>,
}

const fn sql(name: &'static str, text: &'static str) -> Want {
    Want {
        name,
        text: Some(text),
        error: None,
        operation: None,
    }
}

const fn failed(name: &'static str, text: &'static str, sqlstate: &'static str) -> Want {
    Want {
        name,
        text: Some(text),
        error: Some(sqlstate),
        operation: None,
    }
}

/// A prepare-only exchange: `PREPARE {summary}`, `db.operation.name=PREPARE`, no summary.
const fn prepare(name: &'static str, text: &'static str) -> Want {
    Want {
        name,
        text: Some(text),
        error: None,
        operation: Some("PREPARE"),
    }
}

/// How the connection reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Tcp,
    Socket,
}

/// Checks one span against what it must be; `namespace`: `Some` exact, `None` absent.
fn check_span(
    checks: &mut Checks,
    side: Side,
    s: &SpanView,
    want: &Want,
    namespace: Option<&str>,
    pg: &Postgres,
    via: Via,
) {
    let who = format!("{} {:?}", side.label(), want.name);
    check!(checks, s.name == want.name, "{who}: name: {}", s.summary());
    check!(
        checks,
        s.str_attr("db.system.name") == Some("postgresql"),
        "{who}: db.system.name: {}",
        s.summary()
    );
    check!(
        checks,
        s.query_text() == want.text,
        "{who}: db.query.text should be {:?}: {}",
        want.text,
        s.summary()
    );
    check!(
        checks,
        s.str_attr("db.operation.name") == want.operation,
        "{who}: db.operation.name should be {:?}: {}",
        want.operation,
        s.summary()
    );
    // The summary names the span, except for a prepare (kept apart from the executions).
    let summary = (want.operation.is_none() && want.text.is_some() && want.name != "postgresql")
        .then_some(want.name);
    check!(
        checks,
        s.str_attr("db.query.summary") == summary,
        "{who}: db.query.summary should be {summary:?}: {}",
        s.summary()
    );
    check!(
        checks,
        s.str_attr("db.namespace") == namespace,
        "{who}: db.namespace should be {namespace:?}: {}",
        s.summary()
    );
    match want.error {
        Some(code) => {
            check!(
                checks,
                s.status_code == STATUS_ERROR
                    && s.str_attr("error.type") == Some(code)
                    && s.str_attr("db.response.status_code") == Some(code),
                "{who}: should be error {code}: {}",
                s.summary()
            );
        }
        None => check!(
            checks,
            s.status_code == STATUS_UNSET
                && s.attr("error.type").is_none()
                && s.attr("db.response.status_code").is_none(),
            "{who}: unexpected error: {}",
            s.summary()
        ),
    }
    check!(
        checks,
        s.end_ns >= s.start_ns,
        "{who}: ends before it starts: {}",
        s.summary()
    );
    match via {
        Via::Tcp => {
            check!(
                checks,
                s.str_attr("network.transport") == Some("tcp")
                    && s.str_attr("server.address") == Some("127.0.0.1")
                    && s.int_attr("server.port") == Some(i64::from(pg.port))
                    && s.str_attr("network.peer.address") == Some("127.0.0.1"),
                "{who}: network attributes: {}",
                s.summary()
            );
            let peer_port = s.int_attr("network.peer.port");
            let ok = match side {
                Side::Client => peer_port == Some(i64::from(pg.port)),
                Side::Server => peer_port.is_some_and(|p| p > 0 && p != i64::from(pg.port)),
            };
            check!(checks, ok, "{who}: network.peer.port: {}", s.summary());
        }
        Via::Socket => {
            check!(
                checks,
                s.str_attr("network.transport") == Some("unix") && s.attr("server.port").is_none(),
                "{who}: Unix socket attributes: {}",
                s.summary()
            );
        }
    }
    checks.add(assert_no_secrets_anywhere(s, SECRETS));
}

/// Every span of one process and side once at least `n` arrived, after a pause in which
/// duplicates would show up; sorted by start.
fn spans_of(w: &mut World<Postgres>, pid: u32, side: Side, n: usize) -> Result<Vec<SpanView>> {
    w.spans_from(pid, side, &format!("{n} spans"), |s| s.len() >= n)?;
    let mut spans = w.settled_spans(Duration::from_millis(500), |s| {
        s.pid() == Some(pid) && side.matches(s)
    })?;
    spans.sort_by_key(|s| s.start_ns);
    Ok(spans)
}

/// Exactly `wants.len()` spans from `pid` on `side`, each as wanted, in order.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per side and connection"
)]
fn check_exact(
    checks: &mut Checks,
    w: &mut World<Postgres>,
    pid: u32,
    side: Side,
    wants: &[Want],
    namespace: Option<&str>,
    via: Via,
    label: &str,
) -> Vec<SpanView> {
    let spans = match spans_of(w, pid, side, wants.len()) {
        Ok(s) => s,
        Err(e) => {
            checks.fail(format!("{label} {}: {e:#}", side.label()));
            return Vec::new();
        }
    };
    let refs: Vec<&SpanView> = spans.iter().collect();
    if spans.len() != wants.len() {
        checks.fail(format!(
            "{label} {}: expected exactly {} spans, got {}:\n{}",
            side.label(),
            wants.len(),
            spans.len(),
            summaries(&refs)
        ));
        return spans;
    }
    for (s, want) in spans.iter().zip(wants) {
        check_span(checks, side, s, want, namespace, &w.server, via);
    }
    checks.add(assert_in_order(&refs).with_context(|| format!("{label} {}", side.label())));
    spans
}

/// Each SERVER span lies inside the CLIENT span of the same request.
fn check_nested(checks: &mut Checks, label: &str, client: &[SpanView], server: &[SpanView]) {
    if client.len() != server.len() {
        return;
    }
    for (c, s) in client.iter().zip(server) {
        let inside = i128::from(s.start_ns) + TOLERANCE_NS >= i128::from(c.start_ns)
            && i128::from(s.end_ns) <= i128::from(c.end_ns) + TOLERANCE_NS;
        check!(
            checks,
            inside && c.name == s.name,
            "{label}: SERVER span not inside its CLIENT span:\n  {}\n  {}",
            c.summary(),
            s.summary()
        );
    }
}

/// None of the canaries in the Collector's raw output, the receiver's log or its metrics.
fn check_no_canary_anywhere(checks: &mut Checks, w: &World<Postgres>) {
    let spans = std::fs::read_to_string(&w.collector.spans_file).unwrap_or_default();
    let log = std::fs::read_to_string(w.dir.join("receiver.log")).unwrap_or_default();
    let metrics = w
        .receiver()
        .metrics()
        .map(|m| m.family(""))
        .unwrap_or_default();
    check!(checks, !spans.is_empty(), "no Collector output to search");
    for (what, text) in [
        ("Collector output", &spans),
        ("receiver log", &log),
        ("metrics", &metrics),
    ] {
        for secret in SECRETS {
            check!(
                checks,
                !text.contains(secret),
                "canary {secret:?} found in the {what}"
            );
        }
    }
}

/// The first output line of psql `-At` (the statement `SELECT pg_backend_pid()` prints first).
fn backend_from_output(run: &clients::ClientRun) -> Result<u32> {
    run.stdout
        .lines()
        .next()
        .and_then(|l| l.split('|').next())
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("no backend pid in psql output: {run:?}"))
}

/// The psql script: one simple Query per statement (psql splits at `;`), errors included.
const PSQL_SCRIPT: &str = "\
SELECT pg_backend_pid();
SELECT name FROM t1 WHERE id = 2;
SELECT id, score FROM t1 WHERE name = 'alice' AND score > 1.25;
UPDATE t1 SET score = 4.75 WHERE name = 'c''arol';
INSERT INTO t2 (id, t1_id, note) VALUES (31, 3, 'top-secret-note');
SELECT * FROM missing_table;
SELECT 1 / 0;
DELETE FROM t2 WHERE id = 31;
";

const PSQL_SPANS: &[Want] = &[
    sql("SELECT", "SELECT pg_backend_pid();"),
    sql("SELECT t1", "SELECT name FROM t1 WHERE id = ?;"),
    sql(
        "SELECT t1",
        "SELECT id, score FROM t1 WHERE name = ? AND score > ?;",
    ),
    sql("UPDATE t1", "UPDATE t1 SET score = ? WHERE name = ?;"),
    sql(
        "INSERT t2",
        "INSERT INTO t2 (id, t1_id, note) VALUES (?, ?, ?);",
    ),
    failed(
        "SELECT missing_table",
        "SELECT * FROM missing_table;",
        "42P01",
    ),
    failed("SELECT", "SELECT ? / ?;", "22012"),
    sql("DELETE t2", "DELETE FROM t2 WHERE id = ?;"),
];

/// (a) psql: a script over TCP (SCRAM, `sslmode=prefer` → SSLRequest refused with `N`, then a
/// plaintext startup) and over the Unix socket, a multi-statement Query, the cleartext-password
/// user. One CLIENT span (psql) and one SERVER span (its backend) per Query, exact names and
/// attributes, in order, nested; no canary anywhere.
#[test]
fn a_psql_over_tcp_and_socket_with_errors_and_the_cleartext_password() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("a_psql")?;
    w.start_receiver()?;
    let script = w.dir.join("script.sql");
    std::fs::write(&script, PSQL_SCRIPT)?;
    for via in [Via::Tcp, Via::Socket] {
        let mut cmd = match via {
            Via::Tcp => w.server.psql(),
            Via::Socket => w.server.psql_socket(),
        };
        cmd.args(["-v", "ON_ERROR_STOP=0", "-At", "-f"])
            .arg(&script);
        let name = format!("psql_{via:?}").to_lowercase();
        let run = clients::run(&w.dir, &name, cmd)?;
        check!(
            checks,
            run.stderr.contains("missing_table") && run.stderr.contains("division by zero"),
            "{name}: psql should report both errors: {run:?}"
        );
        let backend = backend_from_output(&run)?;
        let label = format!("psql {via:?}");
        let c = check_exact(
            &mut checks,
            &mut w,
            run.pid,
            Side::Client,
            PSQL_SPANS,
            Some(pgs::DATABASE),
            via,
            &label,
        );
        let s = check_exact(
            &mut checks,
            &mut w,
            backend,
            Side::Server,
            PSQL_SPANS,
            Some(pgs::DATABASE),
            via,
            &label,
        );
        check_nested(&mut checks, &label, &c, &s);
        // Every span inside the client process's lifetime.
        for span in c.iter().chain(&s) {
            check!(
                checks,
                span.start_ns >= run.start_unix_ns && span.end_ns <= run.end_unix_ns,
                "{label}: span outside the psql run: {}",
                span.summary()
            );
        }
        eprintln!(
            "[e2e:a_psql] {via:?}: {} statements → {} CLIENT + {} SERVER spans (backend {backend})",
            PSQL_SPANS.len(),
            c.len(),
            s.len()
        );
    }

    // Several statements in one Query message: one exchange, one span per side.
    let run = pgc::psql(
        &w.dir,
        "psql_multi",
        &w.server,
        "SELECT pg_backend_pid(); SELECT 2 AS two",
    )?;
    run.ensure_success()?;
    let backend = backend_from_output(&run)?;
    let multi = [sql(
        "SELECT SELECT",
        "SELECT pg_backend_pid(); SELECT ? AS two",
    )];
    for (pid, side) in [(run.pid, Side::Client), (backend, Side::Server)] {
        check_exact(
            &mut checks,
            &mut w,
            pid,
            side,
            &multi,
            Some(pgs::DATABASE),
            Via::Tcp,
            "multi-statement",
        );
    }

    // The `password` method: the password crosses the wire in clear (a PasswordMessage).
    let mut cmd = w
        .server
        .psql_as(pgs::CLEARTEXT_USER, pgs::CLEARTEXT_PASSWORD);
    cmd.args(["-At", "-c", "SELECT pg_backend_pid(), count(*) FROM t1"]);
    let run = clients::run(&w.dir, "psql_cleartext", cmd)?;
    run.ensure_success()?;
    let backend = backend_from_output(&run)?;
    let one = [sql(
        "SELECT t1",
        "SELECT pg_backend_pid(), count(*) FROM t1",
    )];
    for (pid, side) in [(run.pid, Side::Client), (backend, Side::Server)] {
        check_exact(
            &mut checks,
            &mut w,
            pid,
            side,
            &one,
            Some(pgs::DATABASE),
            Via::Tcp,
            "cleartext user",
        );
    }
    check_no_canary_anywhere(&mut checks, &w);
    w.check_no_loss(&mut checks);
    w.done(checks)
}

/// One psycopg step and the spans it makes on each side.
struct PyCase {
    step: PgStep,
    spans: Vec<Want>,
}

fn psycopg_cases() -> Vec<PyCase> {
    const T2: &str = "SELECT note FROM t2 WHERE id = $1";
    const SCORE: &str = "SELECT score FROM t1 WHERE id = $1";
    vec![
        PyCase {
            step: PgStep::simple("SELECT name FROM t1 WHERE id = 1"),
            spans: vec![sql("SELECT t1", "SELECT name FROM t1 WHERE id = ?")],
        },
        // A parameter: Parse/Bind/Describe/Execute/Sync of the unnamed statement, one span.
        PyCase {
            step: PgStep::extended("SELECT name, score FROM t1 WHERE id = %s", vec![json!(2)]),
            spans: vec![sql("SELECT t1", "SELECT name, score FROM t1 WHERE id = $1")],
        },
        // prepare=True: Parse + Sync once (PREPARE span), then Bind/Describe/Execute/Sync.
        PyCase {
            step: PgStep::prepared("SELECT note FROM t2 WHERE id = %s", vec![json!(10)]),
            spans: vec![prepare("PREPARE SELECT t2", T2), sql("SELECT t2", T2)],
        },
        PyCase {
            step: PgStep::prepared("SELECT note FROM t2 WHERE id = %s", vec![json!(20)]),
            spans: vec![sql("SELECT t2", T2)],
        },
        PyCase {
            step: PgStep::prepared("SELECT note FROM t2 WHERE id = %s", vec![json!(10)]),
            spans: vec![sql("SELECT t2", T2)],
        },
        // Preparing a statement on a missing table fails at the Parse.
        PyCase {
            step: PgStep::prepared("SELECT v FROM missing_table WHERE k = %s", vec![json!("x")]),
            spans: vec![Want {
                name: "PREPARE SELECT missing_table",
                text: Some("SELECT v FROM missing_table WHERE k = $1"),
                error: Some("42P01"),
                operation: Some("PREPARE"),
            }],
        },
        PyCase {
            step: PgStep::extended("SELECT 10 / %s::int", vec![json!(0)]),
            spans: vec![failed("SELECT", "SELECT ? / $1::int", "22012")],
        },
        PyCase {
            step: PgStep::simple("SELECT 1/0"),
            spans: vec![failed("SELECT", "SELECT ?/?", "22012")],
        },
        PyCase {
            step: PgStep::simple("SELECT pg_sleep(0.2)"),
            spans: vec![sql("SELECT", "SELECT pg_sleep(?)")],
        },
        PyCase {
            step: PgStep::extended(
                "UPDATE kv SET v = %s WHERE k = %s",
                vec![json!("bind-canary-psycopg"), json!("k1")],
            ),
            spans: vec![sql("UPDATE kv", "UPDATE kv SET v = $1 WHERE k = $2")],
        },
        // Pipeline mode: three executions before one Sync, one span each.
        PyCase {
            step: PgStep::Pipeline(vec![
                PgStep::extended("SELECT score FROM t1 WHERE id = %s", vec![json!(1)]),
                PgStep::extended("SELECT score FROM t1 WHERE id = %s", vec![json!(2)]),
                PgStep::extended("SELECT score FROM t1 WHERE id = %s", vec![json!(3)]),
            ]),
            spans: vec![
                sql("SELECT t1", SCORE),
                sql("SELECT t1", SCORE),
                sql("SELECT t1", SCORE),
            ],
        },
        PyCase {
            step: PgStep::simple("SELECT id FROM t1 WHERE name = 'literal-canary-psycopg'"),
            spans: vec![sql("SELECT t1", "SELECT id FROM t1 WHERE name = ?")],
        },
        PyCase {
            step: PgStep::simple("SELECT 1 AS a; SELECT 2 AS b"),
            spans: vec![sql("SELECT SELECT", "SELECT ? AS a; SELECT ? AS b")],
        },
    ]
}

/// The client's records, one per request (a pipeline prints one per inner statement, all
/// with the pipeline's times): per case, the (start, end, duration) the client measured.
fn case_times(run: &PlanRun, cases: &[PyCase]) -> Result<Vec<(u64, u64, u64)>> {
    let queries: Vec<&Record> = run
        .of_kind("query")
        .into_iter()
        .filter(|r| r.bool("before") != Some(true))
        .collect();
    let mut out = Vec::new();
    for (i, _) in cases.iter().enumerate() {
        let r = queries
            .iter()
            .find(|r| r.u64("step") == Some(i as u64))
            .with_context(|| format!("no client record for step {i}: {queries:?}"))?;
        out.push((
            r.start_unix_ns().context("start")?,
            r.end_unix_ns().context("end")?,
            r.duration_ns().context("duration")?,
        ));
    }
    Ok(out)
}

/// (b) psycopg 3 on one connection: simple and extended protocol, server-side prepared
/// statements (one PREPARE span, then executions with the statement's text), errors at Parse
/// (42P01) and Execute (22012), a 200 ms query timed against the client, a Bind value and a
/// literal canary, a pipeline, a multi-statement Query. Both sides exactly, in order, inside the
/// client's own measurement of each request.
#[test]
fn b_psycopg_extended_prepared_pipeline_errors_and_timing() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("b_psycopg")?;
    w.start_receiver()?;
    let cases = psycopg_cases();
    let steps: Vec<PgStep> = cases.iter().map(|c| c.step.clone()).collect();
    let run = pgc::psycopg(&w.dir, "psycopg", &w.server, &steps)?;
    let backend = pgc::backend_pid(&run)?;
    let expect_errors = [5, 6, 7];
    for r in run.of_kind("query") {
        let step = r.u64("step").unwrap_or(0) as usize;
        check!(
            checks,
            r.ok() != expect_errors.contains(&step),
            "psycopg step {step}: {r:?}"
        );
    }
    let wants: Vec<Want> = cases.iter().flat_map(|c| c.spans.iter().copied()).collect();
    let times = case_times(&run, &cases)?;
    let c = check_exact(
        &mut checks,
        &mut w,
        run.pid(),
        Side::Client,
        &wants,
        Some(pgs::DATABASE),
        Via::Tcp,
        "psycopg",
    );
    let s = check_exact(
        &mut checks,
        &mut w,
        backend,
        Side::Server,
        &wants,
        Some(pgs::DATABASE),
        Via::Tcp,
        "psycopg",
    );
    check_nested(&mut checks, "psycopg", &c, &s);
    if c.len() == wants.len() {
        // Spans of each case inside the client's own measurement of that case.
        let mut at = 0;
        for (i, (case, (start, end, dur))) in cases.iter().zip(&times).enumerate() {
            for span in &c[at..at + case.spans.len()] {
                check!(
                    checks,
                    i128::from(span.start_ns) + TOLERANCE_NS >= i128::from(*start)
                        && i128::from(span.end_ns) <= i128::from(*end) + TOLERANCE_NS
                        && span.duration_ns() <= i128::from(*dur) + TOLERANCE_NS,
                    "step {i}: span outside the client's {:.3} ms: {}",
                    *dur as f64 / 1e6,
                    span.summary()
                );
            }
            if case.spans[0].text == Some("SELECT pg_sleep(?)") {
                let span = &c[at];
                let d = span.duration_ns();
                check!(
                    checks,
                    d >= 200_000_000 && i128::from(*dur) - d <= SHORT_BY_NS,
                    "pg_sleep(0.2): span {:.3} ms, client {:.3} ms",
                    d as f64 / 1e6,
                    *dur as f64 / 1e6
                );
                eprintln!(
                    "[e2e:b_psycopg] pg_sleep(0.2): CLIENT span {:.3} ms, SERVER span {:.3} ms, client {:.3} ms",
                    d as f64 / 1e6,
                    s.get(at).map_or(0.0, |s| s.duration_ns() as f64 / 1e6),
                    *dur as f64 / 1e6
                );
            }
            at += case.spans.len();
        }
    }
    check_no_canary_anywhere(&mut checks, &w);
    w.check_no_loss(&mut checks);
    w.done(checks)
}

/// (c) A psycopg connection opened, and one statement prepared on it, before the receiver
/// started: both sides are still traced (the backend too), without `db.namespace` (the startup
/// was missed), the statement prepared before has no text (`EXECUTE`), never a wrong one; one
/// prepared after carries its text.
#[test]
fn c_connection_opened_before_the_receiver() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("c_before")?;
    let before = [
        PgStep::prepared("SELECT note FROM t2 WHERE id = %s", vec![json!(10)]),
        PgStep::simple("SELECT 1"),
    ];
    let steps = [
        // The receiver cannot know whether a connection it did not see open is in the middle
        // of a message: it infers the protocol only where the conversation turns, so this
        // first exchange has no span (see `ebpf_common::turn`; attach_e2e asserts the rule).
        PgStep::simple("SELECT 1"),
        PgStep::prepared("SELECT note FROM t2 WHERE id = %s", vec![json!(20)]),
        PgStep::simple("SELECT name FROM t1 WHERE id = 3"),
        PgStep::prepared("SELECT score FROM t1 WHERE id = %s", vec![json!(1)]),
        PgStep::extended("SELECT id FROM t1 WHERE name = %s", vec![json!("bob")]),
        PgStep::simple("SELEC 1"),
    ];
    let mut held = pgc::psycopg_held_after(&w.dir, "held", &w.server, &before, &steps)?;
    held.wait_ready(Duration::from_secs(30))?;
    w.start_receiver()?;
    held.go()?;
    let run = clients::finish_plan(held, Duration::from_secs(60))?;
    let backend = pgc::backend_pid(&run)?;
    const SCORE: &str = "SELECT score FROM t1 WHERE id = $1";
    let wants = [
        Want {
            name: "EXECUTE",
            text: None,
            error: None,
            operation: Some("EXECUTE"),
        },
        sql("SELECT t1", "SELECT name FROM t1 WHERE id = ?"),
        prepare("PREPARE SELECT t1", SCORE),
        sql("SELECT t1", SCORE),
        sql("SELECT t1", "SELECT id FROM t1 WHERE name = $1"),
        // No summary, no namespace: named after the system.
        failed("postgresql", "SELEC ?", "42601"),
    ];
    for (pid, side) in [(run.pid(), Side::Client), (backend, Side::Server)] {
        check_exact(
            &mut checks,
            &mut w,
            pid,
            side,
            &wants,
            None,
            Via::Tcp,
            "pre-existing",
        );
    }
    w.check_no_loss(&mut checks);
    w.done(checks)
}

/// pgbench's select-only statement as the spans carry it.
const PGBENCH_SIMPLE: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = ?;";
const PGBENCH_PREPARED: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";

/// Runs pgbench while collecting the pids of the backends serving it.
fn pgbench_with_backends(
    dir: &Path,
    name: &str,
    pg: &Postgres,
    opts: &PgbenchOptions,
) -> Result<(pgc::PgbenchRun, Vec<u32>)> {
    let before: Vec<u32> = pg.backends().into_iter().map(|b| b.pid).collect();
    let mut seen: Vec<u32> = Vec::new();
    let run = std::thread::scope(|scope| {
        let bench = scope.spawn(|| pgc::pgbench(dir, name, pg, opts));
        while !bench.is_finished() {
            for b in pg.backends() {
                if !before.contains(&b.pid) && !seen.contains(&b.pid) {
                    seen.push(b.pid);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bench.join()
    });
    let run = run.map_err(|_| anyhow::anyhow!("pgbench thread panicked"))??;
    Ok((run, seen))
}

/// (d) 20,000 select-only transactions at full speed, with pgbench's simple and prepared query
/// modes: every request has its CLIENT span (pgbench) and its SERVER span (one of the
/// backends), prepared mode has one PREPARE span per connection and none per transaction, the
/// kernel loss counters read 0, one `[figures]` line per mode.
#[test]
fn d_twenty_thousand_pgbench_transactions_lose_nothing() -> Result<()> {
    let mut checks = Checks::default();
    let count: u64 = std::env::var("E2E_LOAD_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let clients_n: u32 = 2;
    let mut w = world("d_load")?;
    pgc::pgbench_init(&w.server, 1)?;
    w.start_receiver()?;
    for (mode, text, tool) in [
        (QueryMode::Simple, PGBENCH_SIMPLE, "pgbench-simple"),
        (QueryMode::Prepared, PGBENCH_PREPARED, "pgbench-prepared"),
    ] {
        let probe = LoadProbe::start(w.receiver(), "postgresql")?;
        let started = integration::process::unix_now_ns();
        let opts = PgbenchOptions {
            mode,
            transactions: (count / u64::from(clients_n)) as u32,
            clients: clients_n,
            ..PgbenchOptions::default()
        };
        let t0 = Instant::now();
        let (run, backends) = pgbench_with_backends(&w.dir, tool, &w.server, &opts)?;
        let elapsed = t0.elapsed();
        check!(
            checks,
            run.processed == count && run.failed == 0,
            "{tool}: processed {} failed {}",
            run.processed,
            run.failed
        );
        eprintln!(
            "[e2e:d_load] {tool}: {count} transactions in {:.2} s ({:.0} tps by pgbench), backends {backends:?}",
            elapsed.as_secs_f64(),
            run.tps
        );
        let pgbench_pid = run.run.pid;
        let relevant = |s: &SpanView| {
            s.start_ns >= started && (s.query_text() == Some(text) || s.name.starts_with("PREPARE"))
        };
        // Wait until both sides have every execution, stalls of 5 s give up.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = (0usize, Instant::now());
        loop {
            let execs = w
                .collector
                .wait_for("load spans", Duration::ZERO, relevant, |_| true)?
                .iter()
                .filter(|s| s.query_text() == Some(text) && !s.name.starts_with("PREPARE"))
                .count();
            if execs >= 2 * count as usize || Instant::now() > deadline {
                break;
            }
            if execs != last.0 {
                last = (execs, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        std::thread::sleep(Duration::from_millis(500));
        let spans = w
            .collector
            .wait_for("load spans", Duration::ZERO, relevant, |_| true)?;
        let is_exec = |s: &SpanView| s.query_text() == Some(text) && !s.name.starts_with("PREPARE");
        let client: Vec<&SpanView> = spans
            .iter()
            .filter(|s| s.is_client() && s.pid() == Some(pgbench_pid))
            .collect();
        let server: Vec<&SpanView> = spans
            .iter()
            .filter(|s| s.is_server() && s.pid().is_some_and(|p| backends.contains(&p)))
            .collect();
        let any_server = spans.iter().filter(|s| s.is_server() && is_exec(s)).count();
        let (c_exec, s_exec) = (
            client.iter().filter(|s| is_exec(s)).count(),
            server.iter().filter(|s| is_exec(s)).count(),
        );
        let (c_prep, s_prep) = (
            client
                .iter()
                .filter(|s| s.name.starts_with("PREPARE"))
                .count(),
            server
                .iter()
                .filter(|s| s.name.starts_with("PREPARE"))
                .count(),
        );
        eprintln!(
            "[e2e:d_load] {tool}: CLIENT {c_exec} executions + {c_prep} prepares, SERVER {s_exec} executions + {s_prep} prepares (of {count})"
        );
        check!(
            checks,
            c_exec == count as usize && s_exec == count as usize && any_server == s_exec,
            "{tool}: expected exactly {count} CLIENT and {count} SERVER execution spans, got {c_exec} and {s_exec} ({any_server} SERVER spans from any process); {} spans seen in all",
            spans.len()
        );
        let prepares = if mode == QueryMode::Prepared {
            clients_n as usize
        } else {
            0
        };
        check!(
            checks,
            c_prep == prepares && s_prep == prepares,
            "{tool}: expected {prepares} PREPARE spans per side (one per connection), got {c_prep} and {s_prep}"
        );
        for s in client
            .iter()
            .chain(&server)
            .filter(|s| is_exec(s))
            .take(200)
        {
            check!(
                checks,
                s.name == "SELECT pgbench_accounts"
                    && s.str_attr("db.namespace") == Some(pgs::DATABASE)
                    && s.status_code == STATUS_UNSET,
                "{tool}: {}",
                s.summary()
            );
        }
        let f = probe.finish(w.receiver(), tool, count, (c_exec + s_exec) as u64)?;
        check!(
            checks,
            f.invalid_frames == 0,
            "{tool}: {} invalid frames",
            f.invalid_frames
        );
        w.check_no_loss(&mut checks);
    }
    w.done(checks)
}

/// The harness alone, no receiver: the server and every client work, so a failure above is
/// about the receiver.
#[test]
fn z_harness_without_receiver() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("z_harness")?;
    let run = pgc::psql(
        &w.dir,
        "psql",
        &w.server,
        "SELECT name FROM t1 WHERE id = 2",
    )?;
    check!(checks, run.stdout.trim() == "bob", "psql: {run:?}");
    let run = pgc::psycopg(
        &w.dir,
        "psycopg",
        &w.server,
        &[PgStep::prepared(
            "SELECT name FROM t1 WHERE id = %s",
            vec![json!(1)],
        )],
    )?;
    check!(
        checks,
        run.of_kind("query").first().is_some_and(|r| r.ok()),
        "psycopg: {:?}",
        run.records
    );
    ensure!(w.collector.spans()?.is_empty(), "spans without a receiver?");
    w.done(checks)
}
