//! The fixed-rate (open-loop) load generator for HTTP/1.1 and Redis, `target/…/loadgen`.
//!
//! `C` connections (one thread each, blocking sockets, no pipelining) share a total rate `R`:
//! connection `k` sends request `i` at the scheduled time `t0 + (k/C + i)·C/R`. A request is
//! never sent before its time; when the server (or the generator) falls behind, requests go out
//! late, back to back, and their latency is still measured **from the scheduled send time**
//! (the correction for coordinated omission that wrk2 makes), so a stall shows in the
//! percentiles instead of thinning the load. Latencies go into a [`Histogram`] per thread,
//! merged at the end; one JSON line is printed on stdout ([`Summary`]).
//!
//! Requests: HTTP `GET <path> HTTP/1.1` with keep-alive (the response is read to the end of its
//! `Content-Length`), or Redis `SET key:<n> xyz` / `GET key:<n>` alternating over 10,000 keys
//! (RESP2 replies read whole). Timer slack is set to 1 ns so sleeps end on time.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::hist::Histogram;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http,
    Redis,
}

#[derive(Clone, Debug)]
pub struct LoadgenArgs {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// Total requests per second over all connections.
    pub rate: f64,
    pub connections: usize,
    pub duration: Duration,
    /// HTTP request path.
    pub path: String,
}

/// What the generator prints (one JSON line).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub duration_s: f64,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Requests sent more than 1 ms after their scheduled time (the generator or server fell
    /// behind).
    pub late_sends: u64,
}

impl LoadgenArgs {
    /// `--proto http|redis --addr A --rate R --connections C --duration-s D [--path P]`.
    pub fn parse(args: &[String]) -> Result<LoadgenArgs> {
        let mut proto = None;
        let mut addr = None;
        let mut rate = None;
        let mut connections = 8usize;
        let mut duration = Duration::from_secs(5);
        let mut path = "/".to_string();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--proto" => {
                    proto = Some(match val()?.as_str() {
                        "http" => Proto::Http,
                        "redis" => Proto::Redis,
                        other => bail!("unknown --proto {other} (http, redis)"),
                    })
                }
                "--addr" => addr = Some(val()?.parse().context("--addr")?),
                "--rate" => rate = Some(val()?.parse::<f64>().context("--rate")?),
                "--connections" => connections = val()?.parse().context("--connections")?,
                "--duration-s" => {
                    duration = Duration::from_secs_f64(val()?.parse().context("--duration-s")?)
                }
                "--path" => path = val()?.clone(),
                other => bail!("unknown argument {other}"),
            }
        }
        let rate = rate.context("--rate is required")?;
        if !(rate > 0.0) || connections == 0 {
            bail!("--rate must be > 0 and --connections ≥ 1");
        }
        Ok(LoadgenArgs {
            proto: proto.context("--proto is required")?,
            addr: addr.context("--addr is required")?,
            rate,
            connections,
            duration,
            path,
        })
    }
}

#[derive(Default)]
struct ThreadResult {
    hist: Histogram,
    errors: u64,
    late: u64,
}

/// Runs the load and returns the summary.
pub fn run(args: &LoadgenArgs) -> Result<Summary> {
    // Connect everything first: connection setup is not part of the measured schedule.
    let mut streams = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let s = TcpStream::connect(args.addr).with_context(|| format!("connect {}", args.addr))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        streams.push(s);
    }
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let t0 = Instant::now() + Duration::from_millis(20);
    let end = t0 + args.duration;
    let n = args.connections;
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, stream)| {
            let args = args.clone();
            let first = t0 + interval.mul_f64(k as f64 / n as f64);
            std::thread::spawn(move || connection(stream, &args, first, interval, end, k))
        })
        .collect();
    let mut hist = Histogram::default();
    let (mut errors, mut late) = (0, 0);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        hist.merge(&r.hist);
        errors += r.errors;
        late += r.late;
    }
    let elapsed = args.duration.as_secs_f64();
    let us = |ns: u64| ns as f64 / 1e3;
    Ok(Summary {
        requests: hist.count(),
        errors,
        duration_s: elapsed,
        target_rate: args.rate,
        achieved_rate: hist.count() as f64 / elapsed,
        mean_us: hist.mean_ns() / 1e3,
        p50_us: us(hist.quantile_ns(0.5)),
        p90_us: us(hist.quantile_ns(0.9)),
        p99_us: us(hist.quantile_ns(0.99)),
        p999_us: us(hist.quantile_ns(0.999)),
        max_us: us(hist.max_ns()),
        late_sends: late,
    })
}

fn set_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

fn connection(
    mut stream: TcpStream,
    args: &LoadgenArgs,
    first: Instant,
    interval: Duration,
    end: Instant,
    k: usize,
) -> ThreadResult {
    set_timer_slack();
    let mut out = ThreadResult::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut req = Vec::with_capacity(256);
    let mut reader = Reader::default();
    let mut i: u64 = 0;
    loop {
        let scheduled = first + interval.mul_f64(i as f64);
        if scheduled >= end {
            break;
        }
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        } else if now - scheduled > Duration::from_millis(1) {
            out.late += 1;
        }
        req.clear();
        match args.proto {
            Proto::Http => {
                req.extend_from_slice(b"GET ");
                req.extend_from_slice(args.path.as_bytes());
                req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadgen\r\n\r\n");
            }
            Proto::Redis => {
                let key = format!("key:{:04}", (i as usize * 7 + k * 1013) % 10_000);
                if i % 2 == 0 {
                    resp_command(&mut req, &[b"SET", key.as_bytes(), b"xyz"]);
                } else {
                    resp_command(&mut req, &[b"GET", key.as_bytes()]);
                }
            }
        }
        let ok = stream.write_all(&req).is_ok()
            && match args.proto {
                Proto::Http => reader.http_response(&mut stream, &mut buf),
                Proto::Redis => reader.resp_reply(&mut stream, &mut buf),
            };
        if ok {
            out.hist.record(scheduled.elapsed().as_nanos() as u64);
        } else {
            out.errors += 1;
            // The connection's framing is lost: reconnect once, or stop this connection.
            match TcpStream::connect(args.addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    stream = s;
                    reader = Reader::default();
                }
                Err(_) => break,
            }
        }
        i += 1;
    }
    out
}

fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
}

/// Bytes read but not consumed yet (a reply never spans two requests here, but a read may end
/// mid-reply).
#[derive(Default)]
struct Reader {
    pending: Vec<u8>,
}

impl Reader {
    fn fill(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> bool {
        match stream.read(buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Reads one HTTP/1.1 response with a `Content-Length` body; true when it arrived whole
    /// with a 2xx status.
    fn http_response(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> bool {
        loop {
            if let Some(n) = http_complete(&self.pending) {
                let ok = match n {
                    Ok((len, status_ok)) => {
                        self.pending.drain(..len);
                        status_ok
                    }
                    Err(()) => false,
                };
                return ok;
            }
            if !self.fill(stream, buf) {
                return false;
            }
        }
    }

    /// Reads one RESP2 reply (simple string, error, integer, bulk string); true unless it is
    /// an error reply or the connection failed.
    fn resp_reply(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> bool {
        loop {
            if let Some(r) = resp_complete(&self.pending) {
                return match r {
                    Ok((len, ok)) => {
                        self.pending.drain(..len);
                        ok
                    }
                    Err(()) => false,
                };
            }
            if !self.fill(stream, buf) {
                return false;
            }
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// `Some(Ok((bytes, status is 2xx)))` once a whole response is buffered; `Some(Err)` for a
/// response this generator cannot frame (no Content-Length).
fn http_complete(b: &[u8]) -> Option<Result<(usize, bool), ()>> {
    let head_end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&b[..head_end]).ok()?;
    let status_ok = head.split(' ').nth(1).is_some_and(|s| s.starts_with('2'));
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    let Some(len) = len else {
        return Some(Err(()));
    };
    (b.len() >= head_end + len).then_some(Ok((head_end + len, status_ok)))
}

/// `Some(Ok((bytes, not an error reply)))` once a whole RESP2 reply is buffered.
fn resp_complete(b: &[u8]) -> Option<Result<(usize, bool), ()>> {
    let first = *b.first()?;
    let line = find_crlf(b)?;
    match first {
        b'+' | b':' => Some(Ok((line + 2, true))),
        b'-' => Some(Ok((line + 2, false))),
        b'$' => {
            let n: i64 = std::str::from_utf8(&b[1..line]).ok()?.parse().ok()?;
            if n < 0 {
                return Some(Ok((line + 2, true)));
            }
            let total = line + 2 + n as usize + 2;
            (b.len() >= total).then_some(Ok((total, true)))
        }
        _ => Some(Err(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_framing() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1";
        assert_eq!(http_complete(r), Some(Ok((41, true))));
        assert_eq!(http_complete(&r[..38]), None);
        assert_eq!(
            http_complete(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            Some(Ok((45, false)))
        );
        assert_eq!(
            http_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(Err(()))
        );
    }

    #[test]
    fn resp_framing() {
        assert_eq!(resp_complete(b"+OK\r\n"), Some(Ok((5, true))));
        assert_eq!(resp_complete(b"$3\r\nxyz\r\n"), Some(Ok((9, true))));
        assert_eq!(resp_complete(b"$3\r\nxy"), None);
        assert_eq!(resp_complete(b"$-1\r\n"), Some(Ok((5, true))));
        assert_eq!(resp_complete(b"-ERR x\r\n"), Some(Ok((8, false))));
        let mut c = Vec::new();
        resp_command(&mut c, &[b"GET", b"k"]);
        assert_eq!(c, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn args() {
        let a: Vec<String> = "--proto redis --addr 127.0.0.1:6379 --rate 1000 --connections 4 --duration-s 2"
            .split(' ')
            .map(String::from)
            .collect();
        let p = LoadgenArgs::parse(&a).expect("parse");
        assert_eq!(p.proto, Proto::Redis);
        assert_eq!(p.connections, 4);
        assert!(LoadgenArgs::parse(&a[..2]).is_err());
    }
}
