//! End-to-end: a real dnsmasq on a loopback address (port 53, UDP answered by the main
//! process, TCP by a child forked per connection), real clients (`dig` over UDP and TCP,
//! glibc's stub resolver through Python's `getaddrinfo` in a private mount namespace, a UDP
//! load client), the stock Collector, and the receiver tracing the whole host. dnsmasq starts
//! before the receiver, so its UDP socket is one the receiver registers from `/proc`.
//!
//! Ground truth: dig's own output (status, answers, query time), the client's timings, and
//! dnsmasq's query log (which process answered which question). Both traced sides are
//! checked: CLIENT spans from the asking process, SERVER spans from dnsmasq.
//!
//! Root only: built with `--features e2e` by `cargo xtask test`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use integration::check;
use integration::clients::dns::{self as dc, DigOptions, DigRun, Family};
use integration::clients::{self, Record};
use integration::collector::{AttrValue, STATUS_ERROR, STATUS_UNSET, SpanView};
use integration::load::proc_sample;
use integration::servers::dnsmasq::{self, DnsOptions, DnsQueryLog, Dnsmasq};
use integration::world::{Checks, Side, World, assert_no_secrets_anywhere};

/// Names under this domain all answer [`LOAD_V4`] (one `--address` rule).
const LOAD_DOMAIN: &str = "load.e2e.test";
const LOAD_V4: &str = "10.3.0.1";
/// Most addresses a span carries in `dns.answers`.
const MAX_ANSWERS: usize = 16;
/// Extra room for a span's duration over dig's `Query time` (whole milliseconds, truncated),
/// beyond the resolution of the clock dig reads (see [`query_time_slack_ns`]).
const QUERY_TIME_SLACK_NS: i128 = 2_000_000;

/// How much longer than dig's `Query time` a CLIENT span may be. dig stamps the query with
/// BIND's `isc_time_now`, which reads `CLOCK_REALTIME_COARSE`: one tick of it (4 ms on this
/// kernel) can pass unseen, so a 3.6 ms TCP query (the server's forked child reading late) was
/// printed as 0 ms. The tick is read from the kernel, not assumed.
fn query_time_slack_ns() -> i128 {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec to the pointer we own.
    let ok = unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut res) } == 0;
    let tick = if ok {
        i128::from(res.tv_sec) * 1_000_000_000 + i128::from(res.tv_nsec)
    } else {
        10_000_000
    };
    tick + QUERY_TIME_SLACK_NS
}

fn world(name: &str) -> Result<World<Dnsmasq>> {
    World::start(name, |dir| {
        Dnsmasq::start_with(
            &dir.join("dns"),
            &DnsOptions {
                extra_args: vec![format!("--address=/{LOAD_DOMAIN}/{LOAD_V4}")],
                ..DnsOptions::default()
            },
        )
    })
}

/// [`World::check_no_loss`] plus the kernel's other loss counters: mmsg overflow (glibc's
/// sendmmsg), unreadable buffers, a full connection or argument map.
fn check_no_dns_loss(w: &World<Dnsmasq>, checks: &mut Checks) {
    w.check_no_loss(checks);
    let m = match w.receiver().metrics() {
        Ok(m) => m,
        Err(e) => return checks.fail(format!("cannot scrape the receiver's metrics: {e:#}")),
    };
    for reason in [
        "mmsg_overflow",
        "read_failed",
        "conn_map_full",
        "args_map_full",
    ] {
        let key = format!("ebpf_receiver_kernel_drops_total{{reason=\"{reason}\"}}");
        check!(checks, m.get(&key) == 0.0, "{key} = {}", m.get(&key));
    }
}

// ---------- span helpers ----------

/// `dns.answers` as strings (empty when absent).
fn answers(s: &SpanView) -> Vec<String> {
    let Some(AttrValue::Other(v)) = s.attr("dns.answers") else {
        return Vec::new();
    };
    v.get("arrayValue")
        .and_then(|a| a.get("values"))
        .and_then(|a| a.as_array())
        .map(|values| {
            values
                .iter()
                .filter_map(|x| x.get("stringValue").and_then(|s| s.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn question(s: &SpanView) -> &str {
    s.str_attr("dns.question.name").unwrap_or("")
}

fn transport(s: &SpanView) -> &str {
    s.str_attr("network.transport").unwrap_or("")
}

fn is_dns(s: &SpanView) -> bool {
    s.name.starts_with("DNS ") && s.attr("dns.question.name").is_some()
}

fn describe(spans: &[&SpanView]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {} kind={} q={:?} {} answers={:?} error={:?} server={:?}:{:?} peer={:?}:{:?}",
                s.name,
                s.kind,
                question(s),
                transport(s),
                answers(s),
                s.str_attr("error.type"),
                s.str_attr("server.address"),
                s.int_attr("server.port"),
                s.str_attr("network.peer.address"),
                s.int_attr("network.peer.port"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What one exchange's span must say.
#[derive(Clone, Debug)]
struct Expect {
    qtype: String,
    qname: String,
    transport: &'static str,
    error: Option<String>,
    answers: Vec<String>,
}

/// Name, attributes and status of one span of a lookup against `dns`, either side.
fn assert_span(s: &SpanView, e: &Expect, dns: &Dnsmasq, side: Side) -> Result<()> {
    let what = format!("{side:?} span {}", describe(&[s]));
    ensure!(side.matches(s), "{what}: wrong kind");
    ensure!(
        s.name == format!("DNS {}", e.qtype),
        "{what}: name, want DNS {}",
        e.qtype
    );
    ensure!(
        question(s) == e.qname,
        "{what}: question, want {:?}",
        e.qname
    );
    ensure!(
        transport(s) == e.transport,
        "{what}: transport, want {}",
        e.transport
    );
    ensure!(
        answers(s) == e.answers,
        "{what}: answers, want {:?}",
        e.answers
    );
    match &e.error {
        Some(rcode) => ensure!(
            s.status_code == STATUS_ERROR && s.str_attr("error.type") == Some(rcode.as_str()),
            "{what}: want status ERROR with error.type {rcode}"
        ),
        None => ensure!(
            s.status_code == STATUS_UNSET && s.attr("error.type").is_none(),
            "{what}: want status UNSET without error.type"
        ),
    }
    // The resolver: the peer of a client, the local address of the server; always the port.
    ensure!(
        s.str_attr("server.address") == Some(&dns.addr.to_string())
            && s.int_attr("server.port") == Some(i64::from(dns.port)),
        "{what}: server.address/port, want {}",
        dns.server()
    );
    let peer = s.str_attr("network.peer.address");
    match side {
        Side::Client => ensure!(
            peer == Some(&dns.addr.to_string()) && s.int_attr("network.peer.port") == Some(53),
            "{what}: network.peer, want {}",
            dns.server()
        ),
        // The querying client, when known (a TCP child may be gone before its socket is
        // resolved: then absent, never wrong).
        Side::Server => ensure!(
            (peer.is_none() && e.transport == "tcp")
                || (peer == Some("127.0.0.1")
                    && s.int_attr("network.peer.port")
                        .is_some_and(|p| p > 0 && p != 53)),
            "{what}: network.peer, want the client 127.0.0.1"
        ),
    }
    Ok(())
}

/// The span of `side` with this question among `spans`: exactly one.
fn one<'a>(spans: &'a [SpanView], e: &Expect) -> Result<&'a SpanView> {
    let found: Vec<&SpanView> = spans
        .iter()
        .filter(|s| {
            s.name == format!("DNS {}", e.qtype)
                && question(s) == e.qname
                && transport(s) == e.transport
        })
        .collect();
    ensure!(
        found.len() == 1,
        "expected exactly one span for {} {} over {}, found {}:\n{}",
        e.qtype,
        e.qname,
        e.transport,
        found.len(),
        describe(&found)
    );
    Ok(found[0])
}

/// The server's span lies within the client's (one host, one clock).
fn assert_nested(client: &SpanView, server: &SpanView) -> Result<()> {
    ensure!(
        client.start_ns <= server.start_ns && server.end_ns <= client.end_ns,
        "SERVER span [{}, {}] is not inside its CLIENT span [{}, {}]: {}",
        server.start_ns,
        server.end_ns,
        client.start_ns,
        client.end_ns,
        describe(&[client, server])
    );
    Ok(())
}

// ---------- (a) dig ----------

/// One dig step and what its spans must say.
struct DigStep {
    qname: String,
    qtype: &'static str,
    opts: DigOptions,
    /// `dns.question.name` when the name is written with escapes.
    shown: Option<&'static str>,
}

fn dig_step(qname: &str, qtype: &'static str, tcp: bool) -> DigStep {
    DigStep {
        qname: qname.to_string(),
        qtype,
        opts: DigOptions {
            tcp,
            ..DigOptions::default()
        },
        shown: None,
    }
}

/// What the spans of a dig run must say, from dig's own output.
fn expect_from_dig(step: &DigStep, run: &DigRun) -> Expect {
    let wanted = match step.qtype {
        "A" | "AAAA" => step.qtype,
        _ => "none",
    };
    Expect {
        qtype: step.qtype.to_string(),
        qname: step
            .shown
            .map(str::to_string)
            .unwrap_or_else(|| step.qname.clone()),
        transport: if step.opts.tcp { "tcp" } else { "udp" },
        error: (run.status != "NOERROR").then(|| run.status.clone()),
        answers: run
            .answers
            .iter()
            .filter(|a| a.rtype == wanted)
            .map(|a| a.data.clone())
            .take(MAX_ANSWERS)
            .collect(),
    }
}

/// (a) dig over UDP and TCP against a dnsmasq that predates the receiver: A, AAAA, a CNAME
/// chain, TXT over TCP, NXDOMAIN, REFUSED, an unknown type, an escaped name, a truncated
/// answer; exactly one CLIENT span per dig and one SERVER span per query (the main process
/// for UDP, the forked child for TCP), with dig's answers and status, inside dig's run and
/// query time, the SERVER span inside the CLIENT span; the TXT value nowhere. Then a query
/// nobody answers: no span, counted as unmatched.
#[test]
fn a_dig_udp_and_tcp_both_sides() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("dns_dig")?;
    w.start_receiver()?;
    let dns_pid = w.server.pid();
    let server = w.server.server();
    let mut steps = vec![
        dig_step(dnsmasq::WEB, "A", false),
        dig_step(dnsmasq::WEB, "AAAA", false),
        dig_step(dnsmasq::ALIAS, "A", false),
        dig_step(dnsmasq::TXT, "TXT", true),
        dig_step(dnsmasq::NXDOMAIN, "A", false),
        dig_step("outside.example", "A", false),
        dig_step(dnsmasq::V4ONLY, "TYPE65280", false),
        dig_step(dnsmasq::ALIAS, "AAAA", true),
    ];
    let mut escaped = dig_step("caf\\195\\169.e2e.test", "A", false);
    escaped.shown = Some("caf\\195\\169.e2e.test");
    steps.push(escaped);
    let mut dotted = dig_step("a\\.b.e2e.test", "AAAA", false);
    dotted.shown = Some("a\\.b.e2e.test");
    steps.push(dotted);
    let mut truncated = dig_step(dnsmasq::MANY, "A", false);
    truncated.opts.noedns = true;
    truncated.opts.extra = vec!["+ignore".into()];
    steps.push(truncated);

    let earlier = w.server.query_log()?.len();
    let mut runs = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let run = dc::dig(
            &w.dir,
            &format!("dig{i}"),
            server,
            &step.qname,
            step.qtype,
            &step.opts,
        )?;
        runs.push(run);
    }
    let trunc = runs.last().expect("runs");
    check!(
        checks,
        trunc.flags.iter().any(|f| f == "tc") && trunc.answers.len() > MAX_ANSWERS,
        "{} over UDP without EDNS should be truncated with more than {MAX_ANSWERS} answers: {:?}",
        dnsmasq::MANY,
        trunc.flags
    );
    // Ground truth of who answered what: the main process for UDP, a child for TCP.
    let log: Vec<DnsQueryLog> = w.server.query_log()?.into_iter().skip(earlier).collect();
    let tcp_pids: Vec<u32> = log
        .iter()
        .filter(|q| q.pid != dns_pid)
        .map(|q| q.pid)
        .collect();
    check!(
        checks,
        tcp_pids.len() == 2,
        "two TCP queries answered by forked children: {log:?}"
    );
    let mut tcp_pid = tcp_pids.iter().copied();

    for (step, run) in steps.iter().zip(&runs) {
        let e = expect_from_dig(step, run);
        let client = match w.spans_from(run.pid(), Side::Client, &step.qname, |s| !s.is_empty()) {
            Ok(s) => s,
            Err(err) => {
                checks.fail(format!("{err:#}"));
                continue;
            }
        };
        let c = match one(&client, &e) {
            Ok(c) => c.clone(),
            Err(err) => {
                checks.fail(format!("dig {} {}: {err:#}", step.qname, step.qtype));
                continue;
            }
        };
        checks.add(assert_span(&c, &e, &w.server, Side::Client));
        // Within dig's run, and no longer than dig's own measurement of the exchange.
        check!(
            checks,
            run.run.start_unix_ns <= c.start_ns && c.end_ns <= run.run.end_unix_ns,
            "CLIENT span of {} {} [{}, {}] outside dig's run [{}, {}]",
            step.qname,
            step.qtype,
            c.start_ns,
            c.end_ns,
            run.run.start_unix_ns,
            run.run.end_unix_ns
        );
        if let Some(ms) = run.query_time_ms {
            check!(
                checks,
                c.duration_ns() <= i128::from(ms) * 1_000_000 + query_time_slack_ns(),
                "CLIENT span of {} {} lasts {} ns, dig measured {ms} ms",
                step.qname,
                step.qtype,
                c.duration_ns()
            );
        }
        let server_pid = if step.opts.tcp {
            tcp_pid.next().unwrap_or(0)
        } else {
            dns_pid
        };
        let e2 = e.clone();
        let server_spans = match w.spans_from(server_pid, Side::Server, &step.qname, |s| {
            s.iter()
                .any(|x| question(x) == e2.qname && x.name == format!("DNS {}", e2.qtype))
        }) {
            Ok(s) => s,
            Err(err) => {
                checks.fail(format!("{err:#}"));
                continue;
            }
        };
        match one(&server_spans, &e) {
            Ok(s) => {
                checks.add(assert_span(s, &e, &w.server, Side::Server));
                checks.add(assert_nested(&c, s));
            }
            Err(err) => checks.fail(format!("dig {} {}: {err:#}", step.qname, step.qtype)),
        }
    }

    // A query nobody answers (no server on that port): no span, one unmatched request.
    let before = w.receiver().metrics()?;
    let unmatched = "ebpf_receiver_messages_unmatched_total{protocol=\"dns\",side=\"request\"}";
    let mut silent = std::process::Command::new("dig");
    silent.arg(format!("@{}", w.server.addr)).args([
        "-p",
        "5",
        dnsmasq::WEB,
        "A",
        "+tries=1",
        "+time=1",
    ]);
    let silent = clients::run(&w.dir, "dig_silent", silent)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.receiver().metrics()?.get(unmatched) <= before.get(unmatched)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    check!(
        checks,
        w.receiver().metrics()?.get(unmatched) > before.get(unmatched),
        "the unanswered query was not counted: {}",
        w.receiver()
            .metrics()?
            .family("ebpf_receiver_messages_unmatched_total")
    );

    // Settled: exactly the spans above, the TXT value nowhere.
    let all = w.settled_spans(Duration::from_millis(1500), is_dns)?;
    for (step, run) in steps.iter().zip(&runs) {
        let n = all.iter().filter(|s| s.pid() == Some(run.pid())).count();
        check!(
            checks,
            n == 1,
            "dig {} {}: {n} spans",
            step.qname,
            step.qtype
        );
    }
    let udp_steps = steps.iter().filter(|s| !s.opts.tcp).count();
    let main: Vec<&SpanView> = all.iter().filter(|s| s.pid() == Some(dns_pid)).collect();
    check!(
        checks,
        main.len() == udp_steps,
        "dnsmasq's main process: {} SERVER spans for {udp_steps} UDP queries:\n{}",
        main.len(),
        describe(&main)
    );
    check!(
        checks,
        !all.iter().any(|s| s.pid() == Some(silent.pid)),
        "a span for the unanswered query"
    );
    for s in &all {
        checks.add(assert_no_secrets_anywhere(s, &[dnsmasq::TXT_VALUE]));
    }
    check_no_dns_loss(&w, &mut checks);
    w.done(checks)
}

// ---------- (b) getaddrinfo ----------

/// (b) glibc's stub resolver (Python `getaddrinfo`, A and AAAA together over one UDP socket
/// with sendmmsg): answered, NODATA and NXDOMAIN lookups, and the truncated answer after which
/// glibc asks again over TCP. Every query dnsmasq logged has exactly one SERVER span (main
/// process for UDP, forked child for TCP) and exactly one CLIENT span from Python, except the
/// UDP AAAA question of a truncated lookup, whose answer glibc may leave unread when it
/// switches to TCP (then no span, never a wrong one); and nothing else.
#[test]
fn b_getaddrinfo_with_tcp_fallback() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = world("dns_gai")?;
    w.start_receiver()?;
    let dns_pid = w.server.pid();
    let names = [
        dnsmasq::WEB,
        dnsmasq::V4ONLY,
        dnsmasq::NXDOMAIN,
        dnsmasq::MANY,
    ];
    // Queries logged before (dnsmasq's readiness check) are not the client's.
    let earlier = w.server.query_log()?.len();
    let run = dc::getaddrinfo(&w.dir, "gai", &w.server, &names, Family::Any, &[])?;
    let py = run.pid();
    let lookups: Vec<&Record> = run.of_kind("resolve");
    check!(checks, lookups.len() == names.len(), "lookups: {lookups:?}");
    let log: Vec<DnsQueryLog> = w.server.query_log()?.into_iter().skip(earlier).collect();
    let from_log = |q: &DnsQueryLog| {
        (
            q.name.clone(),
            q.qtype.clone(),
            if q.pid == dns_pid { "udp" } else { "tcp" },
        )
    };
    let mut want: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    for q in &log {
        *want.entry(from_log(q)).or_default() += 1;
    }
    check!(
        checks,
        want.keys().any(|k| k.0 == dnsmasq::MANY && k.2 == "tcp"),
        "glibc did not retry {} over TCP: {log:?}",
        dnsmasq::MANY
    );
    let total: usize = want.values().sum();
    let optional = want
        .get(&(dnsmasq::MANY.to_string(), "AAAA".to_string(), "udp"))
        .copied()
        .unwrap_or(0);
    w.spans_from(py, Side::Client, "every lookup", |s| {
        s.len() >= total - optional
    })?;
    let spans = w.settled_spans(Duration::from_millis(1000), |s| {
        s.pid() == Some(py) && s.is_client()
    })?;
    let mut got: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    for s in &spans {
        let t = if transport(s) == "tcp" { "tcp" } else { "udp" };
        *got.entry((
            question(s).to_string(),
            s.name.trim_start_matches("DNS ").to_string(),
            t,
        ))
        .or_default() += 1;
    }
    for (k, n) in &want {
        let g = got.get(k).copied().unwrap_or(0);
        let many_aaaa_udp = k.0 == dnsmasq::MANY && k.1 == "AAAA" && k.2 == "udp";
        check!(
            checks,
            g == *n || (many_aaaa_udp && g <= *n),
            "{k:?}: {g} CLIENT spans for {n} queries"
        );
    }
    for k in got.keys() {
        check!(
            checks,
            want.contains_key(k),
            "CLIENT span for {k:?} nobody asked"
        );
    }
    // Each CLIENT span within its lookup, with what the resolver answered.
    for s in &spans {
        let Some(l) = lookups.iter().find(|l| l.str("name") == Some(question(s))) else {
            continue;
        };
        let (start, end) = (l.start_unix_ns().unwrap_or(0), l.end_unix_ns().unwrap_or(0));
        check!(
            checks,
            start <= s.start_ns && s.end_ns <= end,
            "span {} outside its lookup [{start}, {end}]",
            describe(&[s])
        );
        let qname = question(s).to_string();
        let qtype = s.name.trim_start_matches("DNS ");
        let (error, answers_want): (Option<&str>, Vec<&str>) = match (qname.as_str(), qtype) {
            (dnsmasq::WEB, "A") => (None, vec![dnsmasq::WEB_V4]),
            (dnsmasq::WEB, "AAAA") => (None, vec![dnsmasq::WEB_V6]),
            (dnsmasq::V4ONLY, "A") => (None, vec![dnsmasq::V4ONLY_V4]),
            (dnsmasq::V4ONLY, "AAAA") => (None, vec![]),
            (dnsmasq::NXDOMAIN, _) | (dnsmasq::MANY, "AAAA") => (Some("NXDOMAIN"), vec![]),
            (dnsmasq::MANY, "A") => {
                // The first 16 of the answer, which lists all 60 over TCP and as many as fit
                // in 512 bytes over UDP (then TC).
                let a = answers(s);
                check!(
                    checks,
                    a.len() == MAX_ANSWERS && a.iter().all(|x| x.starts_with("10.2.0.")),
                    "{}",
                    describe(&[s])
                );
                continue;
            }
            _ => {
                checks.fail(format!("unexpected span {}", describe(&[s])));
                continue;
            }
        };
        let e = Expect {
            qtype: qtype.to_string(),
            qname,
            transport: if transport(s) == "tcp" { "tcp" } else { "udp" },
            error: error.map(str::to_string),
            answers: answers_want.into_iter().map(str::to_string).collect(),
        };
        checks.add(assert_span(s, &e, &w.server, Side::Client));
    }
    // The server side: exactly one SERVER span per logged query, from the process that
    // logged it.
    let pids: Vec<u32> = {
        let mut p: Vec<u32> = log.iter().map(|q| q.pid).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let server_spans = w.settled_spans(Duration::from_millis(200), |s| {
        s.pid().is_some_and(|p| pids.contains(&p)) && s.is_server() && is_dns(s)
    })?;
    for pid in &pids {
        let mut logged: BTreeMap<(String, String), usize> = BTreeMap::new();
        for q in log.iter().filter(|q| q.pid == *pid) {
            *logged.entry((q.name.clone(), q.qtype.clone())).or_default() += 1;
        }
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for s in server_spans.iter().filter(|s| s.pid() == Some(*pid)) {
            *seen
                .entry((
                    question(s).to_string(),
                    s.name.trim_start_matches("DNS ").to_string(),
                ))
                .or_default() += 1;
        }
        check!(
            checks,
            logged == seen,
            "dnsmasq pid {pid} ({}): logged {logged:?}, SERVER spans {seen:?}",
            if *pid == dns_pid { "UDP" } else { "TCP child" }
        );
    }
    check_no_dns_loss(&w, &mut checks);
    w.done(checks)
}

// ---------- (c) load ----------

/// The receiver's utime+stime in µs.
fn cpu_us(pid: u32) -> Result<f64> {
    Ok(proc_sample(pid)?.cpu_s * 1e6)
}

/// (c) 20,000 distinct questions at full speed over one unconnected UDP socket (8 in flight):
/// every question has its CLIENT span and its dnsmasq SERVER span, the kernel loss counters
/// (ring full, mmsg overflow) read 0, and the figures line.
#[test]
fn c_twenty_thousand_udp_queries_lose_nothing() -> Result<()> {
    let mut checks = Checks::default();
    let count: u64 = std::env::var("E2E_LOAD_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut w = world("dns_load")?;
    w.start_receiver()?;
    let dns_pid = w.server.pid();
    let receiver_pid = w.receiver().pid();
    let bytes_key = "ebpf_receiver_kernel_bytes_total{stream=\"data\"}";
    let invalid_key = "ebpf_receiver_frames_invalid_total{protocol=\"dns\"}";
    let before = w.receiver().metrics()?;
    let cpu0 = cpu_us(receiver_pid)?;
    let started = Instant::now();
    let run = dc::udp_load(&w.dir, "load", &w.server, LOAD_DOMAIN, count, 8)?;
    let load = run.of_kind("load")[0].clone();
    check!(
        checks,
        load.u64("answered") == Some(count) && load.u64("errors") == Some(0),
        "load client: {load:?}"
    );
    eprintln!(
        "[e2e:dns_load] {count} queries in {:.2} s",
        load.duration_ns().unwrap_or(0) as f64 / 1e9
    );
    let load_pid = run.pid();
    let is_load = |s: &SpanView| {
        is_dns(s)
            && question(s).ends_with(LOAD_DOMAIN)
            && (s.pid() == Some(load_pid) && s.is_client()
                || s.pid() == Some(dns_pid) && s.is_server())
    };
    let n = count as usize;
    let spans = w
        .collector
        .wait_for("every load span", Duration::from_secs(90), is_load, |s| {
            s.len() >= 2 * n
        });
    let cpu1 = cpu_us(receiver_pid)?;
    let elapsed = started.elapsed();
    let after = w.receiver().metrics()?;
    let spans = match spans {
        Ok(_) => w.settled_spans(Duration::from_millis(500), is_load)?,
        Err(e) => {
            checks.fail(format!("{e:#}"));
            w.settled_spans(Duration::from_millis(0), is_load)?
        }
    };
    // Every question exactly once per side, with its answer.
    let mut client: BTreeMap<&str, usize> = BTreeMap::new();
    let mut server: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for s in &spans {
        let side = if s.is_client() {
            &mut client
        } else {
            &mut server
        };
        *side.entry(question(s)).or_default() += 1;
        if s.name != "DNS A" || answers(s) != [LOAD_V4] || s.status_code != STATUS_UNSET {
            wrong.push(s);
        }
    }
    let expected = |m: &BTreeMap<&str, usize>| {
        m.len() == n
            && m.values().all(|v| *v == 1)
            && (0..count).all(|i| m.contains_key(format!("q{i}.{LOAD_DOMAIN}").as_str()))
    };
    check!(
        checks,
        expected(&client) && expected(&server),
        "expected each of {n} questions once per side: {} CLIENT ({} distinct), {} SERVER ({} distinct)",
        client.values().sum::<usize>(),
        client.len(),
        server.values().sum::<usize>(),
        server.len()
    );
    check!(
        checks,
        wrong.is_empty(),
        "{} load spans with the wrong name/answers/status, e.g.:\n{}",
        wrong.len(),
        describe(&wrong.iter().take(5).copied().collect::<Vec<_>>())
    );
    check_no_dns_loss(&w, &mut checks);
    let invalid = after.get(invalid_key) - before.get(invalid_key);
    check!(checks, invalid == 0.0, "{invalid} invalid DNS frames");
    let kernel_bytes = after.get(bytes_key) - before.get(bytes_key);
    println!(
        "[figures] protocol=dns tool=dns_load.py requests={count} spans={} invalid_frames={invalid} kernel_bytes_per_request={:.1} receiver_cpu_us_per_1000={:.1}{}",
        spans.len(),
        kernel_bytes / count as f64,
        (cpu1 - cpu0) / count as f64 * 1000.0,
        integration::figures::kernel_per_request(&before, &after, count as u64)
    );
    eprintln!(
        "[e2e:dns_load] load and spans drained in {:.2} s",
        elapsed.as_secs_f64()
    );
    w.done(checks)
}
