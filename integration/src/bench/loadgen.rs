//! The fixed-rate (open-loop) load generator for HTTP/1.1 and Redis, `target/…/loadgen`.
//!
//! Request `i` is scheduled at `t0 + i/R`. An event loop per thread (one by default) sends each
//! request at its time on an idle connection of its `C` non-blocking connections (no
//! pipelining: at most one request in flight per connection) and waits in `ppoll` until the next
//! scheduled time or a reply. When every connection is busy, or the server or the generator
//! falls behind, due requests wait in a queue and go out late, back to back; their latency is
//! still measured **from the scheduled send time** (the correction for coordinated omission that
//! wrk2 makes), so a stall shows in the percentiles instead of thinning the load. One thread
//! costs a few µs of CPU per request, far less than a thread per connection waking per request.
//! Latencies go into a [`Histogram`] per thread, merged at the end; one JSON line is printed on
//! stdout ([`Summary`]).
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
    /// Event-loop threads; connections and rate are split between them.
    pub threads: usize,
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
        let mut threads = 1usize;
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
                "--threads" => threads = val()?.parse().context("--threads")?,
                "--duration-s" => {
                    duration = Duration::from_secs_f64(val()?.parse().context("--duration-s")?)
                }
                "--path" => path = val()?.clone(),
                other => bail!("unknown argument {other}"),
            }
        }
        let rate = rate.context("--rate is required")?;
        if rate.is_nan() || rate <= 0.0 || connections == 0 {
            bail!("--rate must be > 0 and --connections ≥ 1");
        }
        Ok(LoadgenArgs {
            proto: proto.context("--proto is required")?,
            addr: addr.context("--addr is required")?,
            rate,
            connections,
            threads,
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
    let threads = args.threads.clamp(1, args.connections);
    // Connect everything first: connection setup is not part of the measured schedule.
    let mut per_thread: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..args.connections {
        let s = TcpStream::connect(args.addr).with_context(|| format!("connect {}", args.addr))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        per_thread[i % threads].push(s);
    }
    let t0 = Instant::now() + Duration::from_millis(20);
    let rate = args.rate / threads as f64;
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(k, streams)| {
            let args = args.clone();
            // Threads interleave their schedules.
            let first = t0 + Duration::from_secs_f64(k as f64 / args.rate);
            std::thread::spawn(move || event_loop(streams, &args, rate, first, k))
        })
        .collect();
    let mut hist = Histogram::default();
    let (mut errors, mut late) = (0, 0);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
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

/// One connection of an event loop.
struct Conn {
    stream: TcpStream,
    reader: Reader,
    /// The scheduled send time of the request in flight.
    inflight: Option<Instant>,
    out: Vec<u8>,
    sent: usize,
    seq: u64,
}

/// One thread: a schedule of `rate` requests per second from `first`, spread over `streams`
/// (non-blocking, each with at most one request in flight), driven by `ppoll`. A request whose
/// time has come waits in a queue while every connection is busy; its latency still counts
/// from its scheduled time. After the last scheduled time the queue and the in-flight requests
/// are completed (at most 10 s more).
fn event_loop(
    streams: Vec<TcpStream>,
    args: &LoadgenArgs,
    rate: f64,
    first: Instant,
    k: usize,
) -> Result<ThreadResult> {
    use std::os::fd::AsRawFd as _;
    set_timer_slack();
    let mut out = ThreadResult::default();
    let total = (args.duration.as_secs_f64() * rate).floor() as u64;
    let interval = 1.0 / rate;
    let sched = |i: u64| first + Duration::from_secs_f64(i as f64 * interval);
    let mut conns: Vec<Conn> = streams
        .into_iter()
        .enumerate()
        .map(|(j, stream)| Conn {
            stream,
            reader: Reader::default(),
            inflight: None,
            out: Vec::with_capacity(256),
            sent: 0,
            seq: (k * 1013 + j * 7919) as u64,
        })
        .collect();
    let mut idle: std::collections::VecDeque<usize> = (0..conns.len()).collect();
    let mut queue: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let mut next: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(conns.len());
    let hard_end = sched(total) + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        while next < total && sched(next) <= now {
            let t = sched(next);
            if now - t > Duration::from_millis(1) {
                out.late += 1;
            }
            queue.push_back(t);
            next += 1;
        }
        while !queue.is_empty() {
            let Some(c) = idle.pop_front() else {
                break;
            };
            let t = queue.pop_front().unwrap_or(now);
            let conn = &mut conns[c];
            conn.out.clear();
            conn.sent = 0;
            build_request(args, conn.seq, &mut conn.out);
            conn.seq += 1;
            conn.inflight = Some(t);
            if !flush(conn) {
                fail(&mut out, conn, args)?;
                idle.push_back(c);
            }
        }
        let busy = conns.iter().any(|c| c.inflight.is_some());
        if next >= total && queue.is_empty() && !busy {
            break;
        }
        if Instant::now() > hard_end {
            out.errors +=
                queue.len() as u64 + conns.iter().filter(|c| c.inflight.is_some()).count() as u64;
            break;
        }
        // Sleep until the next scheduled send or a reply, whichever is first.
        let timeout = if next < total && (queue.is_empty() || !idle.is_empty()) {
            sched(next).saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        fds.clear();
        for c in &conns {
            let mut events = 0;
            if c.inflight.is_some() {
                events |= libc::POLLIN;
            }
            if c.sent < c.out.len() && c.inflight.is_some() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a live array of pollfd of the given length; the timespec and the
        // null signal mask are valid for the call.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("ppoll: {e}");
        }
        if n == 0 {
            continue;
        }
        for (c, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let conn = &mut conns[c];
            if pfd.revents & libc::POLLOUT != 0 && !flush(conn) {
                fail(&mut out, conn, args)?;
                idle.push_back(c);
                continue;
            }
            if pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) == 0 {
                continue;
            }
            match conn
                .reader
                .poll_reply(&mut conn.stream, &mut buf, args.proto)
            {
                Poll::Pending => {}
                Poll::Done(ok) => {
                    let t = conn.inflight.take().unwrap_or(now);
                    if ok {
                        out.hist.record(t.elapsed().as_nanos() as u64);
                    } else {
                        out.errors += 1;
                    }
                    idle.push_back(c);
                }
                Poll::Failed => {
                    fail(&mut out, conn, args)?;
                    idle.push_back(c);
                }
            }
        }
    }
    Ok(out)
}

/// Counts the request in flight as an error and reconnects (the framing is lost).
fn fail(out: &mut ThreadResult, conn: &mut Conn, args: &LoadgenArgs) -> Result<()> {
    out.errors += 1;
    conn.inflight = None;
    conn.out.clear();
    conn.sent = 0;
    conn.reader = Reader::default();
    let s = TcpStream::connect(args.addr).with_context(|| format!("reconnect {}", args.addr))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    conn.stream = s;
    Ok(())
}

/// Writes what is left of the request; false on a broken connection.
fn flush(conn: &mut Conn) -> bool {
    while conn.sent < conn.out.len() {
        match conn.stream.write(&conn.out[conn.sent..]) {
            Ok(0) => return false,
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn build_request(args: &LoadgenArgs, seq: u64, req: &mut Vec<u8>) {
    match args.proto {
        Proto::Http => {
            req.extend_from_slice(b"GET ");
            req.extend_from_slice(args.path.as_bytes());
            req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadgen\r\n\r\n");
        }
        Proto::Redis => {
            let key = format!("key:{:04}", (seq / 2) % 10_000);
            if seq.is_multiple_of(2) {
                resp_command(req, &[b"SET", key.as_bytes(), b"xyz"]);
            } else {
                resp_command(req, &[b"GET", key.as_bytes()]);
            }
        }
    }
}

enum Poll {
    Pending,
    Done(bool),
    Failed,
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
    /// Reads what the socket has; `Done(ok)` once a whole reply is buffered (ok: 2xx / not a
    /// Redis error), `Pending` when more is needed, `Failed` on EOF, an error or unframeable
    /// bytes.
    fn poll_reply(&mut self, stream: &mut TcpStream, buf: &mut [u8], proto: Proto) -> Poll {
        // One read per readiness: a reply is small; what is missing comes with the next POLLIN
        // (no extra read just to see EAGAIN).
        match stream.read(buf) {
            Ok(0) => return Poll::Failed,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                return Poll::Pending;
            }
            Err(_) => return Poll::Failed,
        }
        let r = match proto {
            Proto::Http => http_complete(&self.pending),
            Proto::Redis => resp_complete(&self.pending),
        };
        match r {
            None => Poll::Pending,
            Some(Err(())) => Poll::Failed,
            Some(Ok((len, ok))) => {
                self.pending.drain(..len);
                Poll::Done(ok)
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
        let a: Vec<String> =
            "--proto redis --addr 127.0.0.1:6379 --rate 1000 --connections 4 --duration-s 2"
                .split(' ')
                .map(String::from)
                .collect();
        let p = LoadgenArgs::parse(&a).expect("parse");
        assert_eq!(p.proto, Proto::Redis);
        assert_eq!(p.connections, 4);
        assert!(LoadgenArgs::parse(&a[..2]).is_err());
    }
}
