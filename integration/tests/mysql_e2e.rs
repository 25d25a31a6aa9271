//! End-to-end: real MariaDB, real clients (the `mariadb` CLI, mysql-connector-python), the
//! stock Collector with a file exporter, and the receiver tracing the whole host. Every test
//! starts its own server, Collector and receiver (unique ports, `target/e2e/<run>/<test>/`)
//! and stops them on drop. Assertions read the Collector's output; unrelated spans (other
//! processes on the host) are tolerated by filtering on the client's and the server's pid.
//!
//! Root only: built with `--features e2e` by `cargo xtask test`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use integration::check;
use integration::clients::mysql::{self as clients, PyClient, Step, StepResult, Via};
use integration::collector::{STATUS_ERROR, SpanView};
use integration::figures::LoadProbe;
use integration::load;
use integration::paths;
use integration::process::{Output, free_port};
use integration::receiver::{LOSS_COUNTERS, Receiver};
use integration::servers::mariadb::{self, MariaDb};
use integration::world::{Checks, World, assert_in_order};
use serde_json::json;

const SPAN_TIMEOUT: Duration = Duration::from_secs(20);
/// Allowed difference between a span's duration and the client's own measurement of a
/// 200 ms query (the issue asks for 1 ms on loopback).
const DURATION_TOLERANCE_NS: i128 = 1_000_000;

/// One test's world: MariaDB (in `db/`, log `mariadbd.log`), Collector; the receiver is started
/// separately (test d opens a connection first).
fn world(name: &str) -> Result<World<MariaDb>> {
    World::start(name, |dir| {
        MariaDb::start(
            &dir.join("db"),
            free_port()?,
            Output::File(dir.join("mariadbd.log")),
        )
    })
}

/// As [`world`] with the server's general query log on (ground truth of commands).
fn world_with_general_log(name: &str) -> Result<World<MariaDb>> {
    World::start(name, |dir| {
        MariaDb::start_with(
            &dir.join("db"),
            free_port()?,
            Output::File(dir.join("mariadbd.log")),
            true,
        )
    })
}

/// [`world`] with the receiver running.
fn world_with_receiver(name: &str) -> Result<World<MariaDb>> {
    let mut w = world(name)?;
    w.start_receiver()?;
    Ok(w)
}

/// MySQL-specific waits on a [`World`].
trait MysqlWorld {
    /// Waits until, for every expected query text, `pid` produced at least one span of `kind`;
    /// returns that pid's spans of that kind.
    fn spans_of(&mut self, pid: u32, client: bool, texts: &[&str]) -> Result<Vec<SpanView>>;
}

impl MysqlWorld for World<MariaDb> {
    fn spans_of(&mut self, pid: u32, client: bool, texts: &[&str]) -> Result<Vec<SpanView>> {
        let what = format!(
            "{} spans from pid {pid} for {texts:?}",
            if client { "CLIENT" } else { "SERVER" }
        );
        self.collector.wait_for(
            &what,
            SPAN_TIMEOUT,
            |s| s.pid() == Some(pid) && s.is_client() == client && s.is_server() != client,
            |spans| {
                texts
                    .iter()
                    .all(|t| spans.iter().any(|s| s.query_text() == Some(*t)))
            },
        )
    }
}

/// Exactly one span with this query text among `spans`.
fn one<'a>(spans: &'a [SpanView], text: &str) -> Result<&'a SpanView> {
    let found: Vec<&SpanView> = spans
        .iter()
        .filter(|s| s.query_text() == Some(text))
        .collect();
    ensure!(
        found.len() == 1,
        "expected exactly one span with db.query.text {text:?}, found {}:\n{}",
        found.len(),
        found
            .iter()
            .map(|s| format!("  {}", s.summary()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(found[0])
}

/// Attributes every MySQL span carries.
fn assert_db_basics(s: &SpanView, summary: Option<&str>, namespace: Option<&str>) -> Result<()> {
    ensure!(
        s.str_attr("db.system.name") == Some("mysql"),
        "db.system.name: {}",
        s.summary()
    );
    ensure!(
        s.end_ns >= s.start_ns,
        "span ends before it starts: {}",
        s.summary()
    );
    if let Some(summary) = summary {
        ensure!(
            s.name == summary,
            "span name {:?}, expected {summary:?}: {}",
            s.name,
            s.summary()
        );
        ensure!(
            s.str_attr("db.query.summary") == Some(summary),
            "db.query.summary: {}",
            s.summary()
        );
    }
    if let Some(ns) = namespace {
        ensure!(
            s.str_attr("db.namespace") == Some(ns),
            "db.namespace should be {ns:?}: {}",
            s.summary()
        );
    }
    Ok(())
}

/// A query, the text the span must carry, and literals that must never appear in any attribute.
struct Case {
    sql: &'static str,
    text: &'static str,
    summary: &'static str,
    secrets: &'static [&'static str],
}

const CLI_CASES: &[Case] = &[
    Case {
        sql: "SELECT name FROM t1 WHERE id = 2",
        text: "SELECT name FROM t1 WHERE id = ?",
        summary: "SELECT t1",
        secrets: &[],
    },
    Case {
        sql: "SELECT id, score FROM t1 WHERE name = 'alice' AND score > 1.25",
        text: "SELECT id, score FROM t1 WHERE name = ? AND score > ?",
        summary: "SELECT t1",
        secrets: &["alice", "1.25"],
    },
    Case {
        sql: "UPDATE t1 SET score = 4.75 WHERE name = 'c''arol'",
        text: "UPDATE t1 SET score = ? WHERE name = ?",
        summary: "UPDATE t1",
        secrets: &["4.75", "arol"],
    },
    Case {
        sql: "INSERT INTO t2 (id, t1_id, note) VALUES (31, 3, 'top-secret-note')",
        text: "INSERT INTO t2 (id, t1_id, note) VALUES (?, ?, ?)",
        summary: "INSERT t2",
        secrets: &["top-secret-note", "31"],
    },
    Case {
        sql: "DELETE FROM t2 WHERE note = x'746f702d736563726574'",
        text: "DELETE FROM t2 WHERE note = ?",
        summary: "DELETE t2",
        secrets: &["746f70"],
    },
];

fn assert_no_secrets(s: &SpanView, secrets: &[&str]) -> Result<()> {
    // Only attributes derived from the query (ports could contain a numeric literal by chance).
    for (k, v) in s.attributes.iter().filter(|(k, _)| k.starts_with("db.")) {
        let v = v.to_string();
        for secret in secrets {
            ensure!(
                !v.contains(secret),
                "literal {secret:?} leaked into {k}={v}"
            );
        }
    }
    ensure!(
        !secrets.iter().any(|x| s.name.contains(x)),
        "literal leaked into the span name {:?}",
        s.name
    );
    Ok(())
}

/// The harness alone (no receiver): server, Collector, both clients and the file exporter path
/// work, so a failure in the tests below is about the receiver.
#[test]
fn a0_harness_servers_and_clients_work_without_the_receiver() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("a0_harness")?;
    let (_, out) = clients::run_cli(
        w.server.cli_tcp(),
        Some(mariadb::DATABASE),
        "SELECT name FROM t1 WHERE id = 2",
    )?;
    check!(checks, out.trim() == "bob", "CLI over TCP: {out:?}");
    let (_, out) = clients::run_cli(
        w.server.cli_socket(),
        Some(mariadb::DATABASE),
        "SELECT COUNT(*) FROM seq_1_to_10000",
    )?;
    check!(
        checks,
        out.trim() == "10000",
        "CLI over the socket: {out:?}"
    );
    let (_, results) = clients::run_python(
        &w.dir,
        "smoke",
        &w.server,
        Via::Socket,
        &[
            Step::sql("SELECT SLEEP(0.01)"),
            Step::prepared("SELECT id FROM t1 WHERE id = ?", vec![json!(1)]),
            Step::sql("SELEC 1"),
        ],
    )?;
    ensure!(
        results.len() == 3 && results[1].rows == Some(1) && results[2].errno == Some(1064),
        "python: {results:?}"
    );
    check!(
        checks,
        w.collector.spans()?.is_empty(),
        "spans without a receiver?"
    );
    check!(
        checks,
        w.collector.endpoint().starts_with("http://127.0.0.1:"),
        "endpoint {}",
        w.collector.endpoint()
    );
    w.done(checks)
}

/// (a) The `mariadb` CLI over TCP and over the Unix socket: one CLIENT span (the CLI) and one
/// SERVER span (mariadbd) per query, sanitised text, network attributes.
#[test]
fn a_mariadb_cli_over_tcp_and_unix_socket() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_receiver("a_cli")?;
    let server_pid = w.server.pid();
    for via in [Via::Tcp, Via::Socket] {
        // Both passes run the same statements: undo the INSERT of the previous pass.
        w.server.root_sql("DELETE FROM e2e.t2 WHERE id = 31")?;
        // Run every query as its own CLI process, in order.
        let mut pids = Vec::new();
        for case in CLI_CASES {
            let cmd = match via {
                Via::Tcp => w.server.cli_tcp(),
                Via::Socket => w.server.cli_socket(),
            };
            let (pid, _) = clients::run_cli(cmd, Some(mariadb::DATABASE), case.sql)?;
            pids.push(pid);
        }
        let mut client_spans = Vec::new();
        let mut server_spans = Vec::new();
        for (case, pid) in CLI_CASES.iter().zip(&pids) {
            let cs = w.spans_of(*pid, true, &[case.text])?;
            client_spans.push(one(&cs, case.text)?.clone());
        }
        let ss = w.spans_of(
            server_pid,
            false,
            &CLI_CASES.iter().map(|c| c.text).collect::<Vec<_>>(),
        )?;
        // The server sees each text once per transport pass; pick this pass's span by time.
        for (case, c) in CLI_CASES.iter().zip(&client_spans) {
            let candidates: Vec<&SpanView> = ss
                .iter()
                .filter(|s| {
                    s.query_text() == Some(case.text)
                        && s.start_ns + 1_000_000 >= c.start_ns
                        && s.start_ns <= c.end_ns
                })
                .collect();
            ensure!(
                candidates.len() == 1,
                "{via:?}: expected exactly one SERVER span within the client span {} for {:?}, found {}:\n{}",
                c.summary(),
                case.sql,
                candidates.len(),
                candidates
                    .iter()
                    .map(|s| format!("  {}", s.summary()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            server_spans.push(candidates[0].clone());
        }
        for ((case, c), s) in CLI_CASES.iter().zip(&client_spans).zip(&server_spans) {
            for span in [c, s] {
                checks.add(assert_db_basics(
                    span,
                    Some(case.summary),
                    Some(mariadb::DATABASE),
                ));
                checks.add(assert_no_secrets(span, case.secrets));
                check!(
                    checks,
                    span.status_code != STATUS_ERROR,
                    "unexpected error status: {}",
                    span.summary()
                );
            }
            // The server's work happens inside the client's round trip.
            check!(
                checks,
                s.start_ns + 1_000_000 >= c.start_ns && s.end_ns <= c.end_ns + 1_000_000,
                "SERVER span not inside CLIENT span:\n  {}\n  {}",
                c.summary(),
                s.summary()
            );
            match via {
                Via::Tcp => {
                    for span in [c, s] {
                        check!(
                            checks,
                            span.str_attr("network.transport") == Some("tcp"),
                            "transport: {}",
                            span.summary()
                        );
                        check!(
                            checks,
                            span.int_attr("server.port") == Some(i64::from(w.server.port)),
                            "server.port: {}",
                            span.summary()
                        );
                        check!(
                            checks,
                            span.str_attr("server.address") == Some("127.0.0.1"),
                            "server.address: {}",
                            span.summary()
                        );
                        check!(
                            checks,
                            span.str_attr("network.peer.address") == Some("127.0.0.1"),
                            "peer address: {}",
                            span.summary()
                        );
                    }
                    check!(
                        checks,
                        c.int_attr("network.peer.port") == Some(i64::from(w.server.port)),
                        "client peer port: {}",
                        c.summary()
                    );
                    let client_port = s
                        .int_attr("network.peer.port")
                        .context("server span without network.peer.port")?;
                    check!(
                        checks,
                        client_port != i64::from(w.server.port) && client_port > 0,
                        "server peer port: {}",
                        s.summary()
                    );
                }
                Via::Socket => {
                    let path = w.server.socket.display().to_string();
                    for span in [c, s] {
                        check!(
                            checks,
                            span.str_attr("network.transport") == Some("unix"),
                            "transport: {}",
                            span.summary()
                        );
                        if let Some(addr) = span.str_attr("server.address") {
                            check!(
                                checks,
                                addr == path,
                                "server.address {addr:?} should be the socket path {path:?}"
                            );
                        }
                        check!(
                            checks,
                            span.int_attr("server.port").is_none(),
                            "no port on a Unix socket: {}",
                            span.summary()
                        );
                    }
                }
            }
        }
        checks.add(assert_in_order(&client_spans.iter().collect::<Vec<_>>()));
        checks.add(assert_in_order(&server_spans.iter().collect::<Vec<_>>()));
        eprintln!(
            "[e2e:a_cli] {via:?}: {} queries → 1 CLIENT + 1 SERVER span each",
            CLI_CASES.len()
        );
    }
    w.done(checks)
}

/// Both sides of a Python client run: `(side, spans of that process and kind)` for each side
/// whose spans for every text arrived; a side that never delivered is a failed check (so the
/// other side is still asserted). Waits a moment after arrival so duplicates would show up.
fn python_sides(
    w: &mut World<MariaDb>,
    checks: &mut Checks,
    pid: u32,
    texts: &[&str],
) -> Vec<(&'static str, Vec<SpanView>)> {
    let server_pid = w.server.pid();
    let mut arrived = Vec::new();
    for (side, p, client) in [("CLIENT", pid, true), ("SERVER", server_pid, false)] {
        match w.spans_of(p, client, texts) {
            Ok(_) => arrived.push((side, p, client)),
            Err(e) => checks.0.push(format!("{side}: {e:#}")),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let all = w.collector.spans().unwrap_or_default();
    arrived
        .into_iter()
        .map(|(side, p, client)| {
            let spans = all
                .iter()
                .filter(|s| {
                    s.pid() == Some(p) && s.is_client() == client && s.is_server() != client
                })
                .cloned()
                .collect();
            (side, spans)
        })
        .collect()
}

/// (b) Server-side prepared statements (COM_STMT_PREPARE / COM_STMT_EXECUTE): spans carry the
/// prepared text with `?`; executions are named from its summary, prepares `PREPARE {summary}`;
/// one span per execute and one per
/// prepare (an exchange of its own with the same text). The server's general log is the
/// ground truth for how often the connector prepared (mysql-connector-python 26 prepares,
/// resets, executes and closes for every `execute`). COM_STMT_RESET / COM_STMT_CLOSE are not
/// query executions and must not be counted as one.
#[test]
fn b_prepared_statements_from_python() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_general_log("b_prep")?;
    w.start_receiver()?;
    let select = "SELECT name, score FROM t1 WHERE id = ?";
    let update = "UPDATE t2 SET note = ? WHERE id = ?";
    let steps = vec![
        Step::prepared(select, vec![json!(1)]),
        Step::prepared(select, vec![json!(2)]),
        Step::prepared(select, vec![json!(3)]),
        Step::prepared(update, vec![json!("prepared-secret"), json!(10)]),
    ];
    let (pid, results) = clients::run_python(&w.dir, "prep", &w.server, Via::Tcp, &steps)?;
    ensure!(
        results.iter().all(|r| r.ok == Some(true)),
        "client steps failed: {results:?}"
    );
    let conn = results[0].connection_id.context("no connection id")?;
    let log = w.server.general_log_commands(conn)?;
    let prepares = |text: &str| {
        log.iter()
            .filter(|(c, a)| c == "Prepare" && a == text)
            .count()
    };
    let executes = |prefix: &str| {
        log.iter()
            .filter(|(c, a)| c == "Execute" && a.starts_with(prefix))
            .count()
    };
    let expect = [
        (
            select,
            "SELECT t1",
            prepares(select),
            executes("SELECT name, score FROM t1"),
        ),
        (
            update,
            "UPDATE t2",
            prepares(update),
            executes("UPDATE t2 SET note"),
        ),
    ];
    let cmds: Vec<&str> = log.iter().map(|(c, _)| c.as_str()).collect();
    eprintln!("[e2e:b_prep] server general log for connection {conn}: {cmds:?}");
    check!(
        checks,
        expect[0].3 == 3 && expect[1].3 == 1,
        "the server saw other executes than sent: {log:?}"
    );
    for (side, spans) in python_sides(&mut w, &mut checks, pid, &[select, update]) {
        for (text, summary, prepares, executes) in expect {
            let found: Vec<&SpanView> = spans
                .iter()
                .filter(|s| s.query_text() == Some(text))
                .collect();
            check!(
                checks,
                found.len() == prepares + executes,
                "{side}: expected {} spans ({prepares} prepares + {executes} executes) with text {text:?}, found {}:\n{}",
                prepares + executes,
                found.len(),
                found
                    .iter()
                    .map(|s| format!("  {}", s.summary()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            // A prepare is named apart from the execution it prepares (`PREPARE {summary}`,
            // `db.operation.name=PREPARE`, no `db.query.summary`), so span metrics never count
            // it as the query.
            let prepare_name = format!("PREPARE {summary}");
            let (prep, exec): (Vec<&SpanView>, Vec<&SpanView>) =
                found.iter().partition(|s| s.name == prepare_name);
            check!(
                checks,
                prep.len() == prepares && exec.len() == executes,
                "{side}: expected {prepares} spans named {prepare_name:?} and {executes} named {summary:?}, found {} and {}",
                prep.len(),
                exec.len()
            );
            for s in &prep {
                checks.add(assert_db_basics(s, None, Some(mariadb::DATABASE)));
                check!(
                    checks,
                    s.str_attr("db.operation.name") == Some("PREPARE")
                        && s.str_attr("db.query.summary").is_none(),
                    "{side}: a prepare span must carry db.operation.name=PREPARE and no db.query.summary: {}",
                    s.summary()
                );
            }
            for s in &exec {
                checks.add(assert_db_basics(s, Some(summary), Some(mariadb::DATABASE)));
            }
            for s in &found {
                checks.add(assert_no_secrets(s, &["prepared-secret"]));
            }
            checks.add(assert_in_order(&found));
        }
    }
    w.done(checks)
}

/// (c) A scripted set of distinct queries on one connection: an error, a 200 ms query timed
/// against the client, a 10,000-row result, a multi-statement query, database switches.
#[test]
fn c_scripted_queries_errors_durations_rows_multi_and_db_switch() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world_with_receiver("c_script")?;
    struct Q {
        step: Step,
        text: Option<&'static str>,
        namespace: &'static str,
    }
    let qs = vec![
        Q {
            step: Step::sql("SELECT name FROM t1 WHERE id = 1"),
            text: Some("SELECT name FROM t1 WHERE id = ?"),
            namespace: "e2e",
        },
        Q {
            step: Step::sql("SELEC 1"),
            text: None,
            namespace: "e2e",
        },
        Q {
            step: Step::sql("SELECT SLEEP(0.2)"),
            text: Some("SELECT SLEEP(?)"),
            namespace: "e2e",
        },
        Q {
            step: Step::sql("SELECT seq FROM seq_1_to_10000"),
            text: Some("SELECT seq FROM seq_1_to_10000"),
            namespace: "e2e",
        },
        Q {
            step: Step::sql("SELECT id FROM t1 WHERE id = 1; SELECT note FROM t2 WHERE id = 10"),
            text: Some("SELECT id FROM t1 WHERE id = ?; SELECT note FROM t2 WHERE id = ?"),
            namespace: "e2e",
        },
        Q {
            step: Step::sql("USE other"),
            text: Some("USE other"),
            namespace: "e2e",
        },
        Q {
            step: Step::sql("SELECT v FROM t3 WHERE id = 1"),
            text: Some("SELECT v FROM t3 WHERE id = ?"),
            namespace: "other",
        },
        Q {
            step: Step::init_db("e2e"),
            text: None,
            namespace: "other",
        },
        Q {
            step: Step::sql("SELECT score FROM t1 WHERE id = 3"),
            text: Some("SELECT score FROM t1 WHERE id = ?"),
            namespace: "e2e",
        },
    ];
    let steps: Vec<Step> = qs.iter().map(|q| q.step.clone()).collect();
    let (pid, results) = clients::run_python(&w.dir, "script", &w.server, Via::Tcp, &steps)?;
    ensure!(
        results.len() == qs.len(),
        "client printed {} results for {} steps",
        results.len(),
        qs.len()
    );
    check!(
        checks,
        results[1].errno == Some(1064),
        "`SELEC 1` should fail with 1064: {:?}",
        results[1]
    );
    check!(
        checks,
        results[3].rows == Some(10_000),
        "10,000 rows expected: {:?}",
        results[3]
    );
    let texts: Vec<&str> = qs.iter().filter_map(|q| q.text).collect();
    for (side, spans) in python_sides(&mut w, &mut checks, pid, &texts) {
        let client = side == "CLIENT";
        let mut ordered: Vec<&SpanView> = Vec::new();
        for (i, (q, r)) in qs.iter().zip(&results).enumerate() {
            let found: Vec<&SpanView> = match (q.text, &q.step) {
                (Some(text), _) => spans
                    .iter()
                    .filter(|s| s.query_text() == Some(text))
                    .collect(),
                (None, Step::InitDb { .. }) => spans
                    .iter()
                    .filter(|s| s.str_attr("db.operation.name") == Some("INIT_DB"))
                    .collect(),
                (None, _) => spans
                    .iter()
                    .filter(|s| s.str_attr("db.response.status_code") == Some("1064"))
                    .collect(),
            };
            let sql = match &q.step {
                Step::Sql { sql, .. } => sql.clone(),
                _ => "COM_INIT_DB e2e".to_string(),
            };
            if found.len() != 1 {
                checks.0.push(format!(
                    "{side} step {i} ({sql}): expected exactly one span, found {}:\n{}",
                    found.len(),
                    found
                        .iter()
                        .map(|s| format!("  {}", s.summary()))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
                continue;
            }
            let span = found[0];
            checks.add(
                assert_db_basics(span, None, Some(q.namespace))
                    .with_context(|| format!("{side} step {i} ({sql})")),
            );
            if q.text.is_some() {
                check!(
                    checks,
                    span.status_code != STATUS_ERROR,
                    "{side}: unexpected error: {}",
                    span.summary()
                );
            } else if i == 1 {
                check!(
                    checks,
                    span.status_code == STATUS_ERROR,
                    "{side}: 1064 span status: {}",
                    span.summary()
                );
                check!(
                    checks,
                    span.str_attr("error.type") == Some("1064"),
                    "{side}: error.type: {}",
                    span.summary()
                );
                if let Some(t) = span.query_text() {
                    check!(
                        checks,
                        !t.contains('1'),
                        "{side}: literal in the failed query's text {t:?}"
                    );
                }
            }
            // Span = first request byte → last response byte, inside the client's measurement.
            let client_ns = i128::from(r.duration_ns.unwrap_or(0));
            check!(
                checks,
                span.duration_ns() <= client_ns + DURATION_TOLERANCE_NS,
                "{side} step {i} ({sql}): span {:.3} ms longer than the client's {:.3} ms: {}",
                span.duration_ns() as f64 / 1e6,
                client_ns as f64 / 1e6,
                span.summary()
            );
            if i == 2 {
                let d = span.duration_ns();
                check!(
                    checks,
                    d >= 200_000_000,
                    "{side}: SLEEP(0.2) span only {:.3} ms",
                    d as f64 / 1e6
                );
                if client {
                    check!(
                        checks,
                        (d - client_ns).abs() <= DURATION_TOLERANCE_NS,
                        "SLEEP(0.2): span {:.3} ms vs client {:.3} ms (more than 1 ms apart)",
                        d as f64 / 1e6,
                        client_ns as f64 / 1e6
                    );
                }
                eprintln!(
                    "[e2e:c_script] {side} SLEEP(0.2): span {:.3} ms, client {:.3} ms",
                    d as f64 / 1e6,
                    client_ns as f64 / 1e6
                );
            }
            ordered.push(span);
        }
        checks.add(assert_in_order(&ordered).with_context(|| side.to_string()));
    }
    w.done(checks)
}

/// (d) A connection opened before the receiver started still yields correct spans.
#[test]
fn d_connection_opened_before_the_receiver() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("d_before")?;
    let steps = vec![
        // The receiver cannot know whether a connection it did not see open is in the middle
        // of a message: it infers the protocol only where the conversation turns, so this
        // first exchange has no span (see `ebpf_common::turn`; attach_e2e asserts the rule).
        Step::sql("SELECT 1"),
        Step::sql("SELECT note FROM t2 WHERE t1_id = 2"),
        Step::sql("SELECT COUNT(*) FROM t1 WHERE score > 2.5"),
        Step::prepared("SELECT name FROM t1 WHERE score < ?", vec![json!(3.0)]),
        Step::sql("SELEC 'early'"),
    ];
    let mut client = PyClient::spawn(&w.dir, "held", &w.server, Via::Tcp, &steps, true)?;
    client.wait_connected(Duration::from_secs(30))?;
    let pid = client.pid();
    w.start_receiver()?;
    client.go()?;
    let results: Vec<StepResult> = client.finish(Duration::from_secs(60))?;
    ensure!(results.len() == steps.len(), "client results: {results:?}");
    let texts = [
        "SELECT note FROM t2 WHERE t1_id = ?",
        "SELECT COUNT(*) FROM t1 WHERE score > ?",
        "SELECT name FROM t1 WHERE score < ?",
    ];
    for (side, spans) in python_sides(&mut w, &mut checks, pid, &texts) {
        let (a, b) = match (one(&spans, texts[0]), one(&spans, texts[1])) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                for e in [a.err(), b.err()].into_iter().flatten() {
                    checks.0.push(format!("{side}: {e:#}"));
                }
                continue;
            }
        };
        checks.add(assert_in_order(&[a, b]));
        for s in [a, b] {
            checks.add(assert_db_basics(s, None, None));
            // The handshake was missed: the namespace is unknown, never wrong.
            if let Some(ns) = s.str_attr("db.namespace") {
                check!(
                    checks,
                    ns == mariadb::DATABASE,
                    "{side}: wrong db.namespace {ns:?}"
                );
            }
            check!(
                checks,
                s.str_attr("network.transport") == Some("tcp"),
                "{side}: transport: {}",
                s.summary()
            );
            check!(
                checks,
                s.int_attr("server.port") == Some(i64::from(w.server.port)),
                "{side}: server.port: {}",
                s.summary()
            );
            check!(
                checks,
                s.str_attr("network.peer.address") == Some("127.0.0.1"),
                "{side}: peer address: {}",
                s.summary()
            );
            check!(
                checks,
                s.int_attr("network.peer.port").is_some(),
                "{side}: network.peer.port missing: {}",
                s.summary()
            );
        }
        // Prepared after the receiver started: the text is known.
        let prepared = spans
            .iter()
            .filter(|s| s.query_text() == Some(texts[2]))
            .count();
        check!(
            checks,
            prepared >= 2,
            "{side}: prepare + execute after attach should carry the text, got {prepared} spans"
        );
        let errors = spans
            .iter()
            .filter(|s| s.str_attr("db.response.status_code") == Some("1064"))
            .count();
        check!(
            checks,
            errors == 1,
            "{side}: expected one 1064 span, got {errors}"
        );
    }
    w.done(checks)
}

/// (e) 20,000 queries at full speed from Python (mysql-connector): every query has its span on
/// both sides and the kernel loss counters read 0.
#[test]
fn e_twenty_thousand_queries_lose_nothing() -> Result<()> {
    load_test("e_load", load::LoadClient::Python)
}

/// (e) as above from the `mariadb` CLI (libmariadb reads whole packets; a second client
/// implementation, so a client-specific capture problem shows up as a difference).
#[test]
fn e_twenty_thousand_cli_queries_lose_nothing() -> Result<()> {
    load_test("e_load_cli", load::LoadClient::Cli)
}

fn load_test(name: &'static str, client: load::LoadClient) -> Result<()> {
    let mut checks = Checks::default();
    let count: u64 = std::env::var("E2E_LOAD_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut w = world_with_receiver(name)?;
    let before = w.receiver().metrics()?;
    for key in LOSS_COUNTERS {
        check!(
            checks,
            before.has(key),
            "metric {key} is not exported:\n{}",
            before.family("ebpf_receiver_kernel")
        );
    }
    let probe = LoadProbe::start(w.receiver(), "mysql")?;
    let r = match client {
        load::LoadClient::Python => load::run_load(&w.dir, "load", &w.server, count)?,
        load::LoadClient::Cli => load::run_load_cli(&w.dir, "load", &w.server, count)?,
    };
    check!(
        checks,
        r.errors == 0 && r.count == count,
        "load client: {r:?}"
    );
    eprintln!(
        "[e2e:{name}] {count} queries in {:.2} s ({:.0} q/s)",
        r.elapsed.as_secs_f64(),
        r.qps
    );
    let server_pid = w.server.pid();
    let (c, s) = load::wait_load_spans(
        &mut w.collector,
        &r,
        server_pid,
        count as usize,
        Duration::from_secs(60),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let (c2, s2) = load::count_load_spans(&mut w.collector, &r, server_pid)?;
    let m = w.receiver().metrics()?;
    let losses: Vec<String> = LOSS_COUNTERS
        .iter()
        .map(|k| format!("{k} = {}", m.get(k)))
        .collect();
    let dropped = m.sum("ebpf_receiver_spans_dropped_total");
    let tool = match client {
        load::LoadClient::Python => "mysql-connector-python",
        load::LoadClient::Cli => "mariadb-cli",
    };
    probe.finish(w.receiver(), tool, count, (c2 + s2) as u64)?;
    eprintln!(
        "[e2e:{name}] load spans: CLIENT {c2}, SERVER {s2} of {count}; {}; spans dropped {dropped}",
        losses.join(", ")
    );
    check!(
        checks,
        c == count as usize && s == count as usize && c2 == c && s2 == s,
        "expected exactly {count} CLIENT and {count} SERVER load spans, got {c2} and {s2}\nmetrics:\n{}",
        m.family("ebpf_receiver_")
    );
    for key in LOSS_COUNTERS {
        check!(
            checks,
            m.get(key) == 0.0,
            "{key} = {} (kernel lost events)",
            m.get(key)
        );
    }
    check!(
        checks,
        dropped == 0.0,
        "spans dropped: {}",
        m.family("ebpf_receiver_spans_dropped_total")
    );
    w.done(checks)
}

/// SIGTERM hands every queued span to the Collector before the receiver exits: spans are held
/// back by a batch delay far longer than the test, so only the shutdown flush can deliver them.
#[test]
fn f_sigterm_flushes_queued_spans() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("f_sigterm")?;
    let metrics_port = free_port()?;
    let config = w.dir.join("receiver-hold.yaml");
    std::fs::write(
        &config,
        format!(
            "exporter:\n  endpoint: \"{}\"\n  max_batch_delay_ms: 600000\n  max_batch_spans: 100000\n\
             telemetry:\n  metrics_address: \"127.0.0.1:{metrics_port}\"\n",
            w.collector.endpoint()
        ),
    )?;
    let mut receiver = Receiver::start_with_config(
        &config,
        metrics_port,
        Output::File(w.dir.join("receiver.log")),
    )?;
    let texts = [
        "SELECT id FROM t1 WHERE id = ?",
        "SELECT note FROM t2 WHERE id = ?",
    ];
    let mut pids = Vec::new();
    for sql in [
        "SELECT id FROM t1 WHERE id = 1",
        "SELECT note FROM t2 WHERE id = 2",
    ] {
        let (pid, _) = clients::run_cli(w.server.cli_tcp(), Some(mariadb::DATABASE), sql)?;
        pids.push(pid);
    }
    // Wait until the receiver has built the spans (counted), then stop it.
    integration::process::poll_until(
        "the receiver to build 4 spans",
        SPAN_TIMEOUT,
        Duration::from_millis(50),
        || {
            let m = receiver.metrics()?;
            Ok((m.sum("ebpf_receiver_spans_created_total") >= 4.0).then_some(()))
        },
    )?;
    let exported_before = receiver
        .metrics()?
        .sum("ebpf_receiver_spans_exported_total");
    check!(
        checks,
        exported_before == 0.0,
        "spans left before SIGTERM: {exported_before}"
    );
    let started = std::time::Instant::now();
    let clean = receiver.stop();
    eprintln!(
        "[e2e:f_sigterm] receiver exited {:.0} ms after SIGTERM",
        started.elapsed().as_secs_f64() * 1e3
    );
    check!(
        checks,
        clean,
        "the receiver did not exit cleanly after SIGTERM"
    );
    // The Collector writes its file every 50 ms: wait for both sides of both queries.
    let all = w.collector.wait_for(
        "CLIENT and SERVER spans of both queries after SIGTERM",
        SPAN_TIMEOUT,
        |s| s.query_text().is_some_and(|t| texts.contains(&t)),
        |spans| {
            texts.iter().all(|t| {
                let of = |client: bool| {
                    spans
                        .iter()
                        .any(|s| s.query_text() == Some(*t) && s.is_client() == client)
                };
                of(true) && of(false)
            })
        },
    )?;
    for t in texts {
        for (side, client) in [("CLIENT", true), ("SERVER", false)] {
            let n = all
                .iter()
                .filter(|s| s.query_text() == Some(t) && s.is_client() == client)
                .count();
            check!(
                checks,
                n == 1,
                "{t:?}: {n} {side} spans after the flush, expected 1"
            );
        }
    }
    let client_pids: Vec<u32> = all
        .iter()
        .filter(|s| s.is_client())
        .filter_map(|s| s.pid())
        .collect();
    check!(
        checks,
        pids.iter().all(|p| client_pids.contains(p)),
        "CLIENT spans {client_pids:?} do not come from the CLI processes {pids:?}"
    );
    w.done(checks)
}

/// Every Collector pipeline we ship is valid for the stock Collector we build (CONVENTIONS §7).
#[test]
fn z_collector_pipelines_we_ship_are_valid() -> Result<()> {
    let mut checks = Checks::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(paths::collector_config_dir())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("builder-config.yaml"))
        .collect();
    files.sort();
    ensure!(
        files.len() >= 3,
        "expected sidecar, test and gateway pipelines: {files:?}"
    );
    for f in files {
        let out = std::process::Command::new(paths::collector_bin())
            .arg("validate")
            .arg("--config")
            .arg(&f)
            // Placeholders the pipelines read from the environment.
            .env("E2E_OTLP_PORT", "4317")
            .env("E2E_SPANS_FILE", "/dev/null")
            .env("GATEWAY_OTLP_ENDPOINT", "127.0.0.1:4317")
            .env("BACKEND_OTLP_ENDPOINT", "127.0.0.1:4317")
            .output()?;
        check!(
            checks,
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    checks.finish()
}
