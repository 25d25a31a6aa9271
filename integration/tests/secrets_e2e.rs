//! No secret leaves the receiver (issue 8, R8).
//!
//! One world with MariaDB, PostgreSQL, Redis and nginx, and the receiver with `log_level:
//! trace` (every crate's trace and debug lines: ours, tonic, h2, hyper) and a canary gRPC
//! header to the Collector. Real clients then put a distinct canary in every place a secret
//! travels:
//! - MySQL: passwords over TCP and the Unix socket (mysql-connector-python), `COM_CHANGE_USER`,
//!   a password on the `mariadb` command line, `CREATE USER … IDENTIFIED BY`, cleartext
//!   passwords (accounts checked by PAM in the server's own mount namespace: the `dialog`
//!   plugin sends them in clear) over TCP and the socket; literals `'…'`,
//!   `"…"`, `0x…`, `X'…'`, `b'…'`, `_utf8mb4'…'`, `_utf8'…'`, `N'…'`, escaped quotes, numbers,
//!   comments; binary-protocol parameters (text and blob); a literal the server's error text
//!   echoes (duplicate key); a literal past the query-text cap; a literal cut by the capture cap.
//! - PostgreSQL: SCRAM, md5 and cleartext (`password`, over TCP and the socket) logins;
//!   `CREATE ROLE … PASSWORD`; Bind parameters (text, binary, bytea); literals `'…'`, `E'…'`,
//!   `$$…$$`, `$tag$…$tag$`, `U&'…'`, `B'…'`, `X'…'`, `::bytea`, numbers, comments (nested);
//!   COPY data; literals and parameters the server's errors echo; a literal cut by the capture
//!   cap.
//! - Redis: `AUTH` (redis-py and `redis-cli -a`), a failed `AUTH`, `HELLO 3 AUTH user pass`,
//!   `ACL SETUSER >pass`, `CONFIG SET masterauth`, `MIGRATE … AUTH`, keys, values, `EVAL`,
//!   `PUBLISH`, `ECHO`.
//! - HTTP/1.1: `Authorization: Bearer`, Basic (curl `-u`, URL userinfo), `Cookie`, sensitive
//!   query keys (`token`, `password`, `api_key`, `access_token`, `sig`), `Proxy-Authorization`,
//!   `X-Api-Key`, a form body, `Set-Cookie` and a body in responses, userinfo in an
//!   absolute-form target and in `Host`.
//!
//! Every canary is searched for as itself (case-insensitively), hex, base64 (three alignments,
//! two alphabets), SHA-1 and SHA-256 (hex and base64), and extra forms (`user:pass` in base64,
//! bit strings) in: the Collector's raw output, the Collector's log, the receiver's log,
//! `/metrics` (and `/healthz`, `/readyz`), and crash output: the receiver is killed with SIGABRT
//! with `RLIMIT_CORE` raised, its stderr searched, and no core file may appear (a core holds
//! every captured byte; a control process in the same conditions shows the host does write
//! cores). 0 hits are asserted, and so is the arrival of the spans of those exchanges, so the
//! test cannot pass by seeing nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use integration::canary::{self, Canary, Haystack};
use integration::check;
use integration::clients::{self, http, python, run_plan};
use integration::collector::SpanView;
use integration::process::{Output, free_port, poll_until};
use integration::receiver::{http_get, test_config};
use integration::servers::mariadb::MariaDb;
use integration::servers::nginx::{Nginx, NginxOptions};
use integration::servers::postgres::Postgres;
use integration::servers::redis::{Redis, RedisOptions};
use integration::world::{Checks, World};
use serde_json::{Value, json};

/// The receiver's per-syscall capture cap (its default); literals are cut across it.
const CAPTURE_BYTES: usize = 16384;

/// Every canary of the run, by label.
#[derive(Default)]
struct Book(Vec<Canary>);

impl Book {
    fn add(&mut self, c: Canary) -> Canary {
        self.0.push(c.clone());
        c
    }
    fn fresh(&mut self, label: &str, tag: &str) -> String {
        self.add(Canary::new(label, tag)).value
    }
}

/// Spans that must arrive: `(what, pid, CLIENT?, at least)`.
struct Expect {
    what: String,
    pid: u32,
    client: bool,
    min: usize,
}

fn expect(v: &mut Vec<Expect>, what: &str, pid: u32, client: bool, min: usize) {
    v.push(Expect {
        what: what.to_string(),
        pid,
        client,
        min,
    });
}

fn count(spans: &[&SpanView], e: &Expect) -> usize {
    spans
        .iter()
        .filter(|s| s.pid() == Some(e.pid) && s.is_client() == e.client)
        .count()
}

/// A statement whose quoted literal holds `secret` entirely inside the first `CAPTURE_BYTES`
/// bytes of the write, while the literal itself ends past them: the receiver sees an
/// unterminated literal. `header` is the protocol's bytes before the SQL text in that write.
/// The statement is 30,000 bytes long: libpq sends a long message in one `send` of a multiple
/// of 8 KiB (24 KiB here), so the cut falls inside one syscall, as with MySQL's single write.
fn cut_statement(prefix: &str, secret: &str, header: usize) -> String {
    let pad = CAPTURE_BYTES - header - prefix.len() - secret.len() - 12;
    let tail = 30_000 - prefix.len() - pad - secret.len() - 1;
    format!("{prefix}{}{secret}{}'", "p".repeat(pad), "q".repeat(tail))
}

/// A canary sent as HTTP Basic credentials `sec:<value>`: their base64 is a form too.
fn basic_canary(label: &str, tag: &str) -> Canary {
    let c = Canary::new(label, tag);
    let b64 = canary::base64(format!("sec:{}", c.value).as_bytes());
    c.with_extra("base64 of user:password", b64)
}

/// An `IN` list longer than the exported query text (2 KiB) with `secret` at its end.
fn long_in_list(prefix: &str, secret: &str) -> String {
    let items: Vec<String> = (0..300).map(|i| format!("'item{i:04}'")).collect();
    format!("{prefix} IN ({}, '{secret}')", items.join(", "))
}

fn mysql_plan(connect: Value, steps: Vec<Value>) -> Value {
    json!({"proto": "mysql", "connect": connect, "steps": steps})
}

fn sql(s: &str) -> Value {
    json!({"sql": s})
}

struct Run {
    name: String,
    pid: u32,
    failed_steps: usize,
}

fn plan_run(dir: &Path, name: &str, plan: &Value) -> Result<Run> {
    let r = run_plan(dir, name, python("secrets_client.py"), plan)?;
    let failed = r.of_kind("step").iter().filter(|s| !s.ok()).count();
    Ok(Run {
        name: name.to_string(),
        pid: r.pid(),
        failed_steps: failed,
    })
}

#[test]
fn no_canary_leaves_the_receiver() -> Result<()> {
    let mut checks = Checks::default();
    let mut book = Book::default();
    let mut expects = Vec::new();

    // Canaries the servers need before they start.
    let redis_pw = book.fresh("redis requirepass: AUTH (redis-py, redis-cli -a)", "rdauth");
    let set_cookie = book.fresh("HTTP response Set-Cookie", "setck");
    let resp_body = book.fresh("HTTP response body", "rbody");
    let nginx_conf = format!(
        "location = /sec/cookie {{ add_header Set-Cookie \"sid={set_cookie}; HttpOnly\" always; return 200 \"ok\\n\"; }}\n\
         location = /sec/body {{ default_type text/plain; return 200 \"{resp_body}\\n\"; }}\n\
         location /sec/ {{ return 200 \"ok\\n\"; }}\n"
    );
    let pam_tcp = book.fresh(
        "mysql cleartext password (PAM, dialog plugin) over TCP",
        "mypamt",
    );
    let pam_sock = book.fresh(
        "mysql cleartext password (PAM, dialog plugin) over the Unix socket",
        "mypams",
    );
    let mut w = World::start("secrets", |d| {
        let pam_d = pam_services(d, &[("e2e-pam-tcp", &pam_tcp), ("e2e-pam-sock", &pam_sock)])?;
        let my = MariaDb::start_with_pam(
            &d.join("mariadb"),
            free_port()?,
            Output::File(d.join("mariadbd.log")),
            &pam_d,
        )?;
        let pg = Postgres::start(&d.join("pg"))?;
        let rd = Redis::start_with(
            &d.join("redis"),
            &RedisOptions {
                password: Some(redis_pw.clone()),
                ..RedisOptions::default()
            },
        )?;
        let ng = Nginx::start_with(
            &d.join("nginx"),
            &NginxOptions {
                server_directives: nginx_conf.clone(),
                ..NginxOptions::default()
            },
        )?;
        Ok((my, pg, rd, ng))
    })?;

    // The receiver: trace logs from every crate, a canary header on its exports.
    let header = book.fresh("exporter.headers value (gRPC metadata)", "hdr");
    let metrics_port = free_port()?;
    let config = test_config(&w.collector.endpoint(), metrics_port)
        .replace("log_level: info", "log_level: trace")
        .replace(
            "  max_batch_delay_ms: 50\n",
            &format!("  max_batch_delay_ms: 50\n  headers:\n    x-api-key: \"{header}\"\n"),
        );
    assert!(config.contains("log_level: trace") && config.contains(&header));
    w.start_receiver_with_config(&config, metrics_port)?;
    let dir = w.dir.clone();

    mysql_section(&mut w, &mut book, &mut expects, &mut checks, &dir)?;
    mysql_cleartext(&w, &mut expects, &dir, &pam_tcp, &pam_sock)?;
    postgres_section(&mut w, &mut book, &mut expects, &mut checks, &dir)?;
    redis_section(
        &mut w,
        &mut book,
        &mut expects,
        &mut checks,
        &dir,
        &redis_pw,
    )?;
    http_section(&mut w, &mut book, &mut expects, &dir)?;

    // The spans of those exchanges arrived (a test that saw nothing would find no canary).
    let relevant = |s: &SpanView| expects.iter().any(|e| s.pid() == Some(e.pid));
    let waited = w.wait_spans("the spans of every canary exchange", relevant, |spans| {
        expects.iter().all(|e| count(spans, e) >= e.min)
    });
    let spans = match waited {
        Ok(s) => s,
        Err(e) => {
            checks.fail(format!("{e:#}"));
            w.collector.spans()?
        }
    };
    let refs: Vec<&SpanView> = spans.iter().collect();
    for e in &expects {
        let n = count(&refs, e);
        check!(
            checks,
            n >= e.min,
            "{}: {n} {} spans from pid {}, expected at least {}",
            e.what,
            if e.client { "CLIENT" } else { "SERVER" },
            e.pid,
            e.min
        );
    }
    let span_total: usize = expects.iter().map(|e| count(&refs, e)).sum();
    // Let the last exports and their log lines land.
    std::thread::sleep(Duration::from_millis(500));

    // Search every place the receiver writes to, and the Collector's.
    let metrics_text = ["/metrics", "/healthz", "/readyz"]
        .iter()
        .map(|p| {
            http_get(metrics_port, p)
                .map(|(_, b)| b)
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n");
    check!(
        checks,
        metrics_text.contains("ebpf_receiver_"),
        "the metrics scrape is empty: nothing searched"
    );
    // The two statements cut by the capture cap really were cut (else those cases test
    // nothing): the kernel counts each truncated syscall.
    let truncated = integration::receiver::Metrics::parse(&metrics_text)
        .get("ebpf_receiver_kernel_drops_total{reason=\"capture_truncated\"}");
    check!(
        checks,
        truncated >= 2.0,
        "{truncated} truncated captures: the literals meant to be cut by the {CAPTURE_BYTES}-byte cap were not"
    );
    let collector_out = std::fs::read(&w.collector.spans_file)?;
    let collector_log = std::fs::read(dir.join("otelcol.log")).unwrap_or_default();
    let receiver_log = std::fs::read(dir.join("receiver.log"))?;
    let log_text = String::from_utf8_lossy(&receiver_log);
    let verbose_lines = log_text
        .lines()
        .filter(|l| l.contains("TRACE") || l.contains("DEBUG"))
        .count();
    check!(
        checks,
        verbose_lines > 0,
        "the receiver's log has no TRACE/DEBUG line: log_level trace did not apply"
    );
    let log_len = receiver_log.len();

    // Crash output: SIGABRT with core dumps allowed.
    let crash = crash_receiver(&mut w, &dir, &mut checks)?;
    let receiver_log_after = std::fs::read(dir.join("receiver.log"))?;
    let crash_stderr = receiver_log_after
        .get(log_len..)
        .unwrap_or_default()
        .to_vec();

    let mut haystacks = vec![
        Haystack {
            name: "Collector output (spans.jsonl)",
            bytes: &collector_out,
        },
        Haystack {
            name: "Collector log",
            bytes: &collector_log,
        },
        Haystack {
            name: "receiver log (trace level)",
            bytes: &receiver_log,
        },
        Haystack {
            name: "receiver /metrics, /healthz, /readyz",
            bytes: metrics_text.as_bytes(),
        },
        Haystack {
            name: "receiver crash stderr",
            bytes: &crash_stderr,
        },
    ];
    if let Some(core) = &crash.core_bytes {
        haystacks.push(Haystack {
            name: "receiver core dump",
            bytes: core,
        });
    }
    let hits = canary::scan(&book.0, &haystacks);
    let searches = canary::searches(&book.0, haystacks.len());
    eprintln!(
        "[secrets] {} canaries ({} forms) × {} places = {searches} searches; {} hits; \
         {span_total} spans of the canary exchanges arrived; receiver log {} lines ({verbose_lines} TRACE/DEBUG), \
         Collector output {} bytes; {truncated} captures truncated; crash: {}",
        book.0.len(),
        book.0.iter().map(|c| c.forms().len()).sum::<usize>(),
        haystacks.len(),
        hits.len(),
        log_text.lines().count(),
        collector_out.len(),
        crash.summary
    );
    for h in &hits {
        checks.fail(format!(
            "canary `{}` ({}) found in the {}: …{}…",
            h.canary, h.form, h.haystack, h.context
        ));
    }
    w.done(checks)
}

fn mysql_section(
    w: &mut World<(MariaDb, Postgres, Redis, Nginx)>,
    book: &mut Book,
    expects: &mut Vec<Expect>,
    checks: &mut Checks,
    dir: &Path,
) -> Result<()> {
    let my = &w.server.0;
    let pw_tcp = book.fresh("mysql password, TCP login (and CREATE USER)", "mytcp");
    let pw_sock = book.fresh(
        "mysql password, Unix socket login (and CREATE USER)",
        "mysock",
    );
    let pw_chg = book.fresh("mysql password, COM_CHANGE_USER (and CREATE USER)", "mychg");
    let pw_cli = book.fresh("mysql password on the mariadb command line", "mycli");
    // Accounts, created while the receiver traces (CREATE USER … IDENTIFIED BY is a literal).
    my.root_sql(&format!(
        "CREATE USER 'sec_tcp'@'%' IDENTIFIED BY '{pw_tcp}';
         CREATE USER 'sec_sock'@'localhost' IDENTIFIED BY '{pw_sock}';
         CREATE USER 'sec_chg'@'%' IDENTIFIED BY '{pw_chg}';
         CREATE USER 'sec_cli'@'%' IDENTIFIED BY '{pw_cli}';
         GRANT ALL PRIVILEGES ON *.* TO 'sec_tcp'@'%', 'sec_sock'@'localhost', 'sec_chg'@'%', 'sec_cli'@'%';
         CREATE TABLE IF NOT EXISTS e2e.sec_u (k VARCHAR(200) PRIMARY KEY);"
    ))?;

    let single = book.fresh("mysql literal '…'", "mysq");
    let double = book.fresh("mysql literal \"…\"", "mydq");
    let hex0x = book.add(Canary::new("mysql literal 0x…", "myhex"));
    let hexx = book.add(Canary::new("mysql literal X'…'", "myxq"));
    let bits = book.add(Canary::bit_string("mysql literal b'…'", "mybit"));
    let utf8mb4 = book.fresh("mysql literal _utf8mb4'…'", "myutfmb");
    let utf8 = book.fresh("mysql literal _utf8'…'", "myutf");
    let national = book.fresh("mysql literal N'…'", "mynat");
    let escaped = book.fresh("mysql literal with '' and \\' escapes", "myesc");
    let number = book.add(Canary::digits("mysql numeric literal"));
    let float = book.add(Canary::digits("mysql float literal"));
    let block = book.fresh("mysql /* comment */", "myblk");
    let dash = book.fresh("mysql -- comment", "mydash");
    let hash = book.fresh("mysql # comment", "myhash");
    let var = book.fresh("mysql SET @var literal", "myvar");
    let dup = book.fresh("mysql literal echoed by the duplicate-key error", "mydup");
    let long = book.fresh("mysql literal past the 2 KiB query-text cap", "mylong");
    let cut = book.fresh("mysql literal cut by the capture cap", "mycut");
    let param = book.fresh("mysql COM_STMT_EXECUTE string parameter", "myparam");
    let blob = book.add(Canary::new(
        "mysql COM_STMT_EXECUTE blob parameter",
        "myblob",
    ));
    let after_chg = book.fresh("mysql literal after COM_CHANGE_USER", "myafter");

    let steps = vec![
        sql(&format!("SELECT id FROM t1 WHERE name = '{single}'")),
        sql(&format!("SELECT id FROM t1 WHERE name = \"{double}\"")),
        sql(&format!("SELECT id FROM t1 WHERE name = 0x{}", hex0x.hex())),
        sql(&format!("SELECT id FROM t1 WHERE name = X'{}'", hexx.hex())),
        sql(&format!("SELECT id FROM t1 WHERE id = b'{}'", bits.bits())),
        sql(&format!(
            "SELECT id FROM t1 WHERE name = _utf8mb4'{utf8mb4}'"
        )),
        sql(&format!("SELECT id FROM t1 WHERE name = _utf8'{utf8}'")),
        sql(&format!("SELECT id FROM t1 WHERE name = N'{national}'")),
        sql(&format!(
            "SELECT id FROM t1 WHERE name = 'it''s {escaped} \\' quoted'"
        )),
        sql(&format!("SELECT id FROM t1 WHERE id = {}", number.value)),
        sql(&format!(
            "SELECT id FROM t1 WHERE score > {}.25e-3",
            float.value
        )),
        sql(&format!("SELECT /* {block} */ id FROM t1")),
        sql(&format!("SELECT id FROM t1 -- {dash}\nWHERE id = 2")),
        sql(&format!("SELECT id FROM t1 # {hash}\nWHERE id = 3")),
        sql(&format!("SET @secret = '{var}'")),
        sql(&format!("INSERT INTO sec_u (k) VALUES ('{dup}')")),
        sql(&format!("INSERT INTO sec_u (k) VALUES ('{dup}')")),
        sql(&long_in_list("SELECT id FROM t1 WHERE name", &long)),
        // 4-byte packet header + COM_QUERY byte precede the text in the write.
        sql(&cut_statement("SELECT id FROM t1 WHERE name = '", &cut, 5)),
        json!({"prepared": "SELECT id FROM t1 WHERE name = ?", "params": [param]}),
        json!({"prepared": "SELECT id FROM t1 WHERE name = ?", "params": [{"hex": blob.hex()}]}),
        json!({"change_user": {"user": "sec_chg", "password": pw_chg}}),
        sql(&format!("SELECT id FROM t1 WHERE name = '{after_chg}'")),
    ];
    let n_steps = steps.len();
    let tcp = plan_run(
        dir,
        "mysql-tcp",
        &mysql_plan(
            json!({"host": "127.0.0.1", "port": my.port, "user": "sec_tcp", "password": pw_tcp, "database": "e2e"}),
            steps,
        ),
    )?;
    // The duplicate INSERT fails on purpose.
    check!(
        checks,
        tcp.failed_steps == 1,
        "{}: {} failed steps, expected 1 (the duplicate key)",
        tcp.name,
        tcp.failed_steps
    );
    // One span per statement; CHANGE_USER is one more round trip (a span or not).
    expect(expects, "mysql TCP client", tcp.pid, true, n_steps - 1);
    let sock = plan_run(
        dir,
        "mysql-socket",
        &mysql_plan(
            json!({"unix_socket": my.socket.to_string_lossy(), "user": "sec_sock", "password": pw_sock, "database": "e2e"}),
            vec![sql("SELECT id FROM t1 WHERE id = 1")],
        ),
    )?;
    check!(
        checks,
        sock.failed_steps == 0,
        "{}: a step failed",
        sock.name
    );
    expect(expects, "mysql Unix-socket client", sock.pid, true, 1);
    let mut cli = std::process::Command::new("mariadb");
    cli.args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P"])
        .arg(my.port.to_string())
        .arg("-usec_cli")
        .arg(format!("-p{pw_cli}"))
        .args(["e2e", "-e", "SELECT id FROM t1 WHERE id = 1"]);
    let cli_run = clients::run_ok(dir, "mysql-cli", cli)?;
    expect(expects, "mariadb CLI client", cli_run.pid, true, 1);
    expect(expects, "mariadbd", my.pid(), false, n_steps + 1);
    Ok(())
}

/// PAM services for MariaDB's `auth_pam`: each accepts exactly one password, checked by a
/// script `pam_exec` hands it to (`expose_authtok`: the password on stdin). Returns the
/// directory the server sees as `/etc/pam.d`.
fn pam_services(dir: &Path, services: &[(&str, &str)]) -> Result<PathBuf> {
    let pam_d = dir.join("pam.d");
    std::fs::create_dir_all(&pam_d)?;
    let check = dir.join("pam-check.sh");
    std::fs::write(
        &check,
        "#!/bin/sh
# $1: the one password this service accepts.
         pw=$(head -c 200 | tr -d '\\000')
[ \"$pw\" = \"$1\" ]
",
    )?;
    std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for (service, password) in services {
        std::fs::write(
            pam_d.join(service),
            format!(
                "auth required pam_exec.so expose_authtok quiet {} {password}
                 account required pam_permit.so
",
                check.display()
            ),
        )?;
    }
    Ok(pam_d)
}

/// Cleartext MySQL passwords: accounts checked by PAM, so the server asks the client for the
/// password itself (the `dialog` plugin) and the `mariadb` CLI sends it in clear, over TCP and
/// over the Unix socket.
fn mysql_cleartext(
    w: &World<(MariaDb, Postgres, Redis, Nginx)>,
    expects: &mut Vec<Expect>,
    dir: &Path,
    pam_tcp: &str,
    pam_sock: &str,
) -> Result<()> {
    let my = &w.server.0;
    my.root_sql(
        "INSTALL SONAME 'auth_pam';
         CREATE USER 'sec_pamt'@'%' IDENTIFIED VIA pam USING 'e2e-pam-tcp';
         CREATE USER 'sec_pams'@'localhost' IDENTIFIED VIA pam USING 'e2e-pam-sock';
         GRANT ALL PRIVILEGES ON *.* TO 'sec_pamt'@'%', 'sec_pams'@'localhost';",
    )?;
    let mut tcp = std::process::Command::new("mariadb");
    tcp.args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P"])
        .arg(my.port.to_string())
        .arg("-usec_pamt")
        .arg(format!("-p{pam_tcp}"))
        .args(["e2e", "-e", "SELECT id FROM t1 WHERE id = 1"]);
    let tcp = clients::run_ok(dir, "mysql-pam-tcp", tcp)?;
    expect(
        expects,
        "mariadb CLI, PAM cleartext over TCP",
        tcp.pid,
        true,
        1,
    );
    let mut sock = std::process::Command::new("mariadb");
    sock.args(["--no-defaults", "--protocol=socket", "-S"])
        .arg(&my.socket)
        .arg("-usec_pams")
        .arg(format!("-p{pam_sock}"))
        .args(["e2e", "-e", "SELECT id FROM t1 WHERE id = 1"]);
    let sock = clients::run_ok(dir, "mysql-pam-socket", sock)?;
    expect(
        expects,
        "mariadb CLI, PAM cleartext over the socket",
        sock.pid,
        true,
        1,
    );
    Ok(())
}

fn postgres_section(
    w: &mut World<(MariaDb, Postgres, Redis, Nginx)>,
    book: &mut Book,
    expects: &mut Vec<Expect>,
    checks: &mut Checks,
    dir: &Path,
) -> Result<()> {
    let pg = &w.server.1;
    let scram = book.fresh("postgres SCRAM password (and CREATE ROLE)", "pgscram");
    let md5 = book.fresh("postgres md5 password (and CREATE ROLE)", "pgmd");
    let clear = book.fresh(
        "postgres cleartext password, TCP and socket (and CREATE ROLE)",
        "pgclear",
    );
    // md5 and cleartext logins: pg_hba lines ahead of the harness's SCRAM ones, then a reload.
    let hba_path = pg.dir.join("pg_hba.conf");
    let hba = std::fs::read_to_string(&hba_path)?;
    let marker = "host    all      all       127.0.0.1/32  scram-sha-256";
    if !hba.contains(marker) {
        bail!("pg_hba.conf changed shape:\n{hba}");
    }
    std::fs::write(
        &hba_path,
        hba.replacen(
            "local   all      all ",
            "local   all      sec_clear               password\nlocal   all      all ",
            1,
        )
        .replacen(
            marker,
            &format!(
                "host    all      sec_md5   127.0.0.1/32  md5\n\
                 host    all      sec_clear 127.0.0.1/32  password\n{marker}"
            ),
            1,
        ),
    )?;
    pg.admin_sql(
        "postgres",
        &format!(
            "SET password_encryption = 'md5'; CREATE ROLE sec_md5 LOGIN PASSWORD '{md5}'; \
             SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE sec_scram LOGIN PASSWORD '{scram}'; \
             CREATE ROLE sec_clear LOGIN PASSWORD '{clear}'; SELECT pg_reload_conf();"
        ),
    )?;
    pg.admin_sql(
        "e2e",
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO sec_md5, sec_scram, sec_clear",
    )?;
    // The reload is asynchronous: wait until the md5 login works.
    poll_until(
        "pg_hba.conf reloaded (an md5 login)",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let mut c = pg.psql_as("sec_md5", &md5);
            c.args(["-At", "-c", "SELECT 1"]);
            Ok(c.output()?.status.success().then_some(()))
        },
    )?;

    // Bind parameters (psycopg, SCRAM login).
    let p_text = book.fresh("postgres Bind parameter (text)", "pgbindt");
    let p_bin = book.fresh("postgres Bind parameter (binary format)", "pgbindb");
    let p_bytea = book.add(Canary::new("postgres Bind parameter (bytea)", "pgbytea"));
    let p_dup = book.fresh(
        "postgres Bind parameter echoed by a duplicate-key error",
        "pgbdup",
    );
    let p_int = book.fresh(
        "postgres Bind parameter echoed by an invalid-input error",
        "pgbint",
    );
    let steps = vec![
        json!({"sql": "SELECT id FROM t1 WHERE name = %s", "params": [p_text]}),
        json!({"sql": "SELECT id FROM t1 WHERE name = %s", "params": [p_bin], "binary": true}),
        json!({"sql": "SELECT %s::bytea", "params": [{"hex": p_bytea.hex()}]}),
        json!({"sql": "INSERT INTO kv (k, v) VALUES (%s, 'v')", "params": [p_dup]}),
        json!({"sql": "INSERT INTO kv (k, v) VALUES (%s, 'v')", "params": [p_dup]}),
        json!({"sql": "SELECT %s::int", "params": [p_int]}),
    ];
    let n = steps.len();
    let binds = plan_run(
        dir,
        "pg-bind",
        &json!({"proto": "postgres", "dsn": pg.dsn_as("sec_scram", &scram), "steps": steps}),
    )?;
    check!(
        checks,
        binds.failed_steps == 2,
        "{}: {} failed steps, expected 2 (duplicate key, invalid integer)",
        binds.name,
        binds.failed_steps
    );
    expect(
        expects,
        "psycopg (SCRAM, Bind parameters)",
        binds.pid,
        true,
        n,
    );
    let md5_run = plan_run(
        dir,
        "pg-md5",
        &json!({"proto": "postgres", "dsn": pg.dsn_as("sec_md5", &md5),
                "steps": [{"sql": "SELECT id FROM t1 WHERE id = 1"}]}),
    )?;
    expect(expects, "psycopg (md5 login)", md5_run.pid, true, 1);

    // Literals over the simple protocol (psql, cleartext login over TCP).
    let mut lit = Vec::new();
    let mut add = |label: &str, tag: &str| book.fresh(label, tag);
    let l_single = add("postgres literal '…'", "pgsq");
    let l_e = add("postgres literal E'…'", "pge");
    let l_dollar = add("postgres literal $$…$$", "pgdol");
    let l_tag = add("postgres literal $tag$…$tag$", "pgtag");
    let l_unicode = add("postgres literal U&'…'", "pguni");
    let l_bytea = add("postgres literal '…'::bytea", "pgbyt");
    let l_block = add("postgres /* comment */", "pgblk");
    let l_nested = add("postgres nested /* /* comment */ */", "pgnest");
    let l_dash = add("postgres -- comment", "pgdash");
    let l_setcfg = add("postgres set_config literal", "pgcfg");
    let l_dup = add("postgres literal echoed by a duplicate-key error", "pgldup");
    let l_int = add(
        "postgres literal echoed by an invalid-input error",
        "pglint",
    );
    let l_long = add("postgres literal past the 2 KiB query-text cap", "pglong");
    let l_cut = add("postgres literal cut by the capture cap", "pgcut");
    let l_copy = add("postgres COPY data", "pgcopy");
    let l_do = add("postgres DO $$ block $$ literal", "pgdo");
    let bits = book.add(Canary::bit_string("postgres literal B'…'", "pgbits"));
    let hexlit = book.add(Canary::new(
        "postgres literal X'…' and decode('…', 'hex')",
        "pghex",
    ));
    let number = book.add(Canary::digits("postgres numeric literal"));
    lit.push(format!("SELECT id FROM t1 WHERE name = '{l_single}';"));
    lit.push(format!("SELECT id FROM t1 WHERE name = E'{l_e}\\n';"));
    lit.push(format!("SELECT id FROM t1 WHERE name = $${l_dollar}$$;"));
    lit.push(format!("SELECT id FROM t1 WHERE name = $tag${l_tag}$tag$;"));
    lit.push(format!("SELECT id FROM t1 WHERE name = U&'{l_unicode}';"));
    lit.push(format!("SELECT '{l_bytea}'::bytea;"));
    lit.push(format!("SELECT B'{}';", bits.bits()));
    lit.push(format!("SELECT X'{}';", hexlit.hex()));
    lit.push(format!("SELECT decode('{}', 'hex');", hexlit.hex()));
    lit.push(format!("SELECT id FROM t1 WHERE id = {};", number.value));
    lit.push(format!("SELECT /* {l_block} */ id FROM t1;"));
    lit.push(format!("SELECT /* a /* {l_nested} */ b */ id FROM t1;"));
    lit.push(format!("SELECT id FROM t1 -- {l_dash}\n;"));
    lit.push(format!(
        "SELECT set_config('e2e.secret', '{l_setcfg}', false);"
    ));
    lit.push(format!(
        "{};",
        long_in_list("SELECT id FROM t1 WHERE name", &l_long)
    ));
    // Query message: 'Q' + 4-byte length precede the text.
    lit.push(format!(
        "{};",
        cut_statement("SELECT id FROM t1 WHERE name = '", &l_cut, 5)
    ));
    lit.push(format!("DO $$ BEGIN PERFORM '{l_do}'; END $$;"));
    lit.push(format!(
        "COPY kv (k, v) FROM STDIN;\ncopykey\t{l_copy}\n\\."
    ));
    lit.push(format!("INSERT INTO kv (k, v) VALUES ('{l_dup}', 'v');"));
    lit.push(format!("INSERT INTO kv (k, v) VALUES ('{l_dup}', 'v');"));
    lit.push(format!("SELECT '{l_int}'::int;"));
    let script = dir.join("pg-literals.sql");
    std::fs::write(&script, lit.join("\n") + "\n")?;
    let mut c = pg.psql_as("sec_clear", &clear);
    c.args(["-v", "ON_ERROR_STOP=0", "-q", "-f"]).arg(&script);
    let psql = clients::run(dir, "pg-literals", c)?;
    check!(
        checks,
        psql.stderr.matches("ERROR").count() == 2,
        "psql: expected 2 errors (duplicate key, invalid integer), stderr: {}",
        psql.stderr.lines().filter(|l| l.contains("ERROR")).count()
    );
    expect(
        expects,
        "psql (cleartext login over TCP, literals)",
        psql.pid,
        true,
        lit.len(),
    );
    // Cleartext over the Unix socket.
    let mut c = pg.client_command("psql");
    c.args(["-X", "-At", "-h"])
        .arg(&pg.socket_dir)
        .arg("-p")
        .arg(pg.port.to_string())
        .args([
            "-U",
            "sec_clear",
            "-d",
            "e2e",
            "-c",
            "SELECT id FROM t1 WHERE id = 1",
        ])
        .env("PGPASSWORD", &clear);
    let sock = clients::run_ok(dir, "pg-socket-clear", c)?;
    expect(
        expects,
        "psql (cleartext login over the socket)",
        sock.pid,
        true,
        1,
    );
    Ok(())
}

fn redis_section(
    w: &mut World<(MariaDb, Postgres, Redis, Nginx)>,
    book: &mut Book,
    expects: &mut Vec<Expect>,
    checks: &mut Checks,
    dir: &Path,
    password: &str,
) -> Result<()> {
    let r = &w.server.2;
    let hello = book.fresh(
        "redis HELLO 3 AUTH password (and ACL SETUSER >…)",
        "rdhello",
    );
    let acl = clients::redis::cli(
        dir,
        "redis-acl",
        r,
        &[
            "ACL",
            "SETUSER",
            "sec",
            "on",
            &format!(">{hello}"),
            "~*",
            "&*",
            "+@all",
        ],
    )?;
    check!(
        checks,
        acl.stdout.trim() == "OK",
        "ACL SETUSER: {}",
        acl.stdout.trim()
    );
    expect(
        expects,
        "redis-cli -a (AUTH, ACL SETUSER)",
        acl.pid,
        true,
        2,
    );

    let wrong = book.fresh("redis failed AUTH password", "rdwrong");
    let key = book.fresh("redis key", "rdkey");
    let value = book.fresh("redis value", "rdval");
    let masterauth = book.fresh("redis CONFIG SET masterauth", "rdmaster");
    let migrate = book.fresh("redis MIGRATE … AUTH", "rdmig");
    let eval = book.fresh("redis EVAL script", "rdeval");
    let publish = book.fresh("redis PUBLISH message", "rdpub");
    let echo = book.fresh("redis ECHO", "rdecho");
    let steps = vec![
        json!({"cmd": ["AUTH", wrong]}),
        json!({"cmd": ["SET", format!("k:{key}"), value]}),
        json!({"cmd": ["GET", format!("k:{key}")]}),
        json!({"cmd": ["CONFIG", "SET", "masterauth", masterauth]}),
        json!({"cmd": ["MIGRATE", "127.0.0.1", "1", "nokey", "0", "100", "AUTH", migrate]}),
        json!({"cmd": ["EVAL", format!("return '{eval}'"), "0"]}),
        json!({"cmd": ["PUBLISH", "ch", publish]}),
        json!({"cmd": ["ECHO", echo]}),
    ];
    let n = steps.len();
    let resp2 = plan_run(
        dir,
        "redis-auth",
        &json!({"proto": "redis", "host": "127.0.0.1", "port": r.port, "password": password,
                "resp": 2, "steps": steps}),
    )?;
    expect(expects, "redis-py RESP2 (AUTH)", resp2.pid, true, n + 1);
    let resp3 = plan_run(
        dir,
        "redis-hello",
        &json!({"proto": "redis", "host": "127.0.0.1", "port": r.port, "username": "sec",
                "password": hello, "resp": 3, "steps": [{"cmd": ["PING"]}]}),
    )?;
    expect(expects, "redis-py RESP3 (HELLO 3 AUTH)", resp3.pid, true, 2);
    expect(expects, "redis-server", r.pid(), false, n + 5);
    Ok(())
}

fn http_section(
    w: &mut World<(MariaDb, Postgres, Redis, Nginx)>,
    book: &mut Book,
    expects: &mut Vec<Expect>,
    dir: &Path,
) -> Result<()> {
    let ng = &w.server.3;
    let port = ng.port;
    let url = |p: &str| ng.url(p);
    let bearer = book.fresh("HTTP Authorization: Bearer", "bearer");
    let basic = book
        .add(basic_canary("HTTP Authorization: Basic (curl -u)", "basic"))
        .value;
    let userinfo = book
        .add(basic_canary(
            "HTTP URL userinfo (curl sends Basic)",
            "uinfo",
        ))
        .value;
    let cookie = book.fresh("HTTP Cookie", "cookie");
    let cookie2 = book.fresh("HTTP Cookie (second pair)", "cookiet");
    let q_token = book.fresh("HTTP ?token=", "qtoken");
    let q_password = book.fresh("HTTP ?password=", "qpass");
    let q_apikey = book.fresh("HTTP ?api_key=", "qapikey");
    let q_access = book.fresh("HTTP ?access_token=", "qaccess");
    let q_sig = book.fresh("HTTP ?sig=", "qsig");
    let proxy = book.fresh("HTTP Proxy-Authorization", "proxy");
    let xapi = book.fresh("HTTP X-Api-Key", "xapi");
    let form = book.fresh("HTTP form body password=", "form");
    let abs = book.fresh("HTTP absolute-form target userinfo", "absui");
    let host = book.fresh("HTTP Host header userinfo", "hostui");
    let piped = book.fresh("HTTP Authorization in a pipelined request", "piped");

    let mut curls: Vec<(String, Vec<String>, String)> = vec![
        (
            "curl-bearer".into(),
            vec!["-H".into(), format!("Authorization: Bearer {bearer}")],
            url("/sec/a"),
        ),
        (
            "curl-basic".into(),
            vec!["-u".into(), format!("sec:{basic}")],
            url("/sec/b"),
        ),
        (
            "curl-userinfo".into(),
            vec![],
            format!("http://sec:{userinfo}@127.0.0.1:{port}/sec/c"),
        ),
        (
            "curl-cookie".into(),
            vec!["-b".into(), format!("session={cookie}; token={cookie2}")],
            url("/sec/d"),
        ),
        (
            "curl-query".into(),
            vec![],
            url(&format!(
                "/sec/e?token={q_token}&page=2&password={q_password}&api_key={q_apikey}&access_token={q_access}&sig={q_sig}"
            )),
        ),
        (
            "curl-headers".into(),
            vec![
                "-H".into(),
                format!("Proxy-Authorization: Basic {proxy}"),
                "-H".into(),
                format!("X-Api-Key: {xapi}"),
            ],
            url("/sec/f"),
        ),
        (
            "curl-form".into(),
            vec!["-d".into(), format!("user=sec&password={form}")],
            url("/sec/g"),
        ),
        ("curl-setcookie".into(), vec![], url("/sec/cookie")),
        ("curl-body".into(), vec![], url("/sec/body")),
    ];
    let n_curl = curls.len();
    for (name, args, u) in curls.drain(..) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = http::curl(dir, &name, &args, &[&u])?;
        expect(expects, &name, r.pid(), true, 1);
    }
    // Raw requests, each on its own connection (nginx closes one after a 400).
    let raw_requests = [
        (
            "http-raw-absolute",
            format!(
                "GET http://sec:{abs}@127.0.0.1:{port}/sec/abs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            ),
            1,
        ),
        (
            "http-raw-host",
            format!("GET /sec/host HTTP/1.1\r\nHost: sec:{host}@127.0.0.1\r\n\r\n"),
            1,
        ),
        (
            "http-raw-pipelined",
            format!(
                "GET /sec/p1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /sec/p2 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {piped}\r\n\r\n"
            ),
            2,
        ),
    ];
    for (name, data, responses) in raw_requests {
        let raw = http::raw(dir, name, port, &[http::RawStep::Send { data, responses }])?;
        expect(expects, name, raw.pid(), true, responses);
    }
    expect(expects, "nginx", ng.pid(), false, n_curl + 4);
    Ok(())
}

/// What killing the receiver showed.
struct Crash {
    summary: String,
    core_bytes: Option<Vec<u8>>,
}

fn core_files(dir: &Path, since: std::time::SystemTime) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("core"))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| e.path())
        .collect()
}

fn allow_cores(pid: u32) -> Result<()> {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads one rlimit from a valid pointer; a null old-limit pointer is allowed.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_CORE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        bail!(
            "prlimit(RLIMIT_CORE) on {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Kills a process with SIGABRT (what `abort()`, a failed C assertion or a Rust panic with
/// `panic = "abort"` raise; its default action dumps core) and waits (up to 20 s) until `gone`
/// says it is. (Not SIGSEGV: Rust's std handles it to detect stack overflows, and a SIGSEGV
/// sent by `kill` only resets that handler.)
fn abort(pid: u32, mut gone: impl FnMut() -> bool) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGABRT) };
    let t0 = Instant::now();
    while !gone() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("pid {pid} still running 20 s after SIGABRT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// SIGABRT to the receiver with core dumps allowed. A control process (`sleep`) killed the
/// same way in the same kind of place shows whether this host writes core files at all.
fn crash_receiver(
    w: &mut World<(MariaDb, Postgres, Redis, Nginx)>,
    dir: &Path,
    checks: &mut Checks,
) -> Result<Crash> {
    let control_dir = dir.join("crash-control");
    std::fs::create_dir_all(&control_dir)?;
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    let mut sleeper = std::process::Command::new("sleep");
    sleeper.arg("60").current_dir(&control_dir);
    let mut child = sleeper.spawn().context("spawn sleep")?;
    let control = child.id();
    // Signal it only once it runs `sleep` (before the exec it is a copy of this process).
    poll_until(
        "the control process to exec sleep",
        Duration::from_secs(5),
        Duration::from_millis(5),
        || {
            let comm = std::fs::read_to_string(format!("/proc/{control}/comm")).unwrap_or_default();
            Ok((comm.trim() == "sleep").then_some(()))
        },
    )?;
    allow_cores(control)?;
    abort(control, || child.try_wait().ok().flatten().is_some())?;
    let control_cores = core_files(&control_dir, since);
    let host_writes_cores = !control_cores.is_empty();
    for c in &control_cores {
        let _ = std::fs::remove_file(c);
    }

    let pid = w.receiver().pid();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .with_context(|| format!("cwd of the receiver {pid}"))?;
    allow_cores(pid)?;
    let r = w.receiver_mut();
    abort(pid, || r.ensure_running().is_err())?;
    // The kernel writes the core before the parent sees the exit.
    let cores = core_files(&cwd, since);
    let core_bytes = match cores.first() {
        Some(p) => std::fs::read(p).ok(),
        None => None,
    };
    check!(
        checks,
        cores.is_empty(),
        "the receiver left a core dump ({}): it holds every captured byte",
        cores
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for c in &cores {
        let _ = std::fs::remove_file(c);
    }
    let summary = format!(
        "SIGABRT with RLIMIT_CORE unlimited: {} core file(s) from the receiver; the control process {} a core",
        cores.len(),
        if host_writes_cores { "left" } else { "left no" }
    );
    if !host_writes_cores {
        eprintln!(
            "[secrets] this host writes no core files (core_pattern {:?}): the core check saw nothing",
            std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default()
        );
    }
    Ok(Crash {
        summary,
        core_bytes,
    })
}
