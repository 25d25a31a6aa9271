//! PostgreSQL framer, stitcher and golden tests (CONVENTIONS §8).

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
use crate::record::{DbOutcome, Exchange, Incomplete, Record};

// ---------- wire builders ----------

fn typed(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstring(k));
        body.extend(cstring(v));
    }
    body.push(0);
    let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
    v.extend(body);
    v
}

fn ssl_request() -> Vec<u8> {
    [8u32.to_be_bytes(), PG_SSL_REQUEST.to_be_bytes()].concat()
}

const SECRET_PASSWORD: &str = "pw-canary-3f9a";
const SECRET_BIND: &str = "bind-canary-77c1";
const SECRET_KEY: [u8; 4] = *b"KEY!";

fn password() -> Vec<u8> {
    typed(b'p', &cstring(SECRET_PASSWORD))
}

fn query(sql: &str) -> Vec<u8> {
    typed(b'Q', &cstring(sql))
}

fn parse_msg(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstring(name);
    b.extend(cstring(sql));
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&23u32.to_be_bytes());
    typed(b'P', &b)
}

fn bind(portal: &str, stmt: &str, values: &[&str]) -> Vec<u8> {
    let mut b = cstring(portal);
    b.extend(cstring(stmt));
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    typed(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cstring(name));
    typed(b'D', &b)
}

fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
    let mut b = cstring(portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    typed(b'E', &b)
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cstring(name));
    typed(b'C', &b)
}

fn sync() -> Vec<u8> {
    typed(b'S', &[])
}

fn flush() -> Vec<u8> {
    typed(b'H', &[])
}

fn ready(status: u8) -> Vec<u8> {
    typed(b'Z', &[status])
}

fn complete(tag: &str) -> Vec<u8> {
    typed(b'C', &cstring(tag))
}

fn row_description(cols: &[&str]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        b.extend(cstring(c));
        b.extend_from_slice(&[0; 18]);
    }
    typed(b'T', &b)
}

fn data_row(values: &[&str]) -> Vec<u8> {
    let mut b = (values.len() as u16).to_be_bytes().to_vec();
    for v in values {
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    typed(b'D', &b)
}

fn error(severity: &str, code: &str, msg: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', msg),
    ] {
        b.push(f);
        b.extend(cstring(v));
    }
    b.push(0);
    typed(b'E', &b)
}

fn notice(msg: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [(b'S', "WARNING"), (b'C', "01000"), (b'M', msg)] {
        b.push(f);
        b.extend(cstring(v));
    }
    b.push(0);
    typed(b'N', &b)
}

fn empty(ty: u8) -> Vec<u8> {
    typed(ty, &[])
}

/// What the server sends after a successful authentication.
fn login_ok() -> Vec<u8> {
    let mut key = 4242u32.to_be_bytes().to_vec();
    key.extend_from_slice(&SECRET_KEY);
    [
        typed(b'R', &0u32.to_be_bytes()),
        typed(
            b'S',
            &[cstring("server_version"), cstring("15.18")].concat(),
        ),
        typed(b'K', &key),
        ready(b'I'),
    ]
    .concat()
}

/// A result set answering a simple Query: RowDescription, DataRows, CommandComplete.
fn rows(cols: &[&str], values: &[&[&str]]) -> Vec<u8> {
    let mut v = row_description(cols);
    for r in values {
        v.extend(data_row(r));
    }
    v.extend(complete(&format!("SELECT {}", values.len())));
    v
}

// ---------- harness ----------

/// One traced connection: `client` bytes are requests, `server` bytes responses, whichever role
/// the traced process plays.
pub(super) struct Conn {
    pub parser: ConnParser,
    role: Role,
    pub ts: u64,
    pub pos: [u64; 2],
    pub out: Vec<Record>,
    pub stats: ParseStats,
}

impl Conn {
    pub fn new() -> Conn {
        Conn::with(Role::Client, ParserLimits::default())
    }

    pub fn with(role: Role, limits: ParserLimits) -> Conn {
        Conn {
            parser: ConnParser::new(Protocol::Postgres, role, limits),
            role,
            ts: 1_000,
            pos: [0, 0],
            out: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    /// Feeds bytes of one direction (`request`: sent by the client) with `len` reported.
    fn feed(&mut self, request: bool, bytes: &[u8], len: u32) {
        self.ts += 1_000;
        let dir = match (self.role, request) {
            (Role::Client, true) | (Role::Server, false) => Direction::Egress,
            _ => Direction::Ingress,
        };
        let i = usize::from(dir == Direction::Ingress);
        self.parser.on_data(
            Chunk {
                direction: dir,
                pos: self.pos[i],
                ts_ns: self.ts,
                bytes,
                len,
                datagram: false,
                peer: None,
            },
            &mut self.out,
            &mut self.stats,
        );
        self.pos[i] += u64::from(len);
    }

    pub fn client(&mut self, bytes: &[u8]) {
        self.feed(true, bytes, bytes.len() as u32);
    }

    pub fn server(&mut self, bytes: &[u8]) {
        self.feed(false, bytes, bytes.len() as u32);
    }

    /// Server bytes of which only the first `captured` were copied.
    fn server_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(false, &bytes[..captured], bytes.len() as u32);
    }

    fn client_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(true, &bytes[..captured], bytes.len() as u32);
    }

    /// `n` server bytes that were never delivered (lost in the kernel).
    fn server_lost(&mut self, n: u64) {
        self.pos[usize::from(self.role == Role::Client)] += n;
    }

    fn login(&mut self, db: &str) {
        self.client(&ssl_request());
        self.server(b"N");
        self.client(&startup(&[("user", "app"), ("database", db)]));
        self.server(&typed(b'R', &3u32.to_be_bytes()));
        self.client(&password());
        self.server(&login_ok());
    }

    fn close(&mut self) {
        self.parser.close(&mut self.out, &mut self.stats);
    }

    fn lines(&self) -> Vec<String> {
        self.out.iter().map(render).collect()
    }
}

/// One record as a golden line.
pub(super) fn render(r: &Record) -> String {
    let Exchange::Db(d) = &r.exchange else {
        panic!("not a database record: {r:?}");
    };
    let op = d
        .operation
        .as_deref()
        .unwrap_or(if d.prepare_only { "PREPARE" } else { "SQL" });
    let mut s = format!("{op} ns={:?}", d.namespace.as_deref().unwrap_or("-"));
    if let Some(q) = &d.query_summary {
        let _ = write!(s, " summary={q:?}");
    }
    if let Some(q) = &d.query_text {
        let _ = write!(s, " text={q:?}");
    }
    match &d.outcome {
        DbOutcome::Success => s.push_str(" ok"),
        DbOutcome::Error { code, .. } => {
            let _ = write!(s, " error={code}");
        }
    }
    if let Some(n) = d.returned_rows {
        let _ = write!(s, " rows={n}");
    }
    if let Some(n) = d.affected_rows {
        let _ = write!(s, " affected={n}");
    }
    if let Some(i) = r.incomplete {
        let _ = write!(s, " incomplete={}", i.as_str());
    }
    s
}

fn parse_one(kind: MessageKind, bytes: &[u8], state: &mut PgFramingState) -> Parse<PgFrame> {
    PgFramer::default().parse(kind, bytes, state)
}

fn name(s: &str) -> Option<PgName> {
    PgName::new(s.as_bytes())
}

fn text(s: &str) -> PgText {
    PgText {
        sql: s.as_bytes().to_vec(),
        truncated: false,
    }
}

// ---------- (a) bytes → frames ----------

#[test]
fn frame_table() {
    use MessageKind::{Request, Response};
    let err = PgError {
        sqlstate: Some(*b"42P01"),
        fatal: false,
    };
    let cases: Vec<(MessageKind, Vec<u8>, Parse<PgFrame>)> = vec![
        (
            Request,
            startup(&[
                ("user", "app"),
                ("database", "shop"),
                ("application_name", "x"),
            ]),
            Parse::Frame {
                frame: PgFrame::Startup {
                    database: Some("shop".into()),
                },
                len: 0,
            },
        ),
        (
            Request,
            startup(&[("user", "app")]),
            Parse::Frame {
                frame: PgFrame::Startup {
                    database: Some("app".into()),
                },
                len: 0,
            },
        ),
        (Request, ssl_request(), Parse::Skip { len: 8 }),
        (
            Request,
            [
                16u32.to_be_bytes(),
                PG_CANCEL_REQUEST.to_be_bytes(),
                7u32.to_be_bytes(),
                u32::from_be_bytes(SECRET_KEY).to_be_bytes(),
            ]
            .concat(),
            Parse::Skip { len: 16 },
        ),
        (Request, password(), Parse::Skip { len: 0 }),
        (
            Request,
            query("SELECT 1"),
            Parse::Frame {
                frame: PgFrame::Query(text("SELECT 1")),
                len: 0,
            },
        ),
        (
            Request,
            parse_msg("s1", "SELECT $1"),
            Parse::Frame {
                frame: PgFrame::Parse {
                    statement: name("s1"),
                    text: text("SELECT $1"),
                },
                len: 0,
            },
        ),
        (
            Request,
            bind("", "s1", &[SECRET_BIND]),
            Parse::Frame {
                frame: PgFrame::Bind {
                    portal: name(""),
                    statement: name("s1"),
                },
                len: 0,
            },
        ),
        (
            Request,
            describe(b'S', "s1"),
            Parse::Frame {
                frame: PgFrame::Describe { statement: true },
                len: 0,
            },
        ),
        (
            Request,
            describe(b'P', ""),
            Parse::Frame {
                frame: PgFrame::Describe { statement: false },
                len: 0,
            },
        ),
        (
            Request,
            execute("c1", 10),
            Parse::Frame {
                frame: PgFrame::Execute { portal: name("c1") },
                len: 0,
            },
        ),
        (
            Request,
            close(b'S', "s1"),
            Parse::Frame {
                frame: PgFrame::Close(PgTarget::Statement(name("s1"))),
                len: 0,
            },
        ),
        (
            Request,
            sync(),
            Parse::Frame {
                frame: PgFrame::Sync,
                len: 0,
            },
        ),
        (Request, flush(), Parse::Skip { len: 0 }),
        (Request, empty(b'X'), Parse::Skip { len: 0 }),
        (Request, typed(b'd', b"1\tsecret\n"), Parse::Skip { len: 0 }),
        (
            Response,
            ready(b'T'),
            Parse::Frame {
                frame: PgFrame::Ready(b'T'),
                len: 0,
            },
        ),
        (
            Response,
            complete("INSERT 0 5"),
            Parse::Frame {
                frame: PgFrame::CommandComplete(PgTag::Affected(5)),
                len: 0,
            },
        ),
        (
            Response,
            complete("SELECT 12"),
            Parse::Frame {
                frame: PgFrame::CommandComplete(PgTag::Returned(12)),
                len: 0,
            },
        ),
        (
            Response,
            complete("CREATE TABLE"),
            Parse::Frame {
                frame: PgFrame::CommandComplete(PgTag::Other),
                len: 0,
            },
        ),
        (
            Response,
            error("ERROR", "42P01", "relation \"t\" does not exist"),
            Parse::Frame {
                frame: PgFrame::Error(err),
                len: 0,
            },
        ),
        (
            Response,
            error("FATAL", "28P01", "password authentication failed"),
            Parse::Frame {
                frame: PgFrame::Error(PgError {
                    sqlstate: Some(*b"28P01"),
                    fatal: true,
                }),
                len: 0,
            },
        ),
        (
            Response,
            empty(b'1'),
            Parse::Frame {
                frame: PgFrame::ParseComplete,
                len: 0,
            },
        ),
        (
            Response,
            row_description(&["id"]),
            Parse::Frame {
                frame: PgFrame::RowDescription,
                len: 0,
            },
        ),
        (Response, data_row(&["secret"]), Parse::Skip { len: 0 }),
        (Response, notice("careful"), Parse::Skip { len: 0 }),
        (
            Response,
            typed(b'R', &10u32.to_be_bytes()),
            Parse::Skip { len: 0 },
        ),
        (Response, login_ok()[..9].to_vec(), Parse::Skip { len: 0 }),
    ];
    for (kind, bytes, want) in cases {
        let mut st = PgFramingState::default();
        let got = parse_one(kind, &bytes, &mut st);
        // Full consumption: the frame or skip spans the whole message.
        let want = match want {
            Parse::Frame { frame, .. } => Parse::Frame {
                frame,
                len: bytes.len(),
            },
            Parse::Skip { len: 0 } => Parse::Skip { len: bytes.len() },
            other => other,
        };
        assert_eq!(got, want, "{kind:?} {bytes:02x?}");
    }
}

#[test]
fn ssl_answer_and_encryption() {
    let f = PgFramer::default();
    let mut st = PgFramingState::default();
    assert_eq!(
        f.parse(MessageKind::Request, &ssl_request(), &mut st),
        Parse::Skip { len: 8 }
    );
    // Refused: one byte, then plaintext.
    assert_eq!(
        f.parse(MessageKind::Response, b"N", &mut st),
        Parse::Skip { len: 1 }
    );
    assert!(!st.encrypted);
    // A NoticeResponse is typed `N` too: only the byte right after the request is the answer.
    assert_eq!(
        f.parse(MessageKind::Response, &notice("x"), &mut st),
        Parse::Skip {
            len: notice("x").len()
        }
    );
    // Accepted: everything after is ciphertext, skipped to the end in both directions.
    f.parse(MessageKind::Request, &ssl_request(), &mut st);
    assert_eq!(
        f.parse(MessageKind::Response, b"S\x16\x03\x03", &mut st),
        Parse::Skip { len: 1 }
    );
    assert_eq!(
        f.parse(MessageKind::Request, b"\x16\x03\x01\x02\x00", &mut st),
        Parse::Skip { len: UNTIL_CLOSE }
    );
    assert_eq!(
        f.parse(MessageKind::Response, b"\x16\x03\x03", &mut st),
        Parse::Skip { len: UNTIL_CLOSE }
    );
}

#[test]
fn long_names_and_long_text() {
    let limits = ParserLimits {
        max_query_text_bytes: 64,
        ..ParserLimits::default()
    };
    let f = <PgFramer as Framer>::new(limits);
    let mut st = PgFramingState::default();
    let long = "n".repeat(PG_MAX_NAME + 1);
    let msg = bind(&long, "s", &[]);
    assert_eq!(
        f.parse(MessageKind::Request, &msg, &mut st),
        Parse::Frame {
            frame: PgFrame::Bind {
                portal: None,
                statement: name("s"),
            },
            len: msg.len(),
        }
    );
    // Text beyond the cap (4 × 64 → 256 minimum) is cut and marked.
    let sql = format!("SELECT '{}'", "x".repeat(1000));
    let msg = query(&sql);
    match f.parse(MessageKind::Request, &msg, &mut st) {
        Parse::Frame {
            frame: PgFrame::Query(t),
            len,
        } => {
            assert_eq!(len, msg.len());
            assert!(t.truncated);
            assert_eq!(t.sql.len(), 256);
        }
        other => panic!("{other:?}"),
    }
    // The framer does not wait for a long message: only for the prefix it keeps.
    assert!(matches!(
        f.parse(MessageKind::Request, &msg[..300], &mut st),
        Parse::Frame { .. }
    ));
}

/// Regression (R2 hostile bytes): a database name of 256 bytes of invalid UTF-8 passed the
/// length check and then tripled to 768 bytes when made text.
#[test]
fn a_database_name_of_invalid_utf8_stays_within_its_cap() {
    let f = <PgFramer as Framer>::new(ParserLimits::default());
    let mut st = PgFramingState::default();
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"database\0");
    body.extend_from_slice(&[0xff; PG_MAX_DATABASE]);
    body.extend_from_slice(b"\0\0");
    let msg = [&(body.len() as u32 + 4).to_be_bytes()[..], &body].concat();
    match f.parse(MessageKind::Request, &msg, &mut st) {
        Parse::Frame {
            frame: PgFrame::Startup { database },
            ..
        } => {
            let db = database.unwrap();
            assert!(
                db.len() <= PG_MAX_DATABASE && db.starts_with('\u{fffd}'),
                "{}",
                db.len()
            );
        }
        other => panic!("{other:?}"),
    }
}

// ---------- (b) prefixes, garbage, resync ----------

#[test]
fn every_prefix_is_incomplete() {
    use MessageKind::{Request, Response};
    let msgs: Vec<(MessageKind, Vec<u8>)> = vec![
        (Request, startup(&[("user", "u"), ("database", "d")])),
        (Request, ssl_request()),
        (Request, query("SELECT 1")),
        (Request, parse_msg("", "SELECT $1")),
        (Request, bind("p", "s", &["1"])),
        (Request, describe(b'S', "s")),
        (Request, execute("", 0)),
        (Request, close(b'P', "p")),
        (Request, sync()),
        (Response, ready(b'I')),
        (Response, complete("SELECT 1")),
        (Response, error("ERROR", "22012", "division by zero")),
        (Response, empty(b'2')),
        (Response, row_description(&["a", "b"])),
    ];
    for (kind, m) in &msgs {
        for cut in 0..m.len() {
            let mut st = PgFramingState::default();
            let got = parse_one(*kind, &m[..cut], &mut st);
            // Untyped messages and the fixed-size ones wait for their bytes; the framer may
            // cut a long message early only when it has the prefix it keeps.
            assert!(
                got == Parse::Incomplete
                    || matches!(&got, Parse::Frame { len, .. } | Parse::Skip { len } if *len == m.len()),
                "{kind:?} {m:02x?} cut at {cut}: {got:?}"
            );
        }
        let mut st = PgFramingState::default();
        assert!(matches!(
            parse_one(*kind, m, &mut st),
            Parse::Frame { .. } | Parse::Skip { .. }
        ));
    }
}

#[test]
fn garbage_is_invalid() {
    use MessageKind::{Request, Response};
    let cases: Vec<(MessageKind, &[u8])> = vec![
        (Request, b"GET / HTTP/1.1\r\n"),
        (Request, b"Q\x00\x00\x00\x02"),
        (Request, b"S\x00\x00\x00\x05\x00"),
        (Request, b"\x00\x00\x00\x08\x12\x34\x56\x78"),
        (Request, b"\x00\x00\x00\x04\x00\x03\x00\x00"),
        (Request, b"D\x00\x00\x00\x06X\x00"),
        (Response, b"+OK\r\n"),
        (Response, b"Z\x00\x00\x00\x05X"),
        (Response, b"Z\x00\x00\x00\x06II"),
        (Response, b"1\x00\x00\x00\x05\x00"),
        (Response, b"C\xff\xff\xff\xff"),
    ];
    for (kind, bytes) in cases {
        let mut st = PgFramingState::default();
        assert_eq!(
            parse_one(kind, bytes, &mut st),
            Parse::Invalid,
            "{kind:?} {bytes:02x?}"
        );
    }
}

#[test]
fn resync_after_garbage_lands_on_the_next_frame() {
    let f = PgFramer::default();
    let st = PgFramingState::default();
    let next = [complete("SELECT 1"), ready(b'I')].concat();
    let buf = [b"\xde\xad\xbe\xef junk".to_vec(), next.clone()].concat();
    assert_eq!(
        f.find_boundary(MessageKind::Response, &buf, 1, &st),
        Some(buf.len() - next.len())
    );
    // A DataRow stream cut in the middle: resync on the next row.
    let rows: Vec<u8> = (0..5)
        .flat_map(|i| data_row(&[&i.to_string(), "abc"]))
        .collect();
    let tail = [rows.clone(), complete("SELECT 5"), ready(b'I')].concat();
    let at = f
        .find_boundary(MessageKind::Response, &tail, 3, &st)
        .unwrap();
    assert_eq!(at, data_row(&["0", "abc"]).len());
    let reqs = [bind("", "s", &["1"]), execute("", 0), sync()].concat();
    let buf = [b"zzzz".to_vec(), reqs.clone()].concat();
    assert_eq!(f.find_boundary(MessageKind::Request, &buf, 0, &st), Some(4));
    assert!(
        st.request_resynced.get(),
        "request resync is noted for the stitcher"
    );
}

#[test]
fn garbage_in_a_stream_resyncs_and_records_go_on() {
    let mut c = Conn::new();
    c.login("shop");
    c.server(b"\x00\x01garbage\xff");
    c.client(&query("SELECT 1"));
    c.server(&[rows(&["?column?"], &[&["1"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
    assert!(c.stats.invalid >= 1);
}

/// Crash classes of peer parsers (reliability-security.md §3): a Bind cut short
/// (grafana/beyla#2271), lengths and counts that lie, names without terminators.
#[test]
fn lying_lengths_and_cut_messages_are_values() {
    let f = PgFramer::default();
    let mut st = PgFramingState::default();
    // A Bind claiming 1000 bytes, its names complete but its values cut by the capture.
    let mut b = bind("", "s", &["x".repeat(900).as_str()]);
    b.truncate(20);
    assert_eq!(
        f.parse_before_gap(MessageKind::Request, &b, &mut st),
        Parse::Frame {
            frame: PgFrame::Bind {
                portal: name(""),
                statement: name("s"),
            },
            len: bind("", "s", &["x".repeat(900).as_str()]).len(),
        }
    );
    // Cut inside the statement name: the name is unknown, never a prefix of it.
    let b = bind("", "stmt_long_name", &["1"]);
    assert_eq!(
        f.parse_before_gap(MessageKind::Request, &b[..9], &mut st),
        Parse::Frame {
            frame: PgFrame::Bind {
                portal: name(""),
                statement: None,
            },
            len: b.len(),
        }
    );
    // Names without terminators inside the whole message: not a Bind.
    let mut body = b"abc".to_vec();
    body.extend_from_slice(&[1; 9]);
    assert_eq!(
        f.parse(MessageKind::Request, &typed(b'B', &body), &mut st),
        Parse::Invalid
    );
    // A parameter count far beyond the message: counts are never read.
    let mut body = [cstring(""), cstring("s")].concat();
    body.extend_from_slice(&[0, 0, 0xff, 0xff, 0, 0, 0, 9]);
    assert!(matches!(
        f.parse(MessageKind::Request, &typed(b'B', &body), &mut st),
        Parse::Frame { .. }
    ));
    // An ErrorResponse whose fields run off the end, a tag without a terminator.
    let e = typed(b'E', b"SERROR\0VERROR\0C4");
    assert_eq!(
        f.parse(MessageKind::Response, &e, &mut st),
        Parse::Frame {
            frame: PgFrame::Error(PgError {
                sqlstate: None,
                fatal: false,
            }),
            len: e.len(),
        }
    );
    let t = typed(b'C', b"SELECT 12345678901234567890123");
    assert_eq!(
        f.parse(MessageKind::Response, &t, &mut st),
        Parse::Frame {
            frame: PgFrame::CommandComplete(PgTag::Other),
            len: t.len(),
        }
    );
    // The same through a connection: nothing panics, the next query is recorded.
    let mut c = Conn::new();
    c.login("shop");
    c.client_truncated(&bind("", "s", &["x".repeat(900).as_str()]), 20);
    c.client(&[execute("", 0), sync()].concat());
    c.server(&[empty(b'2'), complete("SELECT 1"), ready(b'I')].concat());
    c.client(&typed(b'B', b"no terminators"));
    c.client(&query("SELECT 1"));
    c.server(&[rows(&["a"], &[&["1"]]), ready(b'I')].concat());
    assert_eq!(c.out.len(), 2, "{:?}", c.lines());
}

// ---------- stitching through the pipeline ----------

#[test]
fn login_sets_namespace_and_never_keeps_auth_bytes() {
    let mut c = Conn::new();
    c.login("shop");
    assert!(c.out.is_empty(), "the login is no span");
    c.client(&query("SELECT name FROM users WHERE id = 7"));
    c.server(&[rows(&["name"], &[&["ann"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="shop" summary="SELECT users" text="SELECT name FROM users WHERE id = ?" ok rows=1"#
        ]
    );
    let all = format!("{:?}", c.out);
    for secret in [SECRET_PASSWORD, "KEY!", "ann", "app"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    assert_eq!(c.stats.unmatched_responses, 0);
    assert_eq!(c.stats.unmatched_requests, 0);
}

#[test]
fn login_failure_keeps_namespace_unset() {
    let mut c = Conn::new();
    c.client(&startup(&[("user", "app"), ("database", "shop")]));
    c.server(&typed(b'R', &3u32.to_be_bytes()));
    c.client(&password());
    c.server(&error("FATAL", "28P01", "password authentication failed"));
    c.close();
    assert!(c.out.is_empty());
    assert_eq!(c.stats.unmatched_requests, 0);
}

#[test]
fn simple_query_errors_multi_statements_and_empty() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT * FROM missing"));
    c.server(&error(
        "ERROR",
        "42P01",
        "relation \"missing\" does not exist",
    ));
    c.server(&ready(b'I'));
    c.client(&query("SELECT 1; SELECT 2"));
    c.server(
        &[
            rows(&["a"], &[&["1"]]),
            rows(&["b"], &[&["2"]]),
            ready(b'I'),
        ]
        .concat(),
    );
    c.client(&query("SELECT 1; SELECT 1/0; SELECT 3"));
    c.server(
        &[
            rows(&["a"], &[&["1"]]),
            error("ERROR", "22012", "division by zero"),
            ready(b'I'),
        ]
        .concat(),
    );
    c.client(&query(";"));
    c.server(&[empty(b'I'), ready(b'I')].concat());
    c.client(&query("UPDATE users SET age = 1; DELETE FROM kv"));
    c.server(&[complete("UPDATE 3"), complete("DELETE 2"), ready(b'I')].concat());
    // A warning (class 01) is a notice, never an error.
    c.client(&query("SELECT 2"));
    c.server(&[notice("careful"), rows(&["a"], &[]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="shop" summary="SELECT missing" text="SELECT * FROM missing" error=42P01"#,
            r#"SQL ns="shop" summary="SELECT SELECT" text="SELECT ?; SELECT ?" ok rows=2"#,
            r#"SQL ns="shop" summary="SELECT SELECT SELECT" text="SELECT ?; SELECT ?/?; SELECT ?" error=22012 rows=1"#,
            r#"SQL ns="shop" text=";" ok"#,
            r#"SQL ns="shop" summary="UPDATE users DELETE kv" text="UPDATE users SET age = ?; DELETE FROM kv" ok affected=5"#,
            r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=0"#,
        ]
    );
    assert_eq!(c.stats.unmatched_responses, 0);
}

#[test]
fn gssenc_refused_then_ssl_refused_then_plaintext() {
    let mut c = Conn::new();
    c.client(&[8u32.to_be_bytes(), PG_GSSENC_REQUEST.to_be_bytes()].concat());
    c.server(b"N");
    c.client(&ssl_request());
    c.server(b"N");
    c.client(&startup(&[("user", "app"), ("database", "gssdb")]));
    c.server(&login_ok());
    c.client(&query("SELECT 1"));
    c.server(&[rows(&["a"], &[&["1"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="gssdb" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
    assert_eq!(c.stats.invalid, 0);
}

#[test]
fn an_error_response_of_class_00_or_01_is_no_error() {
    let mut c = Conn::new();
    c.login("shop");
    for code in ["01000", "00000", "02000", "XX000"] {
        c.client(&query("SELECT 1"));
        c.server(&[error("ERROR", code, "x"), ready(b'I')].concat());
    }
    let outcomes: Vec<String> = c.out.iter().map(render).collect();
    assert!(outcomes[0].ends_with(" ok") && outcomes[1].ends_with(" ok"));
    assert!(outcomes[2].ends_with("error=02000"));
    assert!(outcomes[3].ends_with("error=XX000"));
}

#[test]
fn a_query_ends_at_its_ready_for_query() {
    let mut c = Conn::new();
    c.login("shop");
    let start = c.ts + 1_000;
    c.client(&query("SELECT 1"));
    c.server(&rows(&["a"], &[&["1"]]));
    c.server(&notice("late"));
    assert!(c.out.is_empty(), "no record before ReadyForQuery");
    c.server(&ready(b'I'));
    let end = c.ts;
    assert_eq!((c.out[0].start_ns, c.out[0].end_ns), (start, end));
}

#[test]
fn extended_unnamed_is_one_execution() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(
        &[
            parse_msg("", "SELECT id FROM users WHERE name = $1 AND age > 30"),
            bind("", "", &[SECRET_BIND]),
            describe(b'P', ""),
            execute("", 0),
            sync(),
        ]
        .concat(),
    );
    c.server(
        &[
            empty(b'1'),
            empty(b'2'),
            row_description(&["id"]),
            data_row(&["1"]),
            complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="shop" summary="SELECT users" text="SELECT id FROM users WHERE name = $1 AND age > ?" ok rows=1"#
        ]
    );
    assert!(!format!("{:?}", c.out).contains(SECRET_BIND));
}

#[test]
fn named_statement_prepare_then_executions_carry_its_text() {
    let mut c = Conn::new();
    c.login("shop");
    // psycopg prepare=True: Parse + Sync, then Bind/Describe/Execute/Sync per execution.
    c.client(
        &[
            parse_msg("_pg3_0", "SELECT name FROM users WHERE id = $1"),
            sync(),
        ]
        .concat(),
    );
    c.server(&[empty(b'1'), ready(b'I')].concat());
    for v in ["1", "2"] {
        c.client(
            &[
                bind("", "_pg3_0", &[v]),
                describe(b'P', ""),
                execute("", 0),
                sync(),
            ]
            .concat(),
        );
        c.server(
            &[
                empty(b'2'),
                row_description(&["name"]),
                data_row(&["x"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]
            .concat(),
        );
    }
    // Describe statement without Execute: also a prepare-only exchange.
    c.client(
        &[
            parse_msg("s2", "UPDATE kv SET v = $1"),
            describe(b'S', "s2"),
            sync(),
        ]
        .concat(),
    );
    c.server(&[empty(b'1'), empty(b't'), empty(b'n'), ready(b'I')].concat());
    // Closing forgets: a later execution of the name has no text.
    c.client(&[close(b'S', "_pg3_0"), sync()].concat());
    c.server(&[empty(b'3'), ready(b'I')].concat());
    c.client(&[bind("", "_pg3_0", &["1"]), execute("", 0), sync()].concat());
    c.server(
        &[
            error("ERROR", "26000", "prepared statement does not exist"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        vec![
            r#"PREPARE ns="shop" summary="SELECT users" text="SELECT name FROM users WHERE id = $1" ok"#,
            r#"SQL ns="shop" summary="SELECT users" text="SELECT name FROM users WHERE id = $1" ok rows=1"#,
            r#"SQL ns="shop" summary="SELECT users" text="SELECT name FROM users WHERE id = $1" ok rows=1"#,
            r#"PREPARE ns="shop" summary="UPDATE kv" text="UPDATE kv SET v = $1" ok"#,
            r#"EXECUTE ns="shop" error=26000"#,
        ]
    );
    assert_eq!(c.stats.unmatched_requests + c.stats.unmatched_responses, 0);
}

#[test]
fn prepare_failure_and_bind_failure() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(
        &[
            parse_msg("bad", "SELECT v FROM missing WHERE k = $1"),
            sync(),
        ]
        .concat(),
    );
    c.server(
        &[
            error("ERROR", "42P01", "relation does not exist"),
            ready(b'I'),
        ]
        .concat(),
    );
    // The failed statement is unknown: its execution has no text.
    c.client(&[bind("", "bad", &["1"]), execute("", 0), sync()].concat());
    c.server(&[error("ERROR", "26000", "does not exist"), ready(b'I')].concat());
    // Parse + Bind + Execute + Sync failing at the Parse: one execution with the Parse's text.
    c.client(
        &[
            parse_msg("", "SELECT 1 / $1::int"),
            bind("", "", &["0"]),
            describe(b'P', ""),
            execute("", 0),
            sync(),
        ]
        .concat(),
    );
    c.server(
        &[
            empty(b'1'),
            error("ERROR", "22012", "division by zero"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        vec![
            r#"PREPARE ns="shop" summary="SELECT missing" text="SELECT v FROM missing WHERE k = $1" error=42P01"#,
            r#"EXECUTE ns="shop" error=26000"#,
            r#"SQL ns="shop" summary="SELECT" text="SELECT ? / $1::int" error=22012"#,
        ]
    );
    assert_eq!(c.stats.unmatched_requests + c.stats.unmatched_responses, 0);
}

#[test]
fn pipelined_batch_is_one_execution_per_execute() {
    let mut c = Conn::new();
    c.login("shop");
    let t0 = c.ts + 1_000;
    let mut batch = Vec::new();
    for i in 1..=3 {
        batch.extend(parse_msg("", "SELECT age FROM users WHERE id = $1"));
        batch.extend(bind("", "", &[&i.to_string()]));
        batch.extend(describe(b'P', ""));
        batch.extend(execute("", 0));
    }
    batch.extend(sync());
    c.client(&batch);
    let answer = |n: &str| {
        [
            empty(b'1'),
            empty(b'2'),
            row_description(&["age"]),
            data_row(&[n]),
            complete("SELECT 1"),
        ]
        .concat()
    };
    c.server(&answer("31"));
    let t1 = c.ts;
    c.server(&answer("45"));
    let t2 = c.ts;
    c.server(&[answer("27"), ready(b'I')].concat());
    let t3 = c.ts;
    let text = r#"SQL ns="shop" summary="SELECT users" text="SELECT age FROM users WHERE id = $1" ok rows=1"#;
    assert_eq!(c.lines(), vec![text; 3]);
    // Each execution ends at its own answer; the last at the batch's ReadyForQuery.
    let times: Vec<(u64, u64)> = c.out.iter().map(|r| (r.start_ns, r.end_ns)).collect();
    assert_eq!(times, vec![(t0, t1), (t0, t2), (t0, t3)]);
}

#[test]
fn error_in_a_pipeline_skips_the_rest_until_sync() {
    let mut c = Conn::new();
    c.login("shop");
    let mut batch = Vec::new();
    for sql in ["SELECT 1", "SELECT 1/0", "SELECT 3"] {
        batch.extend(parse_msg("", sql));
        batch.extend(bind("", "", &[]));
        batch.extend(execute("", 0));
    }
    batch.extend(sync());
    c.client(&batch);
    c.server(
        &[
            empty(b'1'),
            empty(b'2'),
            data_row(&["1"]),
            complete("SELECT 1"),
            empty(b'1'),
            empty(b'2'),
            error("ERROR", "22012", "division by zero"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=1"#,
            r#"SQL ns="shop" summary="SELECT" text="SELECT ?/?" error=22012"#,
        ]
    );
    // The third was never run: no record, and not a loss.
    assert_eq!(c.stats.unmatched_requests + c.stats.unmatched_responses, 0);
    // After the Sync the connection works again.
    c.client(&query("SELECT 4"));
    c.server(&[rows(&["a"], &[&["4"]]), ready(b'I')].concat());
    assert_eq!(c.out.len(), 3);
}

#[test]
fn error_before_the_sync_is_sent_skips_later_messages_too() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(
        &[
            parse_msg("", "SELECT nope"),
            bind("", "", &[]),
            execute("", 0),
            flush(),
        ]
        .concat(),
    );
    c.server(&error("ERROR", "42703", "column does not exist"));
    c.client(
        &[
            parse_msg("", "SELECT 2"),
            bind("", "", &[]),
            execute("", 0),
            sync(),
        ]
        .concat(),
    );
    c.server(&ready(b'I'));
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT" text="SELECT nope" error=42703"#]
    );
    assert_eq!(c.stats.unmatched_requests + c.stats.unmatched_responses, 0);
}

#[test]
fn named_portals_row_limits_and_transactions() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("BEGIN"));
    c.server(&[complete("BEGIN"), ready(b'T')].concat());
    c.client(
        &[
            parse_msg("s", "SELECT n FROM generate_series(1, 5) n"),
            bind("cur", "s", &[]),
            execute("cur", 2),
            sync(),
        ]
        .concat(),
    );
    c.server(
        &[
            empty(b'1'),
            empty(b'2'),
            data_row(&["1"]),
            data_row(&["2"]),
            empty(b's'),
            ready(b'T'),
        ]
        .concat(),
    );
    c.client(&[execute("cur", 0), sync()].concat());
    c.server(
        &[
            data_row(&["3"]),
            data_row(&["4"]),
            data_row(&["5"]),
            complete("SELECT 3"),
            ready(b'T'),
        ]
        .concat(),
    );
    c.client(&query("COMMIT"));
    c.server(&[complete("COMMIT"), ready(b'I')].concat());
    // The portal ended with the transaction: executing it again has no text.
    c.client(&[execute("cur", 0), sync()].concat());
    c.server(
        &[
            error("ERROR", "34000", "portal does not exist"),
            ready(b'I'),
        ]
        .concat(),
    );
    let sel = r#"summary="SELECT generate_series" text="SELECT n FROM generate_series(?, ?) n""#;
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="shop" summary="BEGIN" text="BEGIN" ok"#.to_string(),
            format!(r#"SQL ns="shop" {sel} ok"#),
            format!(r#"SQL ns="shop" {sel} ok rows=3"#),
            r#"SQL ns="shop" summary="COMMIT" text="COMMIT" ok"#.to_string(),
            r#"EXECUTE ns="shop" error=34000"#.to_string(),
        ]
    );
}

#[test]
fn deallocate_and_discard_forget_statements() {
    let mut c = Conn::new();
    c.login("shop");
    let prepare = |c: &mut Conn, n: &str, sql: &str| {
        c.client(&[parse_msg(n, sql), sync()].concat());
        c.server(&[empty(b'1'), ready(b'I')].concat());
    };
    let run = |c: &mut Conn, n: &str| {
        c.client(&[bind("", n, &[]), execute("", 0), sync()].concat());
        c.server(&[empty(b'2'), complete("SELECT 1"), ready(b'I')].concat());
    };
    prepare(&mut c, "a", "SELECT 1");
    prepare(&mut c, "b", "SELECT 2");
    c.client(&query("DEALLOCATE a"));
    c.server(&[complete("DEALLOCATE"), ready(b'I')].concat());
    run(&mut c, "b");
    // `a` was dropped on the server: a new `a` prepared by SQL is one we never saw.
    c.client(&query("PREPARE a AS SELECT 3"));
    c.server(&[complete("PREPARE"), ready(b'I')].concat());
    run(&mut c, "a");
    c.client(&query("DISCARD ALL"));
    c.server(&[complete("DISCARD ALL"), ready(b'I')].concat());
    run(&mut c, "b");
    let lines = c.lines();
    assert_eq!(lines.len(), 8, "{lines:#?}");
    assert_eq!(
        lines[3],
        r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=1"#
    );
    assert_eq!(lines[5], r#"EXECUTE ns="shop" ok rows=1"#);
    assert_eq!(lines[7], r#"EXECUTE ns="shop" ok rows=1"#);
}

#[test]
fn function_call_and_copy() {
    let mut c = Conn::new();
    c.login("shop");
    let mut call = 1234u32.to_be_bytes().to_vec();
    call.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 4]);
    call.extend_from_slice(b"sEcR");
    call.extend_from_slice(&[0, 0]);
    c.client(&typed(b'F', &call));
    c.server(&[typed(b'V', &[0, 0, 0, 1, 7]), ready(b'I')].concat());
    c.client(&query("COPY kv FROM STDIN"));
    c.server(&typed(b'G', &[0, 0, 2, 0, 0, 0, 0]));
    c.client(&[typed(b'd', b"k\tcopy-secret\n"), empty(b'c')].concat());
    c.server(&[complete("COPY 1"), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![
            r#"FUNCTION_CALL ns="shop" ok"#,
            r#"SQL ns="shop" summary="COPY kv" text="COPY kv FROM STDIN" ok affected=1"#,
        ]
    );
    assert!(!format!("{:?}", c.out).contains("secret"));
    assert!(!format!("{:?}", c.out).contains("sEcR"));
}

#[test]
fn attach_mid_connection_has_no_namespace_and_unknown_statements() {
    let mut c = Conn::new();
    c.client(
        &[
            bind("", "P0_0", &["42"]),
            describe(b'P', ""),
            execute("", 0),
            sync(),
        ]
        .concat(),
    );
    c.server(
        &[
            empty(b'2'),
            row_description(&["abalance"]),
            data_row(&["0"]),
            complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
    );
    c.client(&query("SELECT 1"));
    c.server(&[rows(&["a"], &[&["1"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![
            r#"EXECUTE ns="-" ok rows=1"#,
            r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok rows=1"#,
        ]
    );
}

#[test]
fn answer_already_under_way_at_attach_is_dropped() {
    let mut c = Conn::new();
    c.server(&[data_row(&["x"]), complete("SELECT 9"), ready(b'I')].concat());
    c.client(&query("SELECT 2"));
    c.server(&[rows(&["a"], &[&["2"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
    assert_eq!(c.stats.unmatched_responses, 1);
}

#[test]
fn server_role_mirrors_client_role() {
    let session = |c: &mut Conn| {
        c.login("shop");
        c.client(&query("SELECT 1"));
        c.server(&[rows(&["a"], &[&["1"]]), ready(b'I')].concat());
        c.client(&[parse_msg("s", "SELECT $1"), sync()].concat());
        c.server(&[empty(b'1'), ready(b'I')].concat());
        c.client(&[bind("", "s", &["5"]), execute("", 0), sync()].concat());
        c.server(
            &[
                empty(b'2'),
                data_row(&["5"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]
            .concat(),
        );
    };
    let mut client = Conn::new();
    session(&mut client);
    let mut server = Conn::with(Role::Server, ParserLimits::default());
    session(&mut server);
    assert_eq!(client.lines().len(), 3);
    assert_eq!(client.lines(), server.lines());
    let times = |c: &Conn| {
        c.out
            .iter()
            .map(|r| (r.start_ns, r.end_ns))
            .collect::<Vec<_>>()
    };
    assert_eq!(times(&client), times(&server));
}

// ---------- loss ----------

#[test]
fn loss_inside_an_answer_keeps_the_end_and_omits_counts() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT n FROM big"));
    let many: Vec<u8> = (0..50)
        .flat_map(|i| data_row(&[&format!("{i:04}")]))
        .collect();
    c.server(&[row_description(&["n"]), many.clone()].concat());
    c.server_lost(many.len() as u64 / 2);
    c.server(
        &[
            many[many.len() / 2 + 3..].to_vec(),
            complete("SELECT 100"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT big" text="SELECT n FROM big" ok rows=100"#]
    );
}

#[test]
fn lost_ready_for_query_never_stretches_a_span_into_the_next_request() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT 1"));
    let answer = [rows(&["a"], &[&["1"]]), ready(b'I')].concat();
    // The whole answer lost in the kernel.
    c.server_lost(answer.len() as u64);
    let start = c.ts + 1_000;
    c.client(&query("SELECT 2"));
    c.server(&[rows(&["b"], &[&["2"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
    assert_eq!(c.out[0].start_ns, start, "the record is the second query's");
    assert_eq!(c.stats.unmatched_requests, 1);
}

#[test]
fn truncated_capture_of_the_end_of_an_answer() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT 1"));
    let answer = [rows(&["a"], &[&["1"]]), ready(b'I')].concat();
    // Only the RowDescription was copied: the ReadyForQuery is in the uncaptured tail.
    c.server_truncated(&answer, 8);
    c.client(&query("SELECT 2"));
    c.server(&[rows(&["b"], &[&["2"]]), ready(b'I')].concat());
    assert_eq!(c.out.len(), 1);
    assert_eq!(c.stats.unmatched_requests, 1);
}

#[test]
fn capture_truncated_long_query_is_recorded_and_fails_closed_in_a_literal() {
    let mut c = Conn::new();
    c.login("shop");
    let sql = format!("SELECT a FROM t WHERE b = '{}'", "s".repeat(20_000));
    let msg = query(&sql);
    c.client_truncated(&msg, 4096);
    c.server(&[rows(&["a"], &[]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT t" ok rows=0"#]
    );
    assert_eq!(c.stats.invalid, 0);
}

#[test]
fn request_loss_forgets_statements() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&[parse_msg("s", "SELECT 1"), sync()].concat());
    c.server(&[empty(b'1'), ready(b'I')].concat());
    // A Close + Parse redefining `s` lost in the kernel.
    let lost = [close(b'S', "s"), parse_msg("s", "SELECT 2"), sync()].concat();
    c.pos[0] += lost.len() as u64;
    c.server(&[empty(b'3'), empty(b'1'), ready(b'I')].concat());
    c.client(&[bind("", "s", &[]), execute("", 0), sync()].concat());
    c.server(&[empty(b'2'), complete("SELECT 1"), ready(b'I')].concat());
    let lines = c.lines();
    assert_eq!(
        lines.last().unwrap(),
        r#"EXECUTE ns="shop" ok rows=1"#,
        "{lines:#?}"
    );
}

#[test]
fn pipelined_connection_goes_blind_after_an_ambiguous_loss() {
    let mut c = Conn::new();
    c.login("shop");
    // Two simple queries in flight at once: pipelining, seen without loss.
    c.client(&query("SELECT 1"));
    c.client(&query("SELECT 2"));
    c.server(&[rows(&["a"], &[&["1"]]), ready(b'I')].concat());
    c.server(&[rows(&["b"], &[&["2"]]), ready(b'I')].concat());
    assert_eq!(c.out.len(), 2);
    // Again, but the first answer is lost: which query the next answer belongs to is unknown.
    c.client(&query("SELECT 3"));
    c.client(&query("SELECT 4"));
    c.server_lost(40);
    c.server(&[rows(&["d"], &[&["4"]]), ready(b'I')].concat());
    c.client(&query("SELECT 5"));
    c.server(&[rows(&["e"], &[&["5"]]), ready(b'I')].concat());
    assert_eq!(
        c.out.len(),
        2,
        "nothing recorded while pairing is ambiguous"
    );
    // Idle for a request timeout: records resume.
    let mut out = Vec::new();
    let now = c.ts + 1_000_000;
    c.parser.expire(now, &mut out, &mut c.stats);
    c.client(&query("SELECT 6"));
    c.server(&[rows(&["f"], &[&["6"]]), ready(b'I')].concat());
    assert_eq!(c.out.len(), 3);
}

#[test]
fn expire_gives_up_and_a_late_answer_is_not_misattributed() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT pg_sleep(60)"));
    let mut out = Vec::new();
    let deadline = c.ts + 1;
    c.parser.expire(deadline, &mut out, &mut c.stats);
    assert!(out.is_empty());
    assert_eq!(c.stats.unmatched_requests, 1);
    c.server(&[rows(&["pg_sleep"], &[&[""]]), ready(b'I')].concat());
    c.client(&query("SELECT 2"));
    c.server(&[rows(&["b"], &[&["2"]]), ready(b'I')].concat());
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
}

#[test]
fn connection_closed_mid_answer_leaves_no_record() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT 1"));
    c.server(&row_description(&["a"]));
    c.close();
    assert!(c.out.is_empty());
    assert_eq!(c.stats.unmatched_requests, 1);
}

#[test]
fn last_byte_in_a_later_chunk_ends_the_span_there() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT 1"));
    let answer = [rows(&["a"], &[&["1"]]), ready(b'I')].concat();
    let (a, b) = answer.split_at(answer.len() - 2);
    c.server(a);
    c.server(b);
    let end = c.ts;
    assert_eq!(c.out[0].end_ns, end);
    assert_eq!(c.out[0].incomplete, None);
}

#[test]
fn many_ops_pending_go_blind_then_see_again() {
    let limits = ParserLimits {
        max_queued_frames: 16,
        ..ParserLimits::default()
    };
    let mut c = Conn::with(Role::Client, limits);
    c.login("shop");
    // 40 executions before one Sync: over the op bound (64).
    let mut batch = Vec::new();
    for _ in 0..40 {
        batch.extend([bind("", "s", &[]), execute("", 0)].concat());
    }
    batch.extend(sync());
    c.client(&batch);
    let mut answer = Vec::new();
    for _ in 0..40 {
        answer.extend([empty(b'2'), complete("SELECT 1")].concat());
    }
    answer.extend(ready(b'I'));
    c.server(&answer);
    assert!(c.stats.unmatched_requests > 0);
    let before = c.out.len();
    // Exactly one ReadyForQuery was owed: the next exchange is recorded again.
    c.client(&query("SELECT 1"));
    c.server(&[rows(&["a"], &[&["1"]]), ready(b'I')].concat());
    assert_eq!(c.out.len(), before + 1);
}

// ---------- (c) stitcher from frames ----------

fn timed(start: u64, end: u64, frame: PgFrame) -> Timed<PgFrame> {
    Timed::new(start, end, frame)
}

fn stitch_frames(
    reqs: Vec<Timed<PgFrame>>,
    resps: Vec<Timed<PgFrame>>,
) -> (Vec<Record>, ParseStats) {
    let mut s = <PgStitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs: VecDeque<_> = reqs.into();
    let mut resps: VecDeque<_> = resps.into();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    s.expire(&mut reqs, &mut resps, u64::MAX, &mut out, &mut stats);
    (out, stats)
}

fn q(sql: &str) -> PgFrame {
    PgFrame::Query(text(sql))
}

#[test]
fn stitcher_pairs_in_order_by_time() {
    let (out, stats) = stitch_frames(
        vec![timed(10, 11, q("SELECT 1")), timed(30, 31, q("SELECT 2"))],
        vec![
            timed(20, 20, PgFrame::CommandComplete(PgTag::Returned(1))),
            timed(21, 22, PgFrame::Ready(b'I')),
            timed(40, 41, PgFrame::Ready(b'I')),
        ],
    );
    let times: Vec<(u64, u64)> = out.iter().map(|r| (r.start_ns, r.end_ns)).collect();
    assert_eq!(times, vec![(10, 22), (30, 41)]);
    assert_eq!(stats.records, 2);
}

#[test]
fn stitcher_response_before_request_is_unmatched() {
    let (out, stats) = stitch_frames(
        vec![timed(10, 11, q("SELECT 1"))],
        vec![
            timed(5, 6, PgFrame::Ready(b'I')),
            timed(20, 21, PgFrame::Ready(b'I')),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ns, out[0].end_ns), (10, 21));
    assert_eq!(stats.unmatched_responses, 1);
}

#[test]
fn stitcher_missing_response_does_not_steal_the_next_one() {
    // The first query's answer never came; the second query was sent after it would have.
    let mut s = <PgStitcher as Stitcher>::new(ParserLimits::default());
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    let mut reqs: VecDeque<_> = vec![timed(10, 11, q("SELECT 1"))].into();
    let mut resps = VecDeque::new();
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    // The pipeline reports the lost bytes with the next chunk.
    stats.bytes_lost += 30;
    reqs.push_back(timed(30, 31, q("SELECT 2")));
    resps.push_back(timed(40, 41, PgFrame::Ready(b'I')));
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ns, out[0].end_ns), (30, 41));
    assert_eq!(stats.unmatched_requests, 1);
}

#[test]
fn stitcher_keys_statements_and_portals_by_name() {
    let parse = |n: &str, sql: &str| PgFrame::Parse {
        statement: name(n),
        text: text(sql),
    };
    let bind = |p: &str, st: &str| PgFrame::Bind {
        portal: name(p),
        statement: name(st),
    };
    let exec = |p: &str| PgFrame::Execute { portal: name(p) };
    let (out, _) = stitch_frames(
        vec![
            timed(1, 1, parse("a", "SELECT a FROM ta")),
            timed(1, 1, parse("b", "SELECT b FROM tb")),
            timed(1, 1, PgFrame::Sync),
            timed(10, 10, bind("pb", "b")),
            timed(10, 10, bind("pa", "a")),
            timed(10, 10, exec("pa")),
            timed(10, 10, exec("pb")),
            timed(10, 10, PgFrame::Sync),
        ],
        vec![
            timed(2, 2, PgFrame::ParseComplete),
            timed(3, 3, PgFrame::ParseComplete),
            timed(4, 4, PgFrame::Ready(b'I')),
            timed(11, 11, PgFrame::BindComplete),
            timed(12, 12, PgFrame::BindComplete),
            timed(13, 13, PgFrame::CommandComplete(PgTag::Returned(1))),
            timed(14, 14, PgFrame::CommandComplete(PgTag::Returned(2))),
            timed(15, 15, PgFrame::Ready(b'T')),
        ],
    );
    let lines: Vec<String> = out.iter().map(render).collect();
    assert_eq!(
        lines,
        vec![
            r#"PREPARE ns="-" summary="SELECT ta" text="SELECT a FROM ta" ok"#,
            r#"PREPARE ns="-" summary="SELECT tb" text="SELECT b FROM tb" ok"#,
            r#"SQL ns="-" summary="SELECT ta" text="SELECT a FROM ta" ok rows=1"#,
            r#"SQL ns="-" summary="SELECT tb" text="SELECT b FROM tb" ok rows=2"#,
        ]
    );
    // The first prepare ends at its own ParseComplete, the second at the ReadyForQuery.
    let times: Vec<(u64, u64)> = out.iter().map(|r| (r.start_ns, r.end_ns)).collect();
    assert_eq!(times, vec![(1, 2), (1, 4), (10, 13), (10, 15)]);
}

#[test]
fn stitcher_marks_an_answer_whose_end_was_lost() {
    let mut end = timed(20, 25, PgFrame::Ready(b'I'));
    end.complete = false;
    let (out, _) = stitch_frames(vec![timed(10, 11, q("SELECT 1"))], vec![end]);
    assert_eq!(out[0].incomplete, Some(Incomplete::EndLost));
}

#[test]
fn sql_forgets_reads_deallocate_prepare_and_discard() {
    let f = |s: &str| stitch_test_forgets(s);
    assert_eq!(f("SELECT 1"), "nothing");
    assert_eq!(f("DEALLOCATE \"_pg3_0\""), "[\"_pg3_0\"]");
    assert_eq!(f("deallocate prepare Foo"), "[\"foo\"]");
    assert_eq!(f("DEALLOCATE ALL"), "all");
    assert_eq!(f("DISCARD PLANS"), "all");
    assert_eq!(
        f("PREPARE q1 (int) AS SELECT $1; DEALLOCATE q2"),
        "[\"q1\", \"q2\"]"
    );
    assert_eq!(f("DEALLOCATE"), "all");
}

fn stitch_test_forgets(sql: &str) -> String {
    super::stitch::forgets_for_tests(&text(sql))
}

// ---------- (d) golden ----------

/// Replays a capture from record `skip` on (a later attach) as the client or the server, each
/// record cut into pieces of at most `piece` bytes.
fn replay(
    recs: &[(u8, u64, Vec<u8>)],
    role: Role,
    skip: usize,
    piece: usize,
) -> (Vec<String>, ParseStats) {
    let mut c = Conn::with(role, ParserLimits::default());
    for (dir, ts, bytes) in recs.iter().skip(skip) {
        let request = *dir == b'C';
        let d = match (role, request) {
            (Role::Client, true) | (Role::Server, false) => Direction::Egress,
            _ => Direction::Ingress,
        };
        let i = usize::from(d == Direction::Ingress);
        for chunk in bytes.chunks(piece.max(1)) {
            c.parser.on_data(
                Chunk {
                    direction: d,
                    pos: c.pos[i],
                    ts_ns: *ts,
                    bytes: chunk,
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
    (c.out.iter().map(render).collect(), c.stats)
}

/// Canaries the captures carry (passwords, Bind values, literals, the cancel key is binary).
const CAPTURE_SECRETS: &[&str] = &[
    "hunter2",
    "bind-secret-canary",
    "literal-secret-canary",
    "SCRAM",
    "ann",
];

fn check_golden(golden: &std::path::Path, text: &str) {
    testkit::check_golden(golden, text, CAPTURE_SECRETS);
}

/// The record index just past the login (the first client record after the server's
/// BackendKeyData), plus `extra` records: where an attach mid-connection starts.
fn attach_point(recs: &[(u8, u64, Vec<u8>)], extra: usize) -> usize {
    let login_end = recs
        .iter()
        .position(|(d, _, b)| *d == b'S' && b.windows(2).any(|w| w == b"K\x00"))
        .expect("a login in the capture");
    login_end + 1 + extra
}

#[test]
fn golden_captures() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol/postgres/testdata");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("bin") {
            continue;
        }
        seen += 1;
        let recs = capture_records(&path);
        let (lines, stats) = replay(&recs, Role::Client, 0, usize::MAX);
        check_golden(&path.with_extension("golden"), &golden_text(&lines, &stats));
        assert_eq!(stats.invalid, 0, "{}", path.display());
        // Any chunking gives the same records, and the server's view is the same.
        for piece in [1, 3, 7, 64] {
            let (again, _) = replay(&recs, Role::Client, 0, piece);
            assert_eq!(again, lines, "{} in pieces of {piece}", path.display());
        }
        let (server, _) = replay(&recs, Role::Server, 0, usize::MAX);
        assert_eq!(server, lines, "{} as the server", path.display());
        // Attaching after the login and one more round trip: no namespace, and statements
        // prepared before the attach have no text.
        let (lines, stats) = replay(&recs, Role::Client, attach_point(&recs, 2), usize::MAX);
        check_golden(
            &path.with_extension("attach.golden"),
            &golden_text(&lines, &stats),
        );
    }
    assert!(seen > 0, "no captures in {}", dir.display());
}

// ---------- properties ----------

/// A scripted session: (client bytes, server bytes) per round trip.
fn session() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (
            query("SELECT id, name FROM users WHERE name = 'x'"),
            [
                rows(&["id", "name"], &[&["1", "a"], &["2", "b"]]),
                ready(b'I'),
            ]
            .concat(),
        ),
        (
            query("UPDATE t SET a = 1"),
            [complete("UPDATE 3"), ready(b'I')].concat(),
        ),
        (
            query("BAD"),
            [error("ERROR", "42601", "syntax error"), ready(b'I')].concat(),
        ),
        (
            [parse_msg("s", "SELECT $1 FROM t"), sync()].concat(),
            [empty(b'1'), ready(b'I')].concat(),
        ),
        (
            [
                bind("", "s", &["9"]),
                describe(b'P', ""),
                execute("", 0),
                sync(),
            ]
            .concat(),
            [
                empty(b'2'),
                row_description(&["c"]),
                data_row(&["9"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]
            .concat(),
        ),
        (
            [
                parse_msg("", "SELECT 1"),
                bind("", "", &[]),
                execute("", 0),
                parse_msg("", "SELECT 2"),
                bind("", "", &[]),
                execute("", 0),
                sync(),
            ]
            .concat(),
            [
                empty(b'1'),
                empty(b'2'),
                data_row(&["1"]),
                complete("SELECT 1"),
                empty(b'1'),
                empty(b'2'),
                data_row(&["2"]),
                complete("SELECT 1"),
                ready(b'I'),
            ]
            .concat(),
        ),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        crate::protocol::chaos::drive(Protocol::Postgres, &data);
    }

    #[test]
    fn arbitrary_bytes_after_a_login_never_panic(
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        cuts in proptest::collection::vec(0usize..500, 0..10),
    ) {
        let mut c = Conn::new();
        c.login("db");
        for chunk in split_at_points(&garbage, &cuts) {
            c.server(chunk);
            c.client(chunk);
        }
        c.close();
    }

    #[test]
    fn any_split_gives_the_same_records(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let whole = {
            let mut c = Conn::new();
            c.login("db");
            for (req, resp) in session() {
                c.client(&req);
                c.server(&resp);
            }
            c.lines()
        };
        let mut c = Conn::new();
        c.login("db");
        for (req, resp) in session() {
            for chunk in split_at_points(&req, &cuts) {
                c.client(chunk);
            }
            for chunk in split_at_points(&resp, &cuts) {
                c.server(chunk);
            }
        }
        proptest::prop_assert_eq!(whole.len(), 7);
        proptest::prop_assert_eq!(c.lines(), whole);
        proptest::prop_assert_eq!(c.stats.invalid, 0);
    }

    /// Secret canaries in every place a secret travels never reach a record, whatever the
    /// chunking.
    #[test]
    fn secrets_never_reach_a_record(cuts in proptest::collection::vec(0usize..400, 0..8)) {
        let mut c = Conn::new();
        let login = [
            ssl_request(),
            startup(&[("user", "app"), ("database", "db"), ("options", "-c x=y")]),
            password(),
            typed(b'p', b"n,,n=app,r=SASL-canary-nonce"),
        ]
        .concat();
        for chunk in split_at_points(&login, &cuts) {
            c.client(chunk);
        }
        c.server(b"N");
        c.server(&login_ok());
        let reqs = [
            query("SELECT 'lit-canary-1'"),
            parse_msg("", "SELECT $1, 'lit-canary-2'"),
            bind("", "", &[SECRET_BIND]),
            execute("", 0),
            sync(),
        ]
        .concat();
        for chunk in split_at_points(&reqs, &cuts) {
            c.client(chunk);
        }
        c.server(&[rows(&["x"], &[&["row-canary"]]), ready(b'I')].concat());
        c.server(&[empty(b'1'), empty(b'2'), data_row(&["row-canary"]), complete("SELECT 1"), ready(b'I')].concat());
        let all = format!("{:?}", c.out);
        for secret in [SECRET_PASSWORD, SECRET_BIND, "canary", "KEY!", "app"] {
            proptest::prop_assert!(!all.contains(secret), "{} in {}", secret, all);
        }
        proptest::prop_assert_eq!(c.out.len(), 2);
    }
}

#[test]
fn large_result_set_in_one_read_is_not_dropped() {
    let mut c = Conn::new();
    c.login("shop");
    c.client(&query("SELECT n FROM numbers"));
    let mut rs = row_description(&["n"]);
    for i in 0..5000 {
        rs.extend(data_row(&[&i.to_string()]));
    }
    rs.extend(complete("SELECT 5000"));
    rs.extend(ready(b'I'));
    c.server(&rs);
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="SELECT numbers" text="SELECT n FROM numbers" ok rows=5000"#]
    );
}
