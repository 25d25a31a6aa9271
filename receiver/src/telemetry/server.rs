//! `/metrics`, `/healthz`, `/readyz` over a deliberately tiny HTTP/1.1 server.
//!
//! One request per connection (`Connection: close`), `GET` and `HEAD` only, request head capped
//! at [`MAX_REQUEST_BYTES`], every connection bounded by [`CONNECTION_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] at once (more wait in the accept backlog). That is all Prometheus and the
//! kubelet's probes need, and it keeps a web framework out of the image. Connections get their own
//! task (an exception to "only app.rs spawns"): one slow client must not hold up a liveness probe.
//! Nothing here panics on input; bad requests get 400/405/431 and the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::metrics;

/// Largest request head (request line and headers) we read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Longest a connection may take from accept to the last byte of the response.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// Binds the metrics listener (call before dropping privileges or starting probes, so a port
/// conflict fails the start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` is cancelled. Connections already accepted finish on their own,
/// within [`CONNECTION_TIMEOUT`].
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    serve_with(listener, shutdown, CONNECTION_TIMEOUT).await;
}

async fn serve_with(listener: TcpListener, shutdown: CancellationToken, timeout: Duration) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::debug!(error = %e, "metrics server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, handle(stream)).await;
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn handle(mut stream: TcpStream) {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let head_end = loop {
        if let Some(end) = find_head_end(buf.get(..len).unwrap_or_default()) {
            break end;
        }
        if len == buf.len() {
            respond(
                &mut stream,
                false,
                431,
                "Request Header Fields Too Large",
                PLAIN_TEXT,
                b"too large\n",
                &[],
            )
            .await;
            return;
        }
        match stream.read(buf.get_mut(len..).unwrap_or_default()).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    };
    let head = buf.get(..head_end).unwrap_or_default();
    let Some((method, path)) = parse_request_line(head) else {
        respond(
            &mut stream,
            false,
            400,
            "Bad Request",
            PLAIN_TEXT,
            b"bad request\n",
            &[],
        )
        .await;
        return;
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        respond(
            &mut stream,
            false,
            405,
            "Method Not Allowed",
            PLAIN_TEXT,
            b"method not allowed\n",
            &["Allow: GET, HEAD"],
        )
        .await;
        return;
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path {
        "/metrics" => {
            let body = metrics().render();
            respond(
                &mut stream,
                head_only,
                200,
                "OK",
                PROMETHEUS_TEXT,
                body.as_bytes(),
                &[],
            )
            .await;
        }
        "/healthz" => respond(&mut stream, head_only, 200, "OK", PLAIN_TEXT, b"ok\n", &[]).await,
        "/readyz" => {
            if metrics().ready.load(Ordering::Relaxed) {
                respond(
                    &mut stream,
                    head_only,
                    200,
                    "OK",
                    PLAIN_TEXT,
                    b"ready\n",
                    &[],
                )
                .await;
            } else {
                respond(
                    &mut stream,
                    head_only,
                    503,
                    "Service Unavailable",
                    PLAIN_TEXT,
                    b"not ready\n",
                    &[],
                )
                .await;
            }
        }
        _ => {
            respond(
                &mut stream,
                head_only,
                404,
                "Not Found",
                PLAIN_TEXT,
                b"not found\n",
                &[],
            )
            .await
        }
    }
}

/// Index just past the blank line ending the request head (tolerating bare `\n` line ends).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// `(method, target)` from `METHOD SP target SP HTTP/1.x`.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(head.get(..line_end)?)
        .ok()?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some((method, target))
}

async fn respond(
    stream: &mut TcpStream,
    head_only: bool,
    code: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    extra_headers: &[&str],
) {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in extra_headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if !head_only && stream.write_all(body).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(
        timeout: Duration,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_with(listener, stop.clone(), timeout));
        (addr, stop, task)
    }

    /// Sends raw bytes, returns the whole response as text.
    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await
    }

    fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
        resp.split("\r\n\r\n").next()?.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let (addr, stop, task) = start(Duration::from_secs(5)).await;
        let r = get(addr, "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            header(&r, "content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            header(&r, "content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            body.len()
        );
        assert!(body.contains("# TYPE ebpf_receiver_spans_exported_total counter"));

        let r = get(addr, "/healthz").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok\n"),
            "{r}"
        );

        // `ready` is process-global: flip it and put it back.
        let was = metrics().ready.load(Ordering::Relaxed);
        metrics().ready.store(false, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503 "));
        metrics().ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200 "));
        metrics().ready.store(was, Ordering::Relaxed);

        assert!(get(addr, "/metrics?x=1").await.starts_with("HTTP/1.1 200 "));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404 "));
        let head = raw(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn bad_requests_get_errors_not_panics() {
        let (addr, stop, task) = start(Duration::from_secs(5)).await;
        let r = raw(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 405 ") && header(&r, "allow") == Some("GET, HEAD"),
            "{r}"
        );
        for garbage in [
            &b"\x00\xff\xfe garbage\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                raw(addr, garbage).await.starts_with("HTTP/1.1 400 "),
                "{garbage:?}"
            );
        }
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST_BYTES * 2));
        assert!(raw(addr, &huge).await.starts_with("HTTP/1.1 431 "));
        // Bare LF line ends are tolerated.
        assert!(
            raw(addr, b"GET /healthz HTTP/1.0\n\n")
                .await
                .starts_with("HTTP/1.1 200 ")
        );
        // A client that connects and leaves.
        drop(TcpStream::connect(addr).await.unwrap());
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200 "));
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn slow_clients_are_cut_off_and_do_not_block_others() {
        let (addr, stop, task) = start(Duration::from_millis(200)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        // Another client is served while the slow one dawdles.
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200 "));
        let mut out = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut out)).await;
        assert!(
            matches!(n, Ok(Ok(0))),
            "the slow connection is closed without a response"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop, task) = start(Duration::from_secs(1)).await;
        stop.cancel();
        task.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
