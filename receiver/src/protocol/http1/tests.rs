//! HTTP/1 framer, stitcher and golden tests (CONVENTIONS §8).

use crate::protocol::testkit::{self, capture_records, golden_text, split_at_points};
use std::collections::VecDeque;
use std::fmt::Write as _;

use super::types::*;
use super::*;
use crate::model::{Direction, Protocol, Role};
use crate::protocol::{
    Chunk, ConnParser, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher, Timed,
    UNTIL_CLOSE,
};
use crate::record::{Exchange, HttpExchange, Incomplete, Record};

use MessageKind::{Request, Response};

/// Secrets the tests put on the wire; none may reach a frame, a record or a span.
const CANARIES: &[&str] = &[
    "CANARY-BEARER",
    "CANARY-COOKIE",
    "CANARY-TOKEN",
    "CANARY-PW",
    "CANARY-BODY",
    "CANARY-TRAILER",
    "CANARY-USERINFO",
];

// ---------- wire builders ----------

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: test/1\r\n\r\n")
        .into_bytes()
}

fn req(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: example.test\r\n{headers}\r\n{body}").into_bytes()
}

fn resp(status: u16, headers: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} Whatever\r\n{headers}\r\n{body}").into_bytes()
}

fn ok(body: &str) -> Vec<u8> {
    resp(200, &format!("Content-Length: {}\r\n", body.len()), body)
}

fn chunked(chunks: &[&str], trailers: &str) -> Vec<u8> {
    let mut v = resp(200, "Transfer-Encoding: chunked\r\n", "");
    for c in chunks {
        v.extend(format!("{:x}\r\n{c}\r\n", c.len()).into_bytes());
    }
    v.extend(format!("0\r\n{trailers}\r\n").into_bytes());
    v
}

// ---------- harness ----------

/// One traced connection fed chunk by chunk: `client` writes requests when the role is
/// Client (egress), `server` bytes are responses.
struct Conn {
    parser: ConnParser,
    role: Role,
    ts: u64,
    pos: [u64; 2],
    out: Vec<Record>,
    stats: ParseStats,
}

impl Conn {
    fn new() -> Conn {
        Conn::with(Role::Client, ParserLimits::default())
    }

    fn with(role: Role, limits: ParserLimits) -> Conn {
        Conn {
            parser: ConnParser::new(Protocol::Http1, role, limits),
            role,
            ts: 1_000,
            pos: [0, 0],
            out: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], len: usize) {
        self.ts += 1_000;
        let i = usize::from(dir == Direction::Ingress);
        self.parser.on_data(
            Chunk {
                direction: dir,
                pos: self.pos[i],
                ts_ns: self.ts,
                bytes,
                len: len as u32,
                datagram: false,
                peer: None,
            },
            &mut self.out,
            &mut self.stats,
        );
        self.pos[i] += len as u64;
    }

    /// The direction requests travel in.
    fn req_dir(&self) -> Direction {
        match self.role {
            Role::Client => Direction::Egress,
            Role::Server => Direction::Ingress,
        }
    }

    fn resp_dir(&self) -> Direction {
        match self.role {
            Role::Client => Direction::Ingress,
            Role::Server => Direction::Egress,
        }
    }

    fn client(&mut self, bytes: &[u8]) {
        self.feed(self.req_dir(), bytes, bytes.len());
    }

    fn server(&mut self, bytes: &[u8]) {
        self.feed(self.resp_dir(), bytes, bytes.len());
    }

    /// Response bytes of which the kernel copied only the first `captured`.
    fn server_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(self.resp_dir(), &bytes[..captured], bytes.len());
    }

    fn client_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(self.req_dir(), &bytes[..captured], bytes.len());
    }

    /// `len` response bytes moved by sendfile/splice: reported, never copied.
    fn server_uncaptured(&mut self, len: usize) {
        self.feed(self.resp_dir(), &[], len);
    }

    /// `len` response bytes never reported at all (kernel ring full).
    fn lose_server(&mut self, len: usize) {
        let i = usize::from(self.resp_dir() == Direction::Ingress);
        self.pos[i] += len as u64;
    }

    fn close(&mut self) {
        self.parser.close(&mut self.out, &mut self.stats);
    }

    fn lines(&self) -> Vec<String> {
        self.out.iter().map(render).collect()
    }

    fn times(&self) -> Vec<(u64, u64)> {
        self.out.iter().map(|r| (r.start_ns, r.end_ns)).collect()
    }
}

fn http(r: &Record) -> &HttpExchange {
    match &r.exchange {
        Exchange::Http(h) => h,
        other => panic!("not an HTTP record: {other:?}"),
    }
}

/// One record as a golden line.
fn render(r: &Record) -> String {
    let h = http(r);
    let mut s = String::from(h.method);
    if let Some(o) = &h.method_original {
        let _ = write!(s, "({o})");
    }
    let _ = write!(s, " {}", h.path.as_deref().unwrap_or("-"));
    if let Some(q) = &h.query {
        let _ = write!(s, "?{q}");
    }
    let _ = write!(
        s,
        " -> {}",
        h.status_code.map_or("-".to_string(), |c| c.to_string())
    );
    if let Some(host) = &h.server_address {
        let _ = write!(s, " host={host}");
        if let Some(p) = h.server_port {
            let _ = write!(s, ":{p}");
        }
    }
    if let Some(ua) = &h.user_agent {
        let _ = write!(s, " ua={ua:?}");
    }
    if let Some(v) = h.protocol_version {
        let _ = write!(s, " v={v}");
    }
    if let Some(n) = h.request_body_size {
        let _ = write!(s, " req_body={n}");
    }
    if let Some(n) = h.response_body_size {
        let _ = write!(s, " resp_body={n}");
    }
    if let Some(i) = r.incomplete {
        let _ = write!(s, " incomplete={}", i.as_str());
    }
    s
}

fn framer() -> Http1Framer {
    Http1Framer::default()
}

/// Parses `bytes` to the end with one framing state: every outcome in order. Stops at the
/// first `Incomplete` or `Invalid` (included).
fn parse_all(
    kind: MessageKind,
    bytes: &[u8],
    state: &mut Http1FramingState,
) -> Vec<Parse<Http1Frame>> {
    let f = framer();
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let r = f.parse(kind, &bytes[at..], state);
        match &r {
            Parse::Frame { len, .. } | Parse::Skip { len } => {
                at = at.saturating_add(*len);
                out.push(r);
            }
            Parse::Incomplete | Parse::Invalid => {
                out.push(r);
                break;
            }
        }
    }
    out
}

fn request_frame(
    method: Http1Method,
    path: Option<&str>,
    query: Option<&str>,
    host: Option<&str>,
    port: Option<u16>,
    body: Http1Body,
) -> Http1Frame {
    Http1Frame::Request(Http1Request {
        method,
        path: path.map(Into::into),
        query: query.map(Into::into),
        host: host.map(Into::into),
        port,
        user_agent: None,
        minor: 1,
        body,
        after_gap: false,
    })
}

fn response_frame(status: u16, body: Http1Body) -> Http1Frame {
    Http1Frame::Response(Http1Response {
        status,
        minor: 1,
        body,
        after_gap: false,
    })
}

// ---------- (a) bytes → frames ----------

#[test]
fn request_frame_table() {
    use Http1Body::{Chunked, Length, None as NoBody};
    let known = Http1Method::Known;
    let cases: Vec<(Vec<u8>, Http1Frame, usize)> = vec![
        (
            req("GET", "/a/b?x=1&page=2", "", ""),
            request_frame(known("GET"), Some("/a/b"), Some("x=1&page=2"), Some("example.test"), None, NoBody),
            0,
        ),
        (
            req("POST", "/api/echo", "Content-Length: 11\r\n", "CANARY-BODY"),
            request_frame(known("POST"), Some("/api/echo"), None, Some("example.test"), None, Length(11)),
            0,
        ),
        (
            req("PUT", "/x", "Content-Length: 3, 3\r\n", "abc"),
            request_frame(known("PUT"), Some("/x"), None, Some("example.test"), None, Length(3)),
            0,
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: h:81\r\n\r\n".to_vec(),
            request_frame(known("OPTIONS"), Some("*"), None, Some("h"), Some(81), NoBody),
            0,
        ),
        (
            b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n".to_vec(),
            request_frame(known("CONNECT"), None, None, Some("db.internal"), Some(5432), NoBody),
            0,
        ),
        (
            b"GET http://CANARY-USERINFO:pw@proxy.test:3128/p?q=1#frag HTTP/1.1\r\nHost: other\r\n\r\n"
                .to_vec(),
            request_frame(known("GET"), Some("/p"), Some("q=1"), Some("proxy.test"), Some(3128), NoBody),
            0,
        ),
        (
            b"GET http://bare.test HTTP/1.1\r\n\r\n".to_vec(),
            request_frame(known("GET"), Some("/"), None, Some("bare.test"), None, NoBody),
            0,
        ),
        (
            b"PURGE /cache HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n".to_vec(),
            request_frame(
                Http1Method::Other(Some("PURGE".into())),
                Some("/cache"),
                None,
                Some("[::1]"),
                Some(8080),
                NoBody,
            ),
            0,
        ),
        (
            // Bare LF line ends (RFC 9112 §2.2) and a chunked request body with a trailer.
            b"PATCH /doc HTTP/1.1\nHost: example.test\nTransfer-Encoding: gzip, chunked\n\n".to_vec(),
            request_frame(known("PATCH"), Some("/doc"), None, Some("example.test"), None, Chunked),
            0,
        ),
        (
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3 rule 3).
            req("POST", "/te", "Content-Length: 99\r\nTransfer-Encoding: chunked\r\n", ""),
            request_frame(known("POST"), Some("/te"), None, Some("example.test"), None, Chunked),
            0,
        ),
    ];
    for (bytes, want, _) in cases {
        let mut st = Http1FramingState::default();
        match framer().parse(Request, &bytes, &mut st) {
            Parse::Frame { frame, len } => {
                assert_eq!(frame, want, "{}", String::from_utf8_lossy(&bytes));
                assert_eq!(
                    len,
                    bytes.len(),
                    "full consumption of {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            other => panic!("{:?} → {other:?}", String::from_utf8_lossy(&bytes)),
        }
    }
}

#[test]
fn response_frame_table() {
    use Http1Body::{Chunked, Length, None as NoBody, UntilClose};
    // (request method queued first, response bytes, frame, frame length).
    let cases: Vec<(&str, Vec<u8>, Http1Frame, usize)> = vec![
        ("GET", ok("hello"), response_frame(200, Length(5)), 0),
        (
            "GET",
            resp(404, "Content-Length: 0\r\n", ""),
            response_frame(404, Length(0)),
            0,
        ),
        (
            "HEAD",
            resp(200, "Content-Length: 1048576\r\n", ""),
            response_frame(200, NoBody),
            0,
        ),
        (
            "GET",
            resp(204, "Content-Length: 7\r\n", ""),
            response_frame(204, NoBody),
            0,
        ),
        (
            "GET",
            resp(304, "ETag: \"x\"\r\n", ""),
            response_frame(304, NoBody),
            0,
        ),
        (
            "GET",
            resp(200, "Transfer-Encoding: chunked\r\n", ""),
            response_frame(200, Chunked),
            0,
        ),
        (
            "GET",
            b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n".to_vec(),
            Http1Frame::Response(Http1Response {
                status: 200,
                minor: 0,
                body: UntilClose,
                after_gap: false,
            }),
            UNTIL_CLOSE,
        ),
        (
            "GET",
            resp(200, "Transfer-Encoding: gzip\r\n", ""),
            response_frame(200, UntilClose),
            UNTIL_CLOSE,
        ),
        (
            "GET",
            b"HTTP/1.1 500\r\nContent-Length: 2\r\n\r\nno".to_vec(),
            response_frame(500, Length(2)),
            0,
        ),
    ];
    for (method, bytes, want, len_want) in cases {
        let mut st = Http1FramingState::default();
        let _ = framer().parse(Request, &req(method, "/", "", ""), &mut st);
        match framer().parse(Response, &bytes, &mut st) {
            Parse::Frame { frame, len } => {
                assert_eq!(frame, want, "{}", String::from_utf8_lossy(&bytes));
                let len_want = if len_want == 0 { bytes.len() } else { len_want };
                assert_eq!(
                    len,
                    len_want,
                    "consumption of {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            other => panic!("{:?} → {other:?}", String::from_utf8_lossy(&bytes)),
        }
        assert!(st.methods.is_empty(), "the final response took the method");
    }
}

#[test]
fn chunked_body_is_skipped_chunk_by_chunk_and_ends_in_a_frame() {
    let mut st = Http1FramingState::default();
    let _ = framer().parse(Request, &get("/c"), &mut st);
    let bytes = chunked(&["CANARY-BODY-1", "xyz"], "X-Trailer: CANARY-TRAILER\r\n");
    let got = parse_all(Response, &bytes, &mut st);
    let head_len = resp(200, "Transfer-Encoding: chunked\r\n", "").len();
    assert_eq!(
        got,
        vec![
            Parse::Frame {
                frame: response_frame(200, Http1Body::Chunked),
                len: head_len
            },
            Parse::Skip { len: 3 + 13 + 2 },
            Parse::Skip { len: 3 + 3 + 2 },
            Parse::Frame {
                frame: Http1Frame::BodyEnd { size: 16 },
                len: 3 + 27 + 2
            },
        ]
    );
    assert_eq!(st.response.body, BodyState::Head);
    // Chunk extensions and upper-case hex; a chunk far larger than the buffer is one skip.
    let mut st = Http1FramingState {
        response: DirectionState {
            body: BodyState::Chunked { total: 0 },
            ..DirectionState::default()
        },
        ..Http1FramingState::default()
    };
    assert_eq!(
        framer().parse(Response, b"1F4;name=\"v\"\r\nab", &mut st),
        Parse::Skip { len: 14 + 500 + 2 }
    );
    assert_eq!(
        framer().parse(Response, b"0000000000000000FFFFFFFFF\r\n", &mut st),
        Parse::Skip {
            len: 27 + 0xF_FFFF_FFFF + 2
        }
    );
    assert_eq!(
        framer().parse(Response, b"0\r\n\r\n", &mut st),
        Parse::Frame {
            frame: Http1Frame::BodyEnd {
                size: 500 + 0xF_FFFF_FFFF
            },
            len: 5
        }
    );
}

#[test]
fn interim_responses_keep_the_method_queued() {
    let mut st = Http1FramingState::default();
    let _ = framer().parse(
        Request,
        &req("HEAD", "/h", "Expect: 100-continue\r\n", ""),
        &mut st,
    );
    let got = parse_all(
        Response,
        &[
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n".to_vec(),
            resp(200, "Content-Length: 999\r\n", ""),
        ]
        .concat(),
        &mut st,
    );
    let kinds: Vec<Option<(u16, Http1Body)>> = got
        .iter()
        .map(|p| match p {
            Parse::Frame {
                frame: Http1Frame::Response(r),
                ..
            } => Some((r.status, r.body)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            Some((100, Http1Body::None)),
            Some((103, Http1Body::None)),
            Some((200, Http1Body::None)), // HEAD: no body despite Content-Length
        ]
    );
}

#[test]
fn a_response_without_a_seen_request_followed_by_another_has_no_body() {
    // Attached after a HEAD was sent: its response says Content-Length but the next response
    // follows at once.
    let mut st = Http1FramingState::default();
    let head = resp(200, "Content-Length: 5000\r\n", "");
    let bytes = [head.clone(), ok("x")].concat();
    assert!(matches!(
        framer().parse(Response, &bytes, &mut st),
        Parse::Frame { len, .. } if len == head.len()
    ));
    // Alone, the length is believed (the body arrives in later reads).
    let mut st = Http1FramingState::default();
    assert!(matches!(
        framer().parse(Response, &head, &mut st),
        Parse::Frame { len, .. } if len == head.len() + 5000
    ));
}

#[test]
fn pipelined_methods_frame_their_responses_in_order() {
    let mut st = Http1FramingState::default();
    let reqs = [get("/a"), req("HEAD", "/b", "", ""), get("/c"), get("/d")].concat();
    let got = parse_all(Request, &reqs, &mut st);
    assert_eq!(got.len(), 4);
    assert_eq!(st.methods.len(), 4);
    let resps = [
        ok("aa"),
        resp(200, "Content-Length: 5\r\n", ""),
        ok("ccc"),
        ok("d"),
    ]
    .concat();
    let got = parse_all(Response, &resps, &mut st);
    let total: usize = got
        .iter()
        .map(|p| match p {
            Parse::Frame { len, .. } => *len,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(
        total,
        resps.len(),
        "the HEAD response had no body, the others theirs"
    );
    assert!(st.methods.is_empty());
}

#[test]
fn upgrade_and_connect_turn_the_connection_into_a_tunnel() {
    let mut st = Http1FramingState::default();
    let _ = framer().parse(
        Request,
        &req(
            "GET",
            "/ws",
            "Upgrade: websocket\r\nConnection: Upgrade\r\n",
            "",
        ),
        &mut st,
    );
    let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    assert!(matches!(
        framer().parse(Response, r, &mut st),
        Parse::Frame { frame: Http1Frame::Response(Http1Response { status: 101, .. }), len } if len == r.len()
    ));
    assert_eq!(
        framer().parse(Request, b"\x81\x85garbage", &mut st),
        Parse::Skip { len: UNTIL_CLOSE }
    );
    assert_eq!(
        framer().parse(Response, b"\x81\x05hello", &mut st),
        Parse::Skip { len: UNTIL_CLOSE }
    );

    let mut st = Http1FramingState::default();
    let _ = framer().parse(Request, b"CONNECT h:443 HTTP/1.1\r\n\r\n", &mut st);
    assert!(matches!(
        framer().parse(
            Response,
            b"HTTP/1.1 200 Connection Established\r\n\r\n",
            &mut st
        ),
        Parse::Frame {
            frame: Http1Frame::Response(Http1Response {
                body: Http1Body::None,
                ..
            }),
            ..
        }
    ));
    assert!(st.tunnel);
    // A refused CONNECT is an ordinary response.
    let mut st = Http1FramingState::default();
    let _ = framer().parse(Request, b"CONNECT h:443 HTTP/1.1\r\n\r\n", &mut st);
    let _ = framer().parse(Response, &resp(407, "Content-Length: 2\r\n", "no"), &mut st);
    assert!(!st.tunnel);
}

#[test]
fn query_values_of_sensitive_keys_are_redacted_before_they_are_stored() {
    let cases = [
        ("page=2&token=CANARY-TOKEN", "page=2&token=REDACTED"),
        ("Access_Token=CANARY-TOKEN&x", "Access_Token=REDACTED&x"),
        ("%74oken=CANARY-TOKEN", "%74oken=REDACTED"),
        (
            "user=ann&PassWord=CANARY-PW&sig=abc&X-Amz-Signature=s&api_key=k&sessionid=1",
            "user=ann&PassWord=REDACTED&sig=REDACTED&X-Amz-Signature=REDACTED&api_key=REDACTED&sessionid=REDACTED",
        ),
        ("a=1&&b=&=c", "a=1&&b=&=c"),
        (
            "auth_code=1&credentials=2&client_secret=3&jwt=4&passwd=5",
            "auth_code=REDACTED&credentials=REDACTED&client_secret=REDACTED&jwt=REDACTED&passwd=REDACTED",
        ),
    ];
    for (q, want) in cases {
        assert_eq!(redact_query(q.as_bytes(), 512), want, "{q}");
    }
    // The cap falls on a parameter boundary; a redacted value never comes back by cutting.
    assert_eq!(redact_query(b"a=1&b=2&c=3", 7), "a=1&b=2");
    assert_eq!(redact_query(b"token=CANARY-TOKEN", 10), "token=REDA");
    let long = format!("q={}", "x".repeat(2000));
    assert_eq!(redact_query(long.as_bytes(), 100).len(), 100);
}

#[test]
fn heads_frame_whatever_the_alignment_of_their_line_ends() {
    // Line ends at every offset modulo the 8-byte words the framer scans.
    for pad in 0..24 {
        let name = "a".repeat(pad);
        let bytes = req(
            "GET",
            &format!("/{name}"),
            &format!("X-{name}: {name}\r\n"),
            "",
        );
        let mut st = Http1FramingState::default();
        match framer().parse(Request, &bytes, &mut st) {
            Parse::Frame { len, .. } => assert_eq!(len, bytes.len(), "pad {pad}"),
            other => panic!("pad {pad}: {other:?}"),
        }
        for n in 0..bytes.len() {
            assert_eq!(
                framer().parse(Request, &bytes[..n], &mut Http1FramingState::default()),
                Parse::Incomplete,
                "pad {pad}, prefix {n}"
            );
        }
    }
}

#[test]
fn a_long_head_fed_a_byte_at_a_time_is_framed_once_whole() {
    // Scanning resumes where the previous read stopped; the fields are still all read.
    let pad: String = (0..300)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "v".repeat(40)))
        .collect();
    let mut c = Conn::with(Role::Server, ParserLimits::default());
    let request = req(
        "PUT",
        "/slow",
        &format!("{pad}Content-Length: 3\r\n"),
        "abc",
    );
    for b in &request {
        c.client(std::slice::from_ref(b));
    }
    c.server(&ok("done"));
    assert_eq!(
        c.lines(),
        vec!["PUT /slow -> 200 host=example.test v=1.1 req_body=3 resp_body=4"]
    );
    // A bad line in the middle is caught when it completes, not at the cap.
    let mut c = Conn::new();
    let some: String = pad.split_inclusive("\r\n").take(40).collect();
    let bad = format!("GET / HTTP/1.1\r\n{some}not a field\r\n");
    for b in bad.as_bytes() {
        c.client(std::slice::from_ref(b));
    }
    assert_eq!(c.stats.invalid, 1);
}

#[test]
fn strings_are_capped() {
    let path = format!("/{}", "p".repeat(5000));
    let bytes = req(
        "GET",
        &path,
        &format!("User-Agent: {}\r\n", "u".repeat(5000)),
        "",
    );
    let mut st = Http1FramingState::default();
    let Parse::Frame {
        frame: Http1Frame::Request(r),
        ..
    } = framer().parse(Request, &bytes, &mut st)
    else {
        panic!("not framed");
    };
    assert_eq!(r.path.map(|p| p.len()), Some(HTTP_MAX_PATH_BYTES));
    assert_eq!(
        r.user_agent.map(|p| p.len()),
        Some(HTTP_MAX_USER_AGENT_BYTES)
    );
}

/// Regression (R2 hostile bytes, seed `http_strings_grow_past_caps`): invalid UTF-8 becomes
/// U+FFFD, three bytes per bad byte, so a path capped at 512 bytes was exported as 1534.
#[test]
fn strings_of_invalid_utf8_stay_within_their_caps() {
    let head = [
        &b"GET /"[..],
        &[0xff; 600],
        b"?a=",
        &[0xfe; 600],
        b" HTTP/1.1\r\nHost: a\r\nUser-Agent: ",
        &[0xc3; 300],
        b"\r\n\r\n",
    ]
    .concat();
    let mut st = Http1FramingState::default();
    let Parse::Frame {
        frame: Http1Frame::Request(r),
        ..
    } = framer().parse(Request, &head, &mut st)
    else {
        panic!("not framed");
    };
    let path = r.path.unwrap();
    assert!(
        path.len() <= HTTP_MAX_PATH_BYTES && path.len() > 500,
        "{}",
        path.len()
    );
    assert!(r.query.unwrap().len() <= HTTP_MAX_QUERY_BYTES);
    assert!(r.user_agent.unwrap().len() <= HTTP_MAX_USER_AGENT_BYTES);
    // Short secret values each grow to `REDACTED`: still within the cap.
    let q = redact_query("token=a&".repeat(100).as_bytes(), HTTP_MAX_QUERY_BYTES);
    assert!(q.len() <= HTTP_MAX_QUERY_BYTES && q.starts_with("token=REDACTED&"));
}

// ---------- (b) prefixes, garbage, resync ----------

#[test]
fn every_prefix_is_incomplete() {
    let msgs: Vec<(MessageKind, Vec<u8>)> = vec![
        (Request, get("/static/a.txt?x=1")),
        (
            Request,
            req(
                "POST",
                "/up",
                "Content-Length: 5\r\nAuthorization: Bearer CANARY-BEARER\r\n",
                "12345",
            ),
        ),
        (Request, b"GET / HTTP/1.0\n\n".to_vec()),
        (Response, ok("body")),
        (Response, resp(204, "", "")),
        (
            Response,
            b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (Response, chunked(&["ab", "cd"], "T: v\r\n")),
    ];
    for (kind, bytes) in msgs {
        let mut whole_state = Http1FramingState::default();
        let whole = parse_all(kind, &bytes, &mut whole_state);
        assert!(
            whole
                .iter()
                .all(|p| matches!(p, Parse::Frame { .. } | Parse::Skip { .. })),
            "{whole:?}"
        );
        for n in 0..bytes.len() {
            let mut st = Http1FramingState::default();
            let got = parse_all(kind, &bytes[..n], &mut st);
            let Some(last) = got.last() else {
                continue; // n == 0
            };
            // Frames cut early are allowed once the head is in (a body is never needed): they
            // must then be the frames of the whole message.
            for (i, p) in got.iter().enumerate() {
                match p {
                    Parse::Incomplete => assert_eq!(i, got.len() - 1),
                    Parse::Invalid => panic!(
                        "{kind:?} prefix {n} of {:?}: Invalid",
                        String::from_utf8_lossy(&bytes)
                    ),
                    other => assert_eq!(Some(other), whole.get(i), "prefix {n}"),
                }
            }
            let _ = last;
        }
    }
}

#[test]
fn garbage_is_invalid() {
    let requests: &[&[u8]] = &[
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",             // HTTP/2 preface
        b"GET /x HTTP/2\r\n\r\n",
        b"GET  /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nBad Header: v\r\n\r\n",
        b"GET /x HTTP/1.1\r\n folded-first: v\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f", // PostgreSQL SSLRequest
        b"*1\r\n$4\r\nPING\r\n",             // Redis
    ];
    for g in requests {
        assert_eq!(
            framer().parse(Request, g, &mut Http1FramingState::default()),
            Parse::Invalid,
            "{:?}",
            String::from_utf8_lossy(g)
        );
    }
    let responses: &[&[u8]] = &[
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        b"+OK\r\n",
    ];
    for g in responses {
        assert_eq!(
            framer().parse(Response, g, &mut Http1FramingState::default()),
            Parse::Invalid,
            "{:?}",
            String::from_utf8_lossy(g)
        );
    }
    // A bad chunk-size line.
    let mut st = Http1FramingState {
        response: DirectionState {
            body: BodyState::Chunked { total: 0 },
            ..DirectionState::default()
        },
        ..Http1FramingState::default()
    };
    assert_eq!(framer().parse(Response, b"zz\r\n", &mut st), Parse::Invalid);
    assert_eq!(
        framer().parse(Response, b"10000000000000000\r\n", &mut st),
        Parse::Invalid
    );
    // A head that never ends is given up at the cap, not buffered forever.
    let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
    while endless.len() < HTTP_MAX_HEAD_BYTES + 10 {
        endless.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(
        framer().parse(Request, &endless, &mut Http1FramingState::default()),
        Parse::Invalid
    );
}

#[test]
fn resync_after_garbage_lands_on_the_next_frame() {
    let f = framer();
    let st = Http1FramingState::default();
    let mut buf = b"\x01\x02garbage GET! HTTP/1.1 nope\r\n".to_vec();
    let at = buf.len();
    buf.extend(get("/next"));
    assert_eq!(f.find_boundary(Request, &buf, 1, &st), Some(at));
    let mut buf = b"tail of a body HTTP/1.1 2".to_vec();
    let at = buf.len();
    buf.extend(ok("x"));
    assert_eq!(f.find_boundary(Response, &buf, 1, &st), Some(at));
    // A method cut by the end of the buffer is kept for the next read.
    assert_eq!(f.find_boundary(Request, b"xxxxPO", 0, &st), Some(4));
    assert_eq!(f.find_boundary(Response, b"xxxxHTTP/1", 0, &st), Some(4));
    assert_eq!(f.find_boundary(Request, b"xxxxyyyy", 0, &st), None);

    // Through the pipeline: garbage, then a request. The garbage may have been a lost
    // request whose answer comes first, so the request after it is not paired (counted); the
    // next request, sent after that answer, is.
    let mut c = Conn::new();
    c.client(&[b"\xffjunk\r\n".to_vec(), get("/after")].concat());
    c.server(&ok("fine"));
    assert_eq!(c.lines(), Vec::<String>::new());
    assert_eq!(
        (c.stats.unmatched_requests, c.stats.unmatched_responses),
        (1, 1)
    );
    c.client(&get("/again"));
    c.server(&ok("fine"));
    assert_eq!(
        c.lines(),
        vec!["GET /again -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 resp_body=4"]
    );
    assert_eq!(c.stats.invalid, 1);
    assert_eq!(c.stats.bytes_lost, 7);
}

#[test]
fn a_request_whose_head_was_lost_never_lends_its_answer_to_the_next_one() {
    // The server side of a pipelining client (the saturation test's failure): a read ends
    // with the head of request B cut off (capture truncated); the next read starts with B's
    // tail, then C. nginx answers B (404), then C (200), both after C arrived. Pairing C with
    // B's answer would be a wrong span; nothing is paired until the client waits again.
    let mut c = Conn::with(Role::Server, ParserLimits::default());
    let a = get("/a");
    let b = get("/missing-b");
    let cc = get("/c");
    let first = [a.clone(), b[..10].to_vec()].concat();
    c.client_truncated(&[first.clone(), vec![b'?'; 4]].concat(), first.len() - 10);
    c.client(&[b[10..].to_vec(), cc.clone()].concat());
    c.server(&ok("a"));
    c.server(&resp(404, "Content-Length: 4\r\n", "nope"));
    c.server(&ok("c"));
    let lines = c.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("GET /a -> 200"), "{lines:?}");
    // The client waits for its answers, then sends D: paired again.
    c.client(&get("/d"));
    c.server(&ok("d"));
    let lines = c.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("GET /d -> 200"), "{lines:?}");
}

#[test]
fn a_gap_inside_a_chunked_body_resyncs_and_marks_the_exchange_incomplete() {
    let mut c = Conn::new();
    c.client(&get("/stream"));
    let head = resp(200, "Transfer-Encoding: chunked\r\n", "");
    c.server(&head);
    c.server(b"5\r\nhello\r\n");
    // A chunk-size line is lost (ring full), then the body goes on and ends.
    c.lose_server(40);
    c.server(b"ld\r\n0\r\n\r\n");
    assert!(c.out.is_empty(), "the end of the body cannot be known");
    c.client(&get("/next"));
    c.server(&ok("n"));
    assert_eq!(
        c.lines(),
        vec![
            "GET /stream -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 incomplete=response_end_lost",
            "GET /next -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 resp_body=1",
        ]
    );
    assert!(c.stats.resyncs >= 1);
}

// ---------- (c) stitcher fed frames ----------

fn timed(start: u64, end: u64, frame: Http1Frame) -> Timed<Http1Frame> {
    Timed::new(start, end, frame)
}

fn req_frame(path: &str) -> Http1Frame {
    request_frame(
        Http1Method::Known("GET"),
        Some(path),
        None,
        None,
        None,
        Http1Body::None,
    )
}

fn resp_after_gap(status: u16) -> Http1Frame {
    Http1Frame::Response(Http1Response {
        status,
        minor: 1,
        body: Http1Body::Length(1),
        after_gap: true,
    })
}

struct Stitched {
    lines: Vec<(String, u64, u64)>,
    stats: ParseStats,
    reqs: VecDeque<Timed<Http1Frame>>,
    resps: VecDeque<Timed<Http1Frame>>,
}

fn stitch_frames(reqs: Vec<Timed<Http1Frame>>, resps: Vec<Timed<Http1Frame>>) -> Stitched {
    let mut s = <Http1Stitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs: VecDeque<_> = reqs.into_iter().collect();
    let mut resps: VecDeque<_> = resps.into_iter().collect();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    Stitched {
        lines: out
            .iter()
            .map(|r| (render(r), r.start_ns, r.end_ns))
            .collect(),
        stats,
        reqs,
        resps,
    }
}

#[test]
fn stitcher_pairs_pipelined_requests_in_order() {
    let s = stitch_frames(
        vec![
            timed(10, 10, req_frame("/a")),
            timed(11, 11, req_frame("/b")),
            timed(12, 12, req_frame("/c")),
        ],
        vec![
            timed(20, 21, response_frame(200, Http1Body::Length(1))),
            timed(22, 23, response_frame(404, Http1Body::None)),
            timed(24, 25, response_frame(500, Http1Body::Length(2))),
        ],
    );
    assert_eq!(
        s.lines,
        vec![
            ("GET /a -> 200 v=1.1 resp_body=1".into(), 10, 21),
            ("GET /b -> 404 v=1.1".into(), 11, 23),
            ("GET /c -> 500 v=1.1 resp_body=2".into(), 12, 25),
        ]
    );
    assert_eq!(s.stats.unmatched_requests + s.stats.unmatched_responses, 0);
}

#[test]
fn stitcher_a_missing_response_is_never_paired_by_guess() {
    // /a's response was lost in a gap; the response after the gap could answer /a or /b.
    let s = stitch_frames(
        vec![
            timed(10, 10, req_frame("/a")),
            timed(30, 30, req_frame("/b")),
        ],
        vec![timed(35, 36, resp_after_gap(200))],
    );
    assert!(s.lines.is_empty(), "{:?}", s.lines);
    assert!(s.reqs.is_empty() && s.resps.is_empty());
    assert_eq!(s.stats.unmatched_requests, 2);
    assert_eq!(s.stats.unmatched_responses, 1);
    // With one candidate the response is its own.
    let s = stitch_frames(
        vec![timed(30, 30, req_frame("/b"))],
        vec![timed(35, 36, resp_after_gap(200))],
    );
    assert_eq!(
        s.lines,
        vec![("GET /b -> 200 v=1.1 resp_body=1".into(), 30, 36)]
    );
    // And a request that never gets an answer is given up at the deadline, with no record.
    let mut st = <Http1Stitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs: VecDeque<_> = vec![timed(10, 10, req_frame("/lost"))]
        .into_iter()
        .collect();
    let mut resps = VecDeque::new();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    st.expire(&mut reqs, &mut resps, 5, &mut out, &mut stats);
    assert_eq!(reqs.len(), 1, "not yet");
    st.expire(&mut reqs, &mut resps, 11, &mut out, &mut stats);
    assert!(reqs.is_empty() && out.is_empty());
    assert_eq!(stats.unmatched_requests, 1);
}

#[test]
fn stitcher_a_response_before_its_request_is_unmatched() {
    let s = stitch_frames(
        vec![timed(50, 50, req_frame("/x"))],
        vec![
            timed(20, 21, response_frame(200, Http1Body::None)),
            timed(60, 61, response_frame(201, Http1Body::None)),
        ],
    );
    assert_eq!(s.lines, vec![("GET /x -> 201 v=1.1".into(), 50, 61)]);
    assert_eq!(s.stats.unmatched_responses, 1);
}

#[test]
fn stitcher_an_early_response_waits_for_its_upload() {
    // The response was framed first: the request's body is still arriving.
    let s = stitch_frames(
        vec![],
        vec![timed(20, 21, response_frame(413, Http1Body::None))],
    );
    assert!(s.lines.is_empty());
    assert_eq!(s.resps.len(), 1, "kept for the request");
    let mut st = <Http1Stitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs: VecDeque<_> = vec![timed(
        10,
        90,
        request_frame(
            Http1Method::Known("POST"),
            Some("/up"),
            None,
            None,
            None,
            Http1Body::Length(1 << 20),
        ),
    )]
    .into_iter()
    .collect();
    let mut resps = s.resps;
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    st.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert_eq!(
        out.iter().map(render).collect::<Vec<_>>(),
        vec!["POST /up -> 413 v=1.1 req_body=1048576"]
    );
    assert_eq!((out[0].start_ns, out[0].end_ns), (10, 21));
}

#[test]
fn stitcher_skips_interim_responses_and_waits_for_chunked_ends() {
    let chunked_req = request_frame(
        Http1Method::Known("POST"),
        Some("/c"),
        None,
        None,
        None,
        Http1Body::Chunked,
    );
    let mut s = <Http1Stitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs: VecDeque<_> = vec![
        timed(10, 10, chunked_req),
        timed(12, 12, Http1Frame::BodyEnd { size: 42 }),
        timed(13, 13, req_frame("/next")),
    ]
    .into_iter()
    .collect();
    let mut resps: VecDeque<_> = vec![
        timed(11, 11, response_frame(100, Http1Body::None)),
        timed(20, 20, response_frame(200, Http1Body::Chunked)),
    ]
    .into_iter()
    .collect();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert!(out.is_empty(), "the chunked body has not ended");
    // Not expired while the response streams.
    s.expire(&mut reqs, &mut resps, 1_000, &mut out, &mut stats);
    assert!(out.is_empty());
    assert_eq!(stats.unmatched_requests, 0);
    resps.push_back(timed(40, 41, Http1Frame::BodyEnd { size: 7 }));
    resps.push_back(timed(50, 51, response_frame(204, Http1Body::None)));
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert_eq!(
        out.iter()
            .map(|r| (render(r), r.start_ns, r.end_ns))
            .collect::<Vec<_>>(),
        vec![
            (
                "POST /c -> 200 v=1.1 req_body=42 resp_body=7".into(),
                10,
                41
            ),
            ("GET /next -> 204 v=1.1".into(), 13, 51),
        ]
    );
    assert_eq!(stats.unmatched_requests + stats.unmatched_responses, 0);
}

#[test]
fn stitcher_close_inside_a_chunked_body_is_incomplete() {
    let mut s = <Http1Stitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs: VecDeque<_> = vec![timed(10, 10, req_frame("/sse"))].into_iter().collect();
    let mut resps: VecDeque<_> = vec![timed(20, 21, response_frame(200, Http1Body::Chunked))]
        .into_iter()
        .collect();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    s.expire(&mut reqs, &mut resps, u64::MAX, &mut out, &mut stats);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].incomplete, Some(Incomplete::ConnectionClosed));
    assert_eq!((out[0].start_ns, out[0].end_ns), (10, 21));
}

// ---------- through the pipeline: times and bodies ----------

#[test]
fn keep_alive_exchanges_with_exact_times() {
    let mut c = Conn::new();
    c.client(&get("/one"));
    let t1 = c.ts;
    c.server(&ok("first"));
    let e1 = c.ts;
    c.client(&get("/two"));
    let t2 = c.ts;
    let r = ok("second response body");
    c.server(&r[..10]);
    c.server(&r[10..30]);
    c.server(&r[30..]);
    let e2 = c.ts;
    assert_eq!(c.times(), vec![(t1, e1), (t2, e2)]);
    assert_eq!(c.stats.invalid + c.stats.bytes_lost, 0);
}

#[test]
fn sendfile_body_ends_at_its_true_last_byte() {
    // nginx: the head by writev, then the 64 MiB body by sendfile in pieces over 30 s.
    let mut c = Conn::new();
    c.client(&get("/static/huge.bin"));
    let start = c.ts;
    let size: usize = 64 << 20;
    c.server(&resp(
        200,
        &format!("Content-Length: {size}\r\nContent-Type: application/octet-stream\r\n"),
        "",
    ));
    let mut sent = 0;
    while sent < size {
        let n = (size - sent).min(3 << 20);
        c.ts += 1_000_000_000;
        c.server_uncaptured(n);
        sent += n;
        // A sweep in the middle gives up nothing: the response is arriving.
        c.parser.expire(c.ts, &mut c.out, &mut c.stats);
    }
    let end = c.ts;
    assert_eq!(c.times(), vec![(start, end)]);
    assert!(end - start > 20_000_000_000);
    assert_eq!(
        c.lines(),
        vec![format!(
            "GET /static/huge.bin -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 resp_body={size}"
        )]
    );
    assert_eq!(c.stats.bytes_lost + c.stats.unmatched_requests, 0);
    // The connection goes on.
    c.client(&get("/after"));
    c.server(&ok("a"));
    assert_eq!(c.out.len(), 2);
}

#[test]
fn bodies_larger_than_the_capture_and_the_buffer_are_followed_by_length() {
    let mut c = Conn::with(Role::Server, ParserLimits::default());
    // A 1 MiB upload in reads of 64 KiB of which 16 KiB are captured each.
    let body = vec![b'u'; 1 << 20];
    let head = req(
        "PUT",
        "/big",
        &format!(
            "Content-Length: {}\r\nCookie: CANARY-COOKIE\r\n",
            body.len()
        ),
        "",
    );
    let whole = [head, body].concat();
    for piece in whole.chunks(64 << 10) {
        c.client_truncated(piece, piece.len().min(16 << 10));
    }
    let t_last_req = c.ts;
    let r = ok("stored");
    c.server_truncated(&r, r.len());
    assert_eq!(
        c.lines(),
        vec!["PUT /big -> 200 host=example.test v=1.1 req_body=1048576 resp_body=6"]
    );
    assert!(c.out[0].start_ns < t_last_req);
    assert_eq!(c.stats.bytes_lost, 0);
    assert!(c.parser.buffered_bytes() < 1024);
}

#[test]
fn head_204_304_and_100_continue() {
    let mut c = Conn::new();
    c.client(&req("HEAD", "/big", "", ""));
    c.server(&resp(200, "Content-Length: 8388608\r\n", ""));
    c.client(&get("/nothing"));
    c.server(&resp(204, "", ""));
    c.client(&req(
        "GET",
        "/cached",
        "If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n",
        "",
    ));
    c.server(&resp(304, "ETag: \"e\"\r\n", ""));
    // Expect: 100-continue: head, interim response, body, final response.
    c.client(&req(
        "POST",
        "/up",
        "Content-Length: 5\r\nExpect: 100-continue\r\n",
        "",
    ));
    let t_head = c.ts;
    c.server(b"HTTP/1.1 100 Continue\r\n\r\n");
    c.client(b"12345");
    c.server(&ok("12345"));
    let t_end = c.ts;
    assert_eq!(
        c.lines(),
        vec![
            "HEAD /big -> 200 host=example.test v=1.1",
            "GET /nothing -> 204 host=example.test:8080 ua=\"test/1\" v=1.1",
            "GET /cached -> 304 host=example.test v=1.1",
            "POST /up -> 200 host=example.test v=1.1 req_body=5 resp_body=5",
        ]
    );
    assert_eq!((c.out[3].start_ns, c.out[3].end_ns), (t_head, t_end));
    assert_eq!(
        c.stats.unmatched_responses + c.stats.unmatched_requests + c.stats.invalid,
        0
    );
}

#[test]
fn chunked_response_ends_at_the_last_chunk_and_sums_its_size() {
    let mut c = Conn::new();
    c.client(&get("/api/chunked"));
    let start = c.ts;
    let r = chunked(
        &["aaaa", "bbbbbbbbbb", "c"],
        "X-Checksum: CANARY-TRAILER\r\n",
    );
    // One read per byte: the worst spread.
    for b in &r {
        c.server(std::slice::from_ref(b));
    }
    let end = c.ts;
    assert_eq!(
        c.lines(),
        vec!["GET /api/chunked -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 resp_body=15"]
    );
    assert_eq!(c.times(), vec![(start, end)]);
}

#[test]
fn a_chunked_body_larger_than_the_capture_is_skipped() {
    let mut c = Conn::new();
    c.client(&get("/big-chunks"));
    let data = "z".repeat(100_000);
    let r = chunked(&[&data, &data], "");
    // One write of the head and first chunk size line, the data truncated by the capture, and
    // the second chunk's line in the next write.
    let first_end = r.len() - (data.len() + 2 + 7 + 5);
    c.server_truncated(&r[..first_end], 16 << 10);
    c.server(&r[first_end..]);
    assert_eq!(
        c.lines(),
        vec!["GET /big-chunks -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 resp_body=200000"]
    );
    assert_eq!(c.stats.bytes_lost, 0);
}

#[test]
fn a_body_until_close_ends_at_the_last_byte_seen() {
    let mut c = Conn::new();
    c.client(b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome");
    c.server(b" more body");
    let last = c.ts;
    assert!(c.out.is_empty());
    c.ts += 5_000_000;
    c.close();
    assert_eq!(c.lines(), vec!["GET /old -> 200 host=h v=1.0"]);
    assert_eq!(c.out[0].end_ns, last);
}

#[test]
fn close_in_the_middle_of_a_body_is_incomplete_and_no_answer_means_no_record() {
    let mut c = Conn::new();
    c.client(&get("/cut"));
    c.server(&resp(200, "Content-Length: 1000\r\n", "partial"));
    let last = c.ts;
    c.close();
    assert_eq!(
        c.lines(),
        vec![
            "GET /cut -> 200 host=example.test:8080 ua=\"test/1\" v=1.1 resp_body=1000 incomplete=response_end_lost"
        ]
    );
    assert_eq!(c.out[0].end_ns, last);
    let mut c = Conn::new();
    c.client(&get("/unanswered"));
    c.close();
    assert!(c.out.is_empty());
    assert_eq!(c.stats.unmatched_requests, 1);
}

#[test]
fn server_role_and_pipelining_through_the_pipeline() {
    let mut c = Conn::with(Role::Server, ParserLimits::default());
    c.client(&[get("/1"), req("HEAD", "/2", "", ""), get("/3")].concat());
    let t = c.ts;
    c.server(&ok("one"));
    c.server(&resp(200, "Content-Length: 1000\r\n", ""));
    c.server(&ok("three"));
    let paths: Vec<String> = c
        .out
        .iter()
        .map(|r| http(r).path.clone().unwrap_or_default())
        .collect();
    assert_eq!(paths, vec!["/1", "/2", "/3"]);
    assert!(c.out.iter().all(|r| r.start_ns == t));
    assert_eq!(c.stats.invalid, 0);
}

#[test]
fn unknown_method_is_other_with_the_original() {
    let mut c = Conn::new();
    c.client(b"PURGE /cache/x HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(&ok(""));
    let h = http(&c.out[0]);
    assert_eq!(h.method, "_OTHER");
    assert_eq!(h.method_original.as_deref(), Some("PURGE"));
}

#[test]
fn secrets_never_reach_a_frame_or_a_record() {
    let mut c = Conn::new();
    let request = req(
        "POST",
        "/login?user=ann&token=CANARY-TOKEN&password=CANARY-PW&page=2",
        "Authorization: Bearer CANARY-BEARER\r\nCookie: s=CANARY-COOKIE\r\nContent-Length: 11\r\n",
        "CANARY-BODY",
    );
    c.client(&request);
    c.server(&resp(
        401,
        "Set-Cookie: s=CANARY-COOKIE\r\nWWW-Authenticate: Bearer\r\nContent-Length: 11\r\n",
        "CANARY-BODY",
    ));
    c.client(b"GET http://CANARY-USERINFO:x@h/ HTTP/1.1\r\n\r\n");
    c.server(&chunked(&["CANARY-BODY"], "X-T: CANARY-TRAILER\r\n"));
    assert_eq!(c.out.len(), 2);
    let dump = format!("{:?}", c.out);
    for canary in CANARIES {
        assert!(!dump.contains(canary), "{canary} in {dump}");
    }
    assert!(dump.contains("page=2"));
    // Nor into the frames themselves.
    let mut st = Http1FramingState::default();
    let frames = format!("{:?}", parse_all(Request, &request, &mut st));
    for canary in CANARIES {
        assert!(!frames.contains(canary), "{canary} in {frames}");
    }
}

#[test]
fn queue_bounds_and_buffer_caps_hold() {
    let limits = ParserLimits {
        max_queued_frames: 4,
        max_buffer_bytes: 4096,
        ..ParserLimits::default()
    };
    let mut c = Conn::with(Role::Client, limits);
    for i in 0..10 {
        c.client(&get(&format!("/{i}")));
    }
    let ConnParser::Http1(p) = &c.parser else {
        panic!("not an HTTP parser");
    };
    assert!(p.queued_frames().0 <= 4);
    assert!(c.stats.unmatched_requests >= 5);
    // A head that never ends never holds more than the cap.
    let mut c = Conn::with(Role::Client, limits);
    c.client(b"GET / HTTP/1.1\r\n");
    for _ in 0..200 {
        c.client(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        assert!(c.parser.buffered_bytes() <= 4096);
    }
}

// ---------- (d) golden ----------

/// Replays a capture as a traced client from record `skip` on (a later attach), each record cut
/// into pieces of at most `piece` bytes of which at most `captured` are copied (the rest
/// reported as not captured).
fn replay(
    recs: &[(u8, u64, Vec<u8>)],
    skip: usize,
    piece: usize,
    captured: usize,
) -> (Vec<String>, Vec<(u64, u64)>, ParseStats) {
    let mut c = Conn::new();
    for (dir, ts, bytes) in recs.iter().skip(skip) {
        let d = if *dir == b'C' {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let i = usize::from(d == Direction::Ingress);
        for chunk in bytes.chunks(piece.max(1)) {
            let n = chunk.len().min(captured);
            c.parser.on_data(
                Chunk {
                    direction: d,
                    pos: c.pos[i],
                    ts_ns: *ts,
                    bytes: &chunk[..n],
                    len: chunk.len() as u32,
                    datagram: false,
                    peer: None,
                },
                &mut c.out,
                &mut c.stats,
            );
            c.pos[i] += chunk.len() as u64;
        }
    }
    c.close();
    (c.lines(), c.times(), c.stats)
}

fn check_golden(golden: &std::path::Path, text: &str) {
    testkit::check_golden(golden, text, CANARIES);
}

#[test]
fn golden_captures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol/http1/testdata");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut seen = 0;
    for path in entries {
        if path.extension().and_then(|x| x.to_str()) != Some("bin") {
            continue;
        }
        seen += 1;
        let recs = capture_records(&path);
        let (lines, times, stats) = replay(&recs, 0, usize::MAX, usize::MAX);
        check_golden(&path.with_extension("golden"), &golden_text(&lines, &stats));
        // Attached after the first request was sent: its response is dropped (no request to
        // pair with), every later exchange is exact.
        let (attach, _, attach_stats) = replay(&recs, 1, usize::MAX, usize::MAX);
        check_golden(
            &path.with_extension("attach.golden"),
            &golden_text(&attach, &attach_stats),
        );
        assert!(attach_stats.unmatched_responses >= 1);
        assert!(attach.iter().all(|l| lines.contains(l)), "{attach:?}");
        assert!(times.iter().all(|(s, e)| e >= s));
        // Any chunking gives the same records and times, and so does a capture cap that
        // truncates every read to 4 KiB (bodies are followed by length, never read).
        for (piece, captured) in [
            (1, usize::MAX),
            (7, usize::MAX),
            (64, usize::MAX),
            (1000, usize::MAX),
            (usize::MAX, 4096),
        ] {
            let (again, again_times, again_stats) = replay(&recs, 0, piece, captured);
            let how = format!(
                "{} in pieces of {piece}, {captured} captured",
                path.display()
            );
            assert_eq!(again, lines, "{how}");
            assert_eq!(again_times, times, "{how}");
            assert_eq!(again_stats.bytes_lost + again_stats.invalid, 0, "{how}");
        }
    }
    assert!(seen > 0, "no captures in {}", dir.display());
}

// ---------- properties ----------

/// A scripted session: (client bytes, server bytes) per exchange.
fn session() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (get("/a?token=CANARY-TOKEN&page=2"), ok("hello")),
        (
            req("HEAD", "/h", "", ""),
            resp(200, "Content-Length: 99\r\n", ""),
        ),
        (
            req(
                "POST",
                "/p",
                "Content-Length: 11\r\nAuthorization: Basic CANARY-BEARER\r\n",
                "CANARY-BODY",
            ),
            resp(201, "Content-Length: 0\r\n", ""),
        ),
        (
            get("/c"),
            chunked(&["one", "two", "three"], "X: CANARY-TRAILER\r\n"),
        ),
        (get("/n"), resp(304, "", "")),
        (
            req(
                "POST",
                "/chunky",
                "Transfer-Encoding: chunked\r\n",
                "4\r\nabcd\r\n0\r\n\r\n",
            ),
            resp(500, "Content-Length: 3\r\n", "err"),
        ),
        (
            [get("/p1"), get("/p2")].concat(),
            [ok("1"), ok("22")].concat(),
        ),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        crate::protocol::chaos::drive(Protocol::Http1, &data);
    }

    #[test]
    fn arbitrary_bytes_after_http_traffic_never_panic(
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        cuts in proptest::collection::vec(0usize..400, 0..10),
    ) {
        let mut c = Conn::new();
        c.client(&get("/x"));
        c.server(&resp(200, "Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n"));
        for chunk in split_at_points(&garbage, &cuts) {
            c.server(chunk);
            c.client(chunk);
        }
        c.close();
    }

    /// A scripted session with bytes overwritten at random, in random chunking: no panic,
    /// bounded memory (the chaos driver's invariants hold through `Conn`), and no header,
    /// body or trailer secret in any record whatever the damage. (A damaged query key is no
    /// longer a sensitive key, so the query canary is not part of this property.)
    #[test]
    fn damaged_sessions_never_leak_a_header_or_body_secret(
        damage in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 0..12),
        cuts in proptest::collection::vec(0usize..2000, 0..12),
    ) {
        let mut client: Vec<u8> = Vec::new();
        let mut server: Vec<u8> = Vec::new();
        for (q, r) in session() {
            client.extend(q);
            server.extend(r);
        }
        let (nc, ns) = (client.len(), server.len());
        for &(at, b) in &damage {
            client[at % nc] = b;
            server[at % ns] = b;
        }
        let mut c = Conn::new();
        let (qs, rs) = (split_at_points(&client, &cuts), split_at_points(&server, &cuts));
        for i in 0..qs.len().max(rs.len()) {
            if let Some(q) = qs.get(i) {
                c.client(q);
            }
            if let Some(r) = rs.get(i) {
                c.server(r);
            }
            proptest::prop_assert!(c.parser.buffered_bytes() <= 2 * ParserLimits::default().max_buffer_bytes);
        }
        c.close();
        let dump = format!("{:?}", c.out);
        for canary in ["CANARY-BEARER", "CANARY-BODY", "CANARY-TRAILER", "CANARY-COOKIE"] {
            proptest::prop_assert!(!dump.contains(canary), "{} in {}", canary, dump);
        }
    }

    #[test]
    fn any_split_gives_the_same_records(cuts in proptest::collection::vec(0usize..400, 0..12)) {
        let whole = {
            let mut c = Conn::new();
            for (q, r) in session() {
                c.client(&q);
                c.server(&r);
            }
            c.lines()
        };
        let mut c = Conn::new();
        for (q, r) in session() {
            for chunk in split_at_points(&q, &cuts) {
                c.client(chunk);
            }
            for chunk in split_at_points(&r, &cuts) {
                c.server(chunk);
            }
        }
        proptest::prop_assert_eq!(whole.len(), 8);
        proptest::prop_assert_eq!(c.lines(), whole);
        proptest::prop_assert_eq!(c.stats.invalid, 0);
        let dump = format!("{:?}", c.out);
        for canary in CANARIES {
            proptest::prop_assert!(!dump.contains(canary));
        }
    }
}

/// The framer and stitcher's own cost, both roles, an nginx-like static response (run with
/// `cargo test --release -p ebpf-receiver --lib http1::tests::bench -- --ignored --nocapture`).
#[test]
#[ignore = "benchmark: prints figures"]
fn bench_parse_cost() {
    let request =
        b"GET /static/small.txt HTTP/1.1\r\nHost: 127.0.0.1:41234\r\nUser-Agent: wrk\r\n\r\n";
    let head = resp(
        200,
        "Server: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 04:57:51 GMT\r\nContent-Type: text/plain\r\n\
         Content-Length: 1024\r\nLast-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\n\
         Connection: keep-alive\r\nETag: \"5f5e1000-400\"\r\nAccept-Ranges: bytes\r\n",
        "",
    );
    let with_body = [head.clone(), vec![b'x'; 1024]].concat();
    let n: u32 = 200_000;
    for role in [Role::Client, Role::Server] {
        let mut c = Conn::with(role, ParserLimits::default());
        let t = std::time::Instant::now();
        for _ in 0..n {
            c.client(request);
            match role {
                // The client reads head and body; the server writes the head, then sendfile.
                Role::Client => c.server(&with_body),
                Role::Server => {
                    c.server(&head);
                    c.server_uncaptured(1024);
                }
            }
            c.out.clear();
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        assert_eq!(c.stats.records, u64::from(n));
        println!("[bench] http1 {role:?}: {ns:.0} ns per exchange");
    }
}

#[test]
fn a_desynchronised_connection_whose_answers_were_lost_too_resynchronises() {
    // Requests lost (a cut head), then their answers lost as well (ring full): the connection
    // must not wait forever for answers it will never see.
    let mut c = Conn::with(Role::Server, ParserLimits::default());
    let a = get("/a");
    c.client_truncated(&[a.clone(), get("/b")].concat(), a.len() + 10);
    c.client(&get("/c"));
    c.server(&ok("a"));
    c.lose_server(200);
    c.client(&get("/d"));
    c.server(&ok("d"));
    let lines = c.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("GET /a -> 200"), "{lines:?}");
    c.client(&get("/e"));
    c.server(&ok("e"));
    let lines = c.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("GET /e -> 200"), "{lines:?}");
}

/// What `line_end` must say, by the definition: the first LF ends the line (a CR right before
/// it is not content); a NUL or a CR not followed by LF before that LF makes the line invalid;
/// no LF is incomplete, unless the invalid byte is already there.
fn line_end_by_definition(rest: &[u8]) -> &'static str {
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\n' => return "line",
            0 => return "invalid",
            b'\r' => match rest.get(i + 1) {
                Some(b'\n') => return "line",
                None => return "incomplete",
                Some(_) => return "invalid",
            },
            _ => {}
        }
    }
    "incomplete"
}

proptest::proptest! {
    #[test]
    fn line_ends_are_found_as_defined_at_every_alignment(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b'\r'),
                proptest::strategy::Just(0u8),
                proptest::strategy::Just(b'\t'),
                proptest::strategy::Just(0x1fu8),
                proptest::strategy::Just(0xa0u8),
                proptest::strategy::Just(0xffu8),
                0x20u8..0x7f,
                0x20u8..0x7f,
                0x20u8..0x7f,
            ],
            0..40,
        )
    ) {
        let got = match super::frame::line_end(&bytes) {
            super::frame::LineEnd::Line { len, newline } => {
                // The content stops at the first CR or LF, and `newline` is that line's LF.
                let first_end = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
                proptest::prop_assert_eq!(Some(len), first_end);
                proptest::prop_assert_eq!(bytes.get(newline), Some(&b'\n'));
                proptest::prop_assert!(newline == len || newline == len + 1);
                "line"
            }
            super::frame::LineEnd::Incomplete => "incomplete",
            super::frame::LineEnd::Invalid => "invalid",
        };
        proptest::prop_assert_eq!(got, line_end_by_definition(&bytes));
    }
}

proptest::proptest! {
    #[test]
    fn word_scans_find_the_first_match_at_every_alignment(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(0u8),
                proptest::strategy::Just(0x1fu8),
                proptest::strategy::Just(0x8au8),
                proptest::strategy::Just(0xa0u8),
                0x20u8..0x7f,
                0x20u8..0x7f,
            ],
            0..40,
        )
    ) {
        proptest::prop_assert_eq!(
            super::frame::find_byte(&bytes, b'\n'),
            bytes.iter().position(|&b| b == b'\n')
        );
        proptest::prop_assert_eq!(
            super::frame::find_control(&bytes),
            bytes.iter().position(|&b| b < 0x20)
        );
    }
}
