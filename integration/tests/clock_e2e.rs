//! Span times against the client's own clock (issue 8, R10).
//!
//! The client is this test process: a plain TCP socket to Redis, `PING` in one `write`, the
//! reply read back, with CLOCK_REALTIME read right before the write, right after it returned
//! and right after the reply was read. The kernel stamps the syscall between the first two
//! reads, so the CLIENT span's start must lie in `[before − 1 ms, after + 1 ms]` whatever the
//! scheduler did between them, and its end in `[after − 1 ms, reply + 1 ms]`. The figures
//! printed are `span start − before` (p50/p99/max of its absolute value), the same for the end,
//! and `|span duration − client duration|`. `p99 ≤ 1 ms` of the start offset is asserted too.
//!
//! Negative durations are checked for every span of every e2e test by the harness itself
//! (`collector::check_span_times`, run by every read of the Collector's output and by
//! `World::done`); the wall-clock step is covered by unit tests with scripted clocks
//! (`receiver/src/tracker/clock.rs`, `tracker/tests.rs`), which never step the host's clock.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use integration::check;
use integration::process::unix_now_ns;
use integration::servers::redis::Redis;
use integration::world::{Checks, Side, World};

/// Requests measured (one every few ms, so each span is its own).
const REQUESTS: usize = 300;
const SLACK_NS: i128 = 1_000_000;

struct Sample {
    before: u64,
    after_write: u64,
    reply: u64,
}

fn percentile(sorted: &[i128], p: f64) -> i128 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn figures(label: &str, mut v: Vec<i128>) -> (i128, i128, i128) {
    v.sort_unstable();
    let (p50, p99, max) = (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0),
    );
    eprintln!(
        "[clock] {label}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (n={})",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        max as f64 / 1e3,
        v.len()
    );
    (p50, p99, max)
}

#[test]
fn span_times_match_the_clients_clock_on_loopback() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = World::start("clock_offsets", Redis::start)?;
    w.start_receiver()?;

    let mut s = TcpStream::connect(("127.0.0.1", w.server.port)).context("connect to redis")?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut samples = Vec::with_capacity(REQUESTS);
    let mut buf = [0u8; 64];
    for _ in 0..REQUESTS {
        let before = unix_now_ns();
        s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let after_write = unix_now_ns();
        let mut got = 0;
        while !buf[..got].ends_with(b"\r\n") {
            let n = s.read(&mut buf[got..])?;
            ensure!(n > 0, "redis closed the connection");
            got += n;
        }
        let reply = unix_now_ns();
        ensure!(&buf[..got] == b"+PONG\r\n", "reply {:?}", &buf[..got]);
        samples.push(Sample {
            before,
            after_write,
            reply,
        });
        std::thread::sleep(Duration::from_millis(3));
    }
    drop(s);

    let me = std::process::id();
    let mut spans = w.spans_from(me, Side::Client, "one PING span per request", |s| {
        s.iter().filter(|s| s.name == "PING").count() >= REQUESTS
    })?;
    spans.retain(|s| s.name == "PING");
    spans.sort_by_key(|s| s.start_ns);
    check!(
        checks,
        spans.len() == REQUESTS,
        "{} PING CLIENT spans from this process, {REQUESTS} requests",
        spans.len()
    );

    let (mut start_off, mut end_off, mut dur_off) = (Vec::new(), Vec::new(), Vec::new());
    let mut outside = Vec::new();
    for (i, (sp, c)) in spans.iter().zip(&samples).enumerate() {
        let (start, end) = (i128::from(sp.start_ns), i128::from(sp.end_ns));
        let (before, after, reply) = (
            i128::from(c.before),
            i128::from(c.after_write),
            i128::from(c.reply),
        );
        start_off.push((start - before).abs());
        end_off.push((end - reply).abs());
        dur_off.push(((end - start) - (reply - before)).abs());
        if start < before - SLACK_NS || start > after + SLACK_NS {
            outside.push(format!(
                "#{i} start {} ns from the write [{} .. {}]",
                start - before,
                0,
                after - before
            ));
        }
        if end < after - SLACK_NS || end > reply + SLACK_NS {
            outside.push(format!(
                "#{i} end {} ns from the reply read (write returned at {} ns before it)",
                end - reply,
                reply - after
            ));
        }
    }
    let (_, p99, _) = figures("|span start − client send time|", start_off);
    figures("|span end − client reply time|", end_off);
    figures("|span duration − client duration|", dur_off);
    check!(
        checks,
        outside.is_empty(),
        "{} span ends outside the client's own bracket ± 1 ms:\n  {}",
        outside.len(),
        outside.join("\n  ")
    );
    check!(
        checks,
        p99 <= SLACK_NS,
        "p99 of |span start − client send time| is {p99} ns, over 1 ms"
    );
    let server = w.server.pid();
    let served = w.spans_from(server, Side::Server, "the PINGs served", |s| {
        s.iter().filter(|s| s.name == "PING").count() >= REQUESTS
    })?;
    // Each SERVER span lies inside its client's request.
    let mut served: Vec<_> = served.into_iter().filter(|s| s.name == "PING").collect();
    served.sort_by_key(|s| s.start_ns);
    let inside = served
        .iter()
        .zip(&samples)
        .filter(|(s, c)| {
            i128::from(s.start_ns) >= i128::from(c.before) - SLACK_NS
                && i128::from(s.end_ns) <= i128::from(c.reply) + SLACK_NS
        })
        .count();
    check!(
        checks,
        inside == REQUESTS,
        "{inside} of {REQUESTS} SERVER spans inside their client's [send, reply] ± 1 ms"
    );
    w.done(checks)
}
