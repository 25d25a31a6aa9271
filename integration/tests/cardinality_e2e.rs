//! Unique paths, queries and keys do not make unique span names or span-metrics series
//! (issue 8, R9).
//!
//! The receiver exports to the stock Collector running the `span_metrics` connector exactly as
//! `otel-collector-config/sidecar.yaml` ships it (`integration::span_metrics`); the test reads
//! the series it writes. Four real loads, each request unique:
//! - HTTP: `wrk` against nginx, every path its own (`/u/<phase>/<thread>/<n>/orders/<m>`), every
//!   50th request with a method of its own (`FOOx…`, an extension method nginx answers);
//! - PostgreSQL: `pgbench -M simple` with a random literal in each statement (`'user-<r>'`, `<r>`);
//! - MySQL: the `mariadb` CLI with a unique string and number literal in each statement;
//! - Redis: `redis-benchmark -r` with a random key in each `SET`, and N/50 unknown commands,
//!   each with a name of its own (`FOO…`, through `redis-cli`).
//!
//! Phase 1 sends N/10 of each, phase 2 the remaining 9N/10 with new unique values. Asserted:
//! ≤ 50 distinct span names among the series of the test's own processes (the host is traced
//! whole and other tests may run beside this one; the host-wide figure is printed too); the
//! series keyed by service, span name, kind, status and the shipped dimensions barely change from
//! phase 1 to phase 2 (10× more unique values; ≤ 4 new series, each printed: a status variant
//! such as a request wrk abandoned when it stopped, never one per value) and stay ≤ 200; and the spans did
//! arrive (≥ 50 % of both sides of every request, a floor against a vacuous pass on a loaded
//! host; the exact count is printed with the receiver's loss counters). N is 20,000 per
//! protocol by default (about 8 s of load, 25 s in all); `E2E_CARDINALITY_N=100000` runs the
//! issue's full figure (about 45 s of load and settling).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use integration::check;
use integration::clients::{self, http};
use integration::process::{Output, free_port};
use integration::servers::mariadb::MariaDb;
use integration::servers::nginx::{Nginx, NginxOptions};
use integration::servers::postgres::{self as pgs, Postgres};
use integration::servers::redis::Redis;
use integration::span_metrics::{self, Cardinality, Series, cardinality};
use integration::world::{Checks, World};

const DEFAULT_N: u64 = 20_000;
const MAX_SPAN_NAMES: usize = 50;
const MAX_SERIES: usize = 200;
/// Series phase 2 may add to phase 1's (10× the unique values): status variants, not values.
const MAX_NEW_SERIES: usize = 4;

type Servers = (Nginx, Postgres, MariaDb, Redis);

/// What one phase sent, and who sent and served it.
#[derive(Default)]
struct Sent {
    /// Requests completed per protocol, by the clients' own counts.
    requests: BTreeMap<&'static str, u64>,
    /// Every process of this test that made or served a span.
    pids: BTreeSet<u32>,
}

fn requests_per_protocol() -> u64 {
    std::env::var("E2E_CARDINALITY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 100)
        .unwrap_or(DEFAULT_N)
}

/// Sends `n` unique requests of each protocol (phase `phase` keeps them apart from the other).
fn drive(w: &World<Servers>, dir: &Path, phase: u32, n: u64, sent: &mut Sent) -> Result<()> {
    let (ng, pg, my, rd) = &w.server;
    sent.pids.extend([ng.pid(), my.pid(), rd.pid()]);

    // HTTP: one wrk thread, 8 connections, a unique path per request.
    let t0 = Instant::now();
    let wrk = http::wrk(
        dir,
        &format!("wrk-{phase}"),
        &ng.url("/"),
        &http::WrkOptions {
            threads: 1,
            connections: 8,
            duration: Duration::from_secs(120),
            max_requests_per_thread: Some(n),
            env: vec![
                ("WRK_UNIQUE_PATH_PREFIX".into(), format!("/u/{phase}/")),
                ("WRK_OTHER_METHOD_EVERY".into(), "50".into()),
            ],
            ..http::WrkOptions::default()
        },
    )?;
    if wrk.status_errors > 0 || wrk.socket_errors > 0 {
        bail!(
            "wrk: {} status errors, {} socket errors",
            wrk.status_errors,
            wrk.socket_errors
        );
    }
    sent.pids.insert(wrk.run.pid);
    *sent.requests.entry("http").or_default() += wrk.requests;
    let http_s = t0.elapsed();

    // PostgreSQL: pgbench, simple protocol, a random literal per statement.
    let t0 = Instant::now();
    let script = dir.join(format!("pgbench-{phase}.sql"));
    std::fs::write(
        &script,
        "\\set r random(1, 1000000000000)\n\
         SELECT id FROM t1 WHERE name = 'user-:r' OR id = :r;\n",
    )?;
    let mut c = pg.client_command("pgbench");
    c.args(["-n", "-M", "simple", "-c", "1", "-h", "127.0.0.1", "-p"])
        .arg(pg.port.to_string())
        .args(["-U", pgs::USER, "-d", pgs::DATABASE, "-t"])
        .arg(n.to_string())
        .arg("-f")
        .arg(&script)
        .env("PGPASSWORD", pgs::PASSWORD);
    let bench = clients::run_ok(dir, &format!("pgbench-{phase}"), c)?;
    let processed = bench
        .stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("number of transactions actually processed: ")
        })
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .with_context(|| format!("pgbench output:\n{}", bench.stdout))?;
    sent.pids.insert(bench.pid);
    *sent.requests.entry("postgresql").or_default() += processed;
    let pg_s = t0.elapsed();

    // MySQL: the mariadb CLI reading a file of unique statements.
    let t0 = Instant::now();
    let file = dir.join(format!("mysql-{phase}.sql"));
    let mut text = String::with_capacity(n as usize * 80);
    for i in 0..n {
        text.push_str(&format!(
            "SELECT id FROM t1 WHERE name = 'u{phase}-{i}' OR id = {};\n",
            u64::from(phase) * 1_000_000_000 + i * 7919
        ));
    }
    std::fs::write(&file, text)?;
    let mut c = my.cli_tcp();
    c.args(["-N", "-B", "e2e"]);
    let stdin = std::fs::File::open(&file)?;
    let cli = clients::spawn_with_stdin(dir, &format!("mysql-{phase}"), c, stdin.into())?
        .finish(clients::DEFAULT_TIMEOUT)?;
    cli.ensure_success()?;
    let _ = std::fs::remove_file(&file);
    sent.pids.insert(cli.pid);
    *sent.requests.entry("mysql").or_default() += n;
    let my_s = t0.elapsed();

    // Redis: random keys, and every 50th command an unknown one with a random name.
    let t0 = Instant::now();
    let mut c = rd.benchmark();
    c.args(["-q", "-n"])
        .arg(n.to_string())
        .args(["-r", "100000000000", "-P", "16", "-c", "2"])
        .args(["SET", "key:__rand_int__", "v"]);
    let set = clients::run_ok(dir, &format!("redis-set-{phase}"), c)?;
    // Unknown commands, one name each (redis-benchmark stops at the first error reply):
    // redis-cli sends one line per command, each after the previous reply.
    let unknown = (n / 50).max(1);
    let lines: Vec<String> = (0..unknown)
        .map(|i| format!("FOO{phase}Q{:x} x", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let unknown_run = clients::redis::cli_lines(dir, &format!("redis-foo-{phase}"), rd, &lines)?;
    let errors = unknown_run.stdout.matches("unknown command").count() as u64;
    if errors != unknown {
        bail!("redis-cli: {errors} `unknown command` replies to {unknown} unknown commands");
    }
    sent.pids.extend([set.pid, unknown_run.pid]);
    *sent.requests.entry("redis").or_default() += n + unknown;
    let rd_s = t0.elapsed();
    eprintln!(
        "[cardinality] phase {phase}: {n} per protocol; http {:.1} s ({} requests), pgbench {:.1} s ({processed}), \
         mysql {:.1} s, redis {:.1} s",
        http_s.as_secs_f64(),
        wrk.requests,
        pg_s.as_secs_f64(),
        my_s.as_secs_f64(),
        rd_s.as_secs_f64()
    );
    Ok(())
}

/// PostgreSQL backends are forked per connection and gone by now: their pids come from the
/// server's own log (`log_connections`, prefix `… [pid] …`).
fn pg_backend_pids(pg: &Postgres) -> BTreeSet<u32> {
    let log = std::fs::read_to_string(pg.dir.join("postgres.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("connection authorized"))
        .filter_map(|l| {
            let open = l.find(" [")?;
            let close = l[open..].find(']')? + open;
            l[open + 2..close].parse().ok()
        })
        .collect()
}

fn resource_pid(s: &Series) -> Option<u32> {
    s.resource.get("process.pid").and_then(|p| p.parse().ok())
}

/// Polls the series until the spans counted for `pids` reach `want`, or until everything the
/// receiver created was exported (its queue empty) and the Collector counted at least that
/// many spans host-wide; a 3 s stall ends the wait only once the receiver is drained.
fn settle(w: &World<Servers>, dir: &Path, pids: &BTreeSet<u32>, want: u64) -> Result<Vec<Series>> {
    let path = span_metrics::metrics_path(dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (0u64, Instant::now());
    loop {
        let series = span_metrics::read_calls(&path)?;
        let counted: u64 = series.iter().map(|s| s.calls).sum();
        let ours: u64 = series
            .iter()
            .filter(|s| resource_pid(s).is_some_and(|p| pids.contains(&p)))
            .map(|s| s.calls)
            .sum();
        let m = w.receiver().metrics()?;
        let created = m.sum("ebpf_receiver_spans_created_total");
        let exported = m.get("ebpf_receiver_spans_exported_total");
        let drained = m.get("ebpf_receiver_export_queue_bytes") == 0.0
            && exported + m.sum("ebpf_receiver_spans_dropped_total") >= created;
        let all_counted = drained && counted as f64 >= exported;
        if ours >= want
            || all_counted
            || (drained && since.elapsed() > Duration::from_secs(3))
            || Instant::now() > deadline
        {
            return Ok(series);
        }
        if counted != last {
            last = counted;
            since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ours(series: &[Series], pids: &BTreeSet<u32>) -> Vec<Series> {
    series
        .iter()
        .filter(|s| resource_pid(s).is_some_and(|p| pids.contains(&p)))
        .cloned()
        .collect()
}

fn show(label: &str, c: &Cardinality) {
    eprintln!(
        "[cardinality] {label}: {} spans, {} distinct span names, {} series by service \
         ({} with the per-process resource, {} resources); names: {:?}",
        c.spans,
        c.span_names.len(),
        c.series_by_service,
        c.series,
        c.resources,
        c.span_names
    );
}

#[test]
fn unique_paths_queries_and_keys_keep_names_and_series_bounded() -> Result<()> {
    let n = requests_per_protocol();
    let first = (n / 10).max(10);
    let mut checks = Checks::default();
    let mut w = World::start_with_collector(
        "cardinality",
        |d| {
            let ng = Nginx::start_with(
                &d.join("nginx"),
                &NginxOptions {
                    server_directives: "location /u/ { return 200 \"ok\\n\"; }\n".into(),
                    ..NginxOptions::default()
                },
            )?;
            let pg = Postgres::start(&d.join("pg"))?;
            let my = MariaDb::start(
                &d.join("mariadb"),
                free_port()?,
                Output::File(d.join("mariadbd.log")),
            )?;
            let rd = Redis::start(&d.join("redis"))?;
            Ok((ng, pg, my, rd))
        },
        span_metrics::start_collector,
    )?;
    w.start_receiver()?;
    let dir = w.dir.clone();
    let t0 = Instant::now();

    let mut sent = Sent::default();
    drive(&w, &dir, 1, first, &mut sent)?;
    let mut pids = sent.pids.clone();
    pids.extend(pg_backend_pids(&w.server.1));
    let want1: u64 = sent.requests.values().sum::<u64>() * 2;
    let all1 = settle(&w, &dir, &pids, want1)?;
    let phase1 = cardinality(&ours(&all1, &pids));
    show(&format!("phase 1 ({first} per protocol), ours"), &phase1);

    drive(&w, &dir, 2, n - first, &mut sent)?;
    pids.extend(sent.pids.iter().copied());
    pids.extend(pg_backend_pids(&w.server.1));
    let want2: u64 = sent.requests.values().sum::<u64>() * 2;
    let all2 = settle(&w, &dir, &pids, want2)?;
    let phase2 = cardinality(&ours(&all2, &pids));
    let host = cardinality(&all2);
    show(&format!("phase 2 ({n} per protocol in all), ours"), &phase2);
    show("phase 2, every traced process on the host", &host);
    let mut by_name: BTreeMap<(String, String), u64> = BTreeMap::new();
    for x in ours(&all2, &pids) {
        let kind = x.attributes.get("span.kind").cloned().unwrap_or_default();
        *by_name
            .entry((x.span_name().to_string(), kind.replace("SPAN_KIND_", "")))
            .or_default() += x.calls;
    }
    eprintln!("[cardinality] spans per name and kind: {by_name:?}");
    let m = w.receiver().metrics()?;
    eprintln!(
        "[cardinality] receiver parse counters: {}",
        [
            "frames_invalid_total",
            "resyncs_total",
            "connections_disabled_total",
            "messages_unmatched_total",
            "stream_bytes_lost_total",
            "spans_created_total",
            "spans_exported_total"
        ]
        .iter()
        .map(|k| m.family(&format!("ebpf_receiver_{k}")))
        .collect::<Vec<_>>()
        .join(", ")
        .replace('\n', ", ")
    );
    eprintln!(
        "[cardinality] requests sent {:?}; spans expected (both sides) {want2}, counted {} ({:.2} %); \
         receiver loss counters: {}; load and settling took {:.1} s",
        sent.requests,
        phase2.spans,
        phase2.spans as f64 * 100.0 / want2.max(1) as f64,
        {
            let loss = m.family("ebpf_receiver_kernel_drops_total");
            let dropped = m.family("ebpf_receiver_spans_dropped_total");
            format!("{loss} {dropped}").replace('\n', ", ")
        },
        t0.elapsed().as_secs_f64()
    );

    check!(
        checks,
        phase2.span_names.len() <= MAX_SPAN_NAMES,
        "{} distinct span names (> {MAX_SPAN_NAMES}): {:?}",
        phase2.span_names.len(),
        phase2.span_names
    );
    // New series in phase 2 may only be variants the loads can produce at any scale (e.g. an
    // error status for a request wrk abandoned when it stopped), never one per unique value.
    let keys =
        |v: &[Series]| -> BTreeSet<String> { v.iter().map(Series::key_by_service).collect() };
    let new: Vec<String> = keys(&ours(&all2, &pids))
        .difference(&keys(&ours(&all1, &pids)))
        .cloned()
        .collect();
    eprintln!("[cardinality] series new in phase 2: {new:?}");
    check!(
        checks,
        new.len() <= MAX_NEW_SERIES,
        "span-metrics series grew with the unique values: {} after {first} requests per protocol, {} after {n}; new: {new:?}",
        phase1.series_by_service,
        phase2.series_by_service
    );
    check!(
        checks,
        phase2.series_by_service <= MAX_SERIES,
        "{} span-metrics series (> {MAX_SERIES})",
        phase2.series_by_service
    );
    check!(
        checks,
        phase2.spans * 2 >= want2,
        "only {} spans counted of {want2} expected (both sides of every request)",
        phase2.spans
    );
    for name in ["GET", "HTTP", "SELECT t1", "SET", "_OTHER"] {
        check!(
            checks,
            phase2.span_names.contains(name),
            "no `{name}` span: the loads did not produce what this test bounds ({:?})",
            phase2.span_names
        );
    }
    w.done(checks)
}
