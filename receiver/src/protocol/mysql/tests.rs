//! MySQL framer, stitcher and golden tests (CONVENTIONS §8).

use crate::protocol::testkit::{self, capture_records, golden_text, split_at_points};
use std::fmt::Write as _;

use super::types::*;
use super::*;
use crate::model::{Direction, Protocol, Role};
use crate::protocol::{
    Chunk, ConnParser, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher,
};
use crate::record::{DbOutcome, Exchange, Record};

// ---------- wire builders ----------

pub(super) fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = n.to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

fn lenenc(n: u64) -> Vec<u8> {
    match n {
        0..=0xfa => vec![n as u8],
        0xfb..=0xffff => {
            let mut v = vec![0xfc];
            v.extend_from_slice(&(n as u16).to_le_bytes());
            v
        }
        0x1_0000..=0xff_ffff => {
            let mut v = vec![0xfd];
            v.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            v
        }
        _ => {
            let mut v = vec![0xfe];
            v.extend_from_slice(&n.to_le_bytes());
            v
        }
    }
}

fn lenenc_str(s: &[u8]) -> Vec<u8> {
    let mut v = lenenc(s.len() as u64);
    v.extend_from_slice(s);
    v
}

fn command(code: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![code];
    p.extend_from_slice(body);
    packet(0, &p)
}

fn query(sql: &str) -> Vec<u8> {
    command(COM_QUERY, sql.as_bytes())
}

fn ok(seq: u8, affected: u64, status: u16) -> Vec<u8> {
    let mut p = vec![0x00];
    p.extend(lenenc(affected));
    p.extend(lenenc(0));
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    packet(seq, &p)
}

/// OK_Packet with a 0xFE header: ends a result set with CLIENT_DEPRECATE_EOF.
fn ok_fe(seq: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    packet(seq, &p)
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    packet(seq, &p)
}

fn err(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    packet(seq, &p)
}

fn coldef(seq: u8, name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "shop", "users", "users", name, name] {
        p.extend(lenenc_str(s.as_bytes()));
    }
    p.push(0x0c);
    p.extend_from_slice(&33u16.to_le_bytes());
    p.extend_from_slice(&255u32.to_le_bytes());
    p.push(0xfd);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    packet(seq, &p)
}

fn text_row(seq: u8, values: &[&str]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in values {
        p.extend(lenenc_str(v.as_bytes()));
    }
    packet(seq, &p)
}

/// A text result set; returns the bytes and the next sequence id.
fn result_set(
    mut seq: u8,
    cols: &[&str],
    rows: &[&[&str]],
    deprecate_eof: bool,
    status: u16,
) -> (Vec<u8>, u8) {
    let mut v = packet(seq, &lenenc(cols.len() as u64));
    seq += 1;
    for c in cols {
        v.extend(coldef(seq, c));
        seq += 1;
    }
    if !deprecate_eof {
        v.extend(eof(seq, 0x0002));
        seq += 1;
    }
    for r in rows {
        v.extend(text_row(seq, r));
        seq += 1;
    }
    v.extend(if deprecate_eof {
        ok_fe(seq, status)
    } else {
        eof(seq, status)
    });
    (v, seq + 1)
}

fn greeting(caps: u32) -> Vec<u8> {
    let mut p = vec![0x0a];
    p.extend_from_slice(b"8.0.36\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&((caps & 0xffff) as u16).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0");
    p.extend_from_slice(b"caching_sha2_password\0");
    packet(0, &p)
}

const AUTH_SECRET: &[u8] = b"SECRET-SCRAMBLE-0123";

fn handshake_response(caps: u32, db: Option<&str>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"app_user\0");
    p.extend(lenenc_str(AUTH_SECRET));
    if let Some(db) = db {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(b"caching_sha2_password\0");
    packet(1, &p)
}

const BASE_CAPS: u32 = CLIENT_PROTOCOL_41
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | 0x0008_0000; // CLIENT_PLUGIN_AUTH

// ---------- harness ----------

/// One traced client connection: egress = requests, ingress = responses.
pub(super) struct Conn {
    pub parser: ConnParser,
    pub ts: u64,
    pub pos: [u64; 2],
    pub out: Vec<Record>,
    pub stats: ParseStats,
}

impl Conn {
    pub fn new() -> Conn {
        Conn::with_limits(ParserLimits::default())
    }

    pub fn with_limits(limits: ParserLimits) -> Conn {
        Conn {
            parser: ConnParser::new(Protocol::Mysql, Role::Client, limits),
            ts: 1_000,
            pos: [0, 0],
            out: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], len: u32) {
        self.ts += 1_000;
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
        self.feed(Direction::Egress, bytes, bytes.len() as u32);
    }

    pub fn server(&mut self, bytes: &[u8]) {
        self.feed(Direction::Ingress, bytes, bytes.len() as u32);
    }

    /// Server bytes of which only the first `captured` were copied by the kernel.
    fn server_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(Direction::Ingress, &bytes[..captured], bytes.len() as u32);
    }

    fn client_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(Direction::Egress, &bytes[..captured], bytes.len() as u32);
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
    // The operation: a protocol command (`PING`), a prepare, or SQL named by its text.
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
        DbOutcome::Error { code, detail } => {
            let _ = write!(s, " error={code}/{}", detail.as_deref().unwrap_or("-"));
        }
    }
    if let Some(n) = d.returned_rows {
        let _ = write!(s, " rows={n}");
    }
    if let Some(n) = d.affected_rows {
        let _ = write!(s, " affected={n}");
    }
    s
}

fn parse_one(kind: MessageKind, bytes: &[u8], state: &mut MysqlFramingState) -> Parse<MysqlFrame> {
    MysqlFramer::default().parse(kind, bytes, state)
}

fn command_state() -> MysqlFramingState {
    MysqlFramingState {
        phase: MysqlPhase::Command,
        ..MysqlFramingState::default()
    }
}

// ---------- (a) bytes → frames ----------

#[test]
fn frame_table() {
    use MessageKind::{Request, Response};
    let text = |s: &str| MysqlArg::Text {
        sql: Some(s.as_bytes().to_vec()),
        truncated: false,
    };
    let cmd = |code, arg| {
        MysqlFrame::Command(MysqlCommand {
            code,
            arg,
            continued: false,
        })
    };
    let mut execute = vec![0u8; 0];
    execute.extend_from_slice(&7u32.to_le_bytes());
    execute.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0x03, 0, 42, 0, 0, 0]); // params never kept
    let cases: Vec<(MessageKind, Vec<u8>, MysqlFrame)> = vec![
        (Request, query("SELECT 1"), cmd(COM_QUERY, text("SELECT 1"))),
        (
            Request,
            command(COM_STMT_PREPARE, b"SELECT ? FROM t"),
            cmd(COM_STMT_PREPARE, text("SELECT ? FROM t")),
        ),
        (
            Request,
            command(COM_STMT_EXECUTE, &execute),
            cmd(COM_STMT_EXECUTE, MysqlArg::Statement(7)),
        ),
        (
            Request,
            command(COM_STMT_CLOSE, &9u32.to_le_bytes()),
            cmd(COM_STMT_CLOSE, MysqlArg::Statement(9)),
        ),
        (
            Request,
            command(COM_INIT_DB, b"shop"),
            cmd(COM_INIT_DB, MysqlArg::Schema(Some("shop".into()))),
        ),
        (
            Request,
            command(COM_PING, b""),
            cmd(COM_PING, MysqlArg::None),
        ),
        (
            Request,
            command(COM_QUIT, b""),
            cmd(COM_QUIT, MysqlArg::None),
        ),
        (
            Request,
            command(COM_QUERY, b"\x00\x01SELECT 2"),
            cmd(COM_QUERY, text("SELECT 2")),
        ),
        (
            Response,
            ok(1, 3, 2),
            MysqlFrame::Packet(MysqlPacket::new(1, 7, &ok(1, 3, 2)[4..])),
        ),
        (
            Response,
            err(1, 1064, "42000", "syntax"),
            MysqlFrame::Packet(MysqlPacket::new(
                1,
                15,
                &err(1, 1064, "42000", "syntax")[4..],
            )),
        ),
        (
            Response,
            eof(5, 2),
            MysqlFrame::Packet(MysqlPacket::new(5, 5, &eof(5, 2)[4..])),
        ),
    ];
    for (kind, bytes, want) in cases {
        let mut st = command_state();
        match parse_one(kind, &bytes, &mut st) {
            Parse::Frame { frame, len } => {
                assert_eq!(frame, want, "{bytes:02x?}");
                assert_eq!(len, bytes.len(), "full consumption of {bytes:02x?}");
            }
            other => panic!("{bytes:02x?} → {other:?}"),
        }
    }
}

#[test]
fn packet_accessors() {
    let p = |b: Vec<u8>| match parse_one(MessageKind::Response, &b, &mut command_state()) {
        Parse::Frame {
            frame: MysqlFrame::Packet(p),
            ..
        } => p,
        other => panic!("{other:?}"),
    };
    let e = p(err(1, 1146, "42S02", "Table 'x' doesn't exist"));
    assert_eq!(e.error(), Some((1146, Some("42S02".to_owned()))));
    let e = p(packet(1, &[0xff, 0x15, 0x04, b'n', b'o']));
    assert_eq!(e.error(), Some((1045, None)));
    let o = p(ok(1, 300, SERVER_MORE_RESULTS_EXISTS));
    assert_eq!(o.affected_rows(), Some(300));
    assert_eq!(o.status(), Some(SERVER_MORE_RESULTS_EXISTS));
    let f = p(eof(3, 0x0022));
    assert!(f.is_short_eof() && f.is_eof_or_ok_fe());
    assert_eq!(f.status(), Some(0x0022));
    let f = p(ok_fe(3, SERVER_MORE_RESULTS_EXISTS));
    assert!(!f.is_short_eof() && f.is_eof_or_ok_fe());
    assert_eq!(f.status(), Some(SERVER_MORE_RESULTS_EXISTS));
}

// ---------- (b) prefixes, garbage, resync ----------

#[test]
fn every_prefix_is_incomplete() {
    let msgs: Vec<(MessageKind, Vec<u8>)> = vec![
        (
            MessageKind::Request,
            query("SELECT * FROM users WHERE id = 1"),
        ),
        (
            MessageKind::Request,
            command(COM_STMT_EXECUTE, &[1, 0, 0, 0, 0]),
        ),
        (MessageKind::Request, command(COM_INIT_DB, b"shop")),
        (MessageKind::Response, ok(1, 1, 2)),
        (MessageKind::Response, err(1, 1064, "42000", "bad")),
        (MessageKind::Response, coldef(2, "name")),
    ];
    for (kind, bytes) in msgs {
        let whole = parse_one(kind, &bytes, &mut command_state());
        assert!(matches!(whole, Parse::Frame { len, .. } if len == bytes.len()));
        for n in 0..bytes.len() {
            let r = parse_one(kind, &bytes[..n], &mut command_state());
            // A frame may be cut once the bytes a span needs are in (the statement id of
            // COM_STMT_EXECUTE, never its parameters); it then covers the whole packet.
            if r != whole || n < 5 {
                assert_eq!(r, Parse::Incomplete, "{kind:?} prefix {n} of {bytes:02x?}");
            }
        }
    }
    // Handshake packets too.
    let g = greeting(BASE_CAPS | CLIENT_DEPRECATE_EOF);
    for n in 0..g.len() {
        let r = parse_one(
            MessageKind::Response,
            &g[..n],
            &mut MysqlFramingState::default(),
        );
        assert_eq!(r, Parse::Incomplete, "greeting prefix {n}");
    }
    let h = handshake_response(BASE_CAPS | CLIENT_CONNECT_WITH_DB, Some("shop"));
    for n in 0..h.len() {
        let mut st = MysqlFramingState {
            phase: MysqlPhase::Greeted,
            ..MysqlFramingState::default()
        };
        assert_eq!(
            parse_one(MessageKind::Request, &h[..n], &mut st),
            Parse::Incomplete,
            "handshake prefix {n}"
        );
    }
}

#[test]
fn garbage_is_invalid() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",              // seq 'H' != 0 for a request
        &[0x05, 0, 0, 0, 0x77, 1, 2, 3, 4], // unknown command 0x77
        &[0, 0, 0, 0],                      // empty command
        &[2, 0, 0, 0, COM_STMT_EXECUTE, 1], // statement command without an id
    ];
    for g in cases {
        assert_eq!(
            parse_one(MessageKind::Request, g, &mut command_state()),
            Parse::Invalid,
            "{g:02x?}"
        );
    }
    assert_eq!(
        parse_one(MessageKind::Response, &[0, 0, 0, 1], &mut command_state()),
        Parse::Invalid
    );
}

#[test]
fn resync_after_garbage_lands_on_the_next_frame() {
    let framer = MysqlFramer::default();
    let mut buf = b"\x01\x02garbage!".to_vec();
    let at = buf.len();
    buf.extend(query("SELECT 1"));
    let st = command_state();
    assert_eq!(
        framer.find_boundary(MessageKind::Request, &buf, 1, &st),
        Some(at)
    );

    let mut c = Conn::new();
    let mut bytes = b"\xffjunk\x00\x00".to_vec();
    bytes.extend(query("SELECT 1"));
    c.client(&bytes);
    c.server(&packet(1, &[1]));
    let (rs, _) = result_set(2, &["1"], &[&["1"]], false, 2);
    c.server(&rs);
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
    assert_eq!(c.stats.invalid, 1);
    assert_eq!(c.stats.resyncs, 1);
    assert_eq!(c.stats.bytes_lost, 7);
}

#[test]
fn response_boundary_prefers_sequence_chains() {
    let framer = MysqlFramer::default();
    let st = command_state();
    let mut buf = vec![0xab, 0xcd, 0xef];
    buf.extend(text_row(4, &["x"]));
    buf.extend(text_row(5, &["y"]));
    buf.extend(eof(6, 2));
    assert_eq!(
        framer.find_boundary(MessageKind::Response, &buf, 0, &st),
        Some(3)
    );
}

// ---------- (c) stitching ----------

fn login(c: &mut Conn, caps: u32, db: Option<&str>) {
    let with_db = if db.is_some() {
        CLIENT_CONNECT_WITH_DB
    } else {
        0
    };
    c.server(&greeting(caps | CLIENT_CONNECT_WITH_DB));
    c.client(&handshake_response(caps | with_db, db));
    // AuthSwitchRequest, client auth data, caching_sha2 fast auth, OK.
    c.server(&packet(
        2,
        b"\xfemysql_native_password\0nonce-nonce-nonce\0",
    ));
    c.client(&packet(3, AUTH_SECRET));
    c.server(&packet(4, &[0x01, 0x03]));
    c.server(&ok(5, 0, 2));
}

#[test]
fn handshake_sets_namespace_and_never_keeps_auth_bytes() {
    let mut c = Conn::new();
    login(&mut c, BASE_CAPS | CLIENT_DEPRECATE_EOF, Some("shop"));
    assert!(c.out.is_empty());
    c.client(&query("SELECT name FROM users WHERE id = 7"));
    let (rs, _) = result_set(1, &["name"], &[&["ann"], &["bob"]], true, 2);
    c.server(&rs);
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="shop" summary="SELECT users" text="SELECT name FROM users WHERE id = ?" ok rows=2"#
        ]
    );
    assert_eq!(c.stats.unmatched_responses, 0);
    assert_eq!(c.stats.unmatched_requests, 0);
    assert_eq!(c.stats.invalid, 0);
    // No frame holds the scramble: the Debug form of every record and of the parser state
    // never contains it.
    let dump = format!("{:?}", c.out);
    assert!(!dump.contains("SECRET-SCRAMBLE"));
}

#[test]
fn handshake_framer_skips_auth_response() {
    let mut st = MysqlFramingState::default();
    let g = greeting(BASE_CAPS | CLIENT_DEPRECATE_EOF | CLIENT_CONNECT_WITH_DB);
    assert_eq!(
        parse_one(MessageKind::Response, &g, &mut st),
        Parse::Skip { len: g.len() }
    );
    let h = handshake_response(
        BASE_CAPS | CLIENT_CONNECT_WITH_DB | CLIENT_DEPRECATE_EOF,
        Some("db1"),
    );
    match parse_one(MessageKind::Request, &h, &mut st) {
        Parse::Frame {
            frame: MysqlFrame::Login(l),
            len,
        } => {
            assert_eq!(len, h.len());
            assert_eq!(l.database.as_deref(), Some("db1"));
            assert_ne!(l.capabilities & CLIENT_DEPRECATE_EOF, 0);
            assert!(!format!("{l:?}").contains("SECRET"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(st.phase, MysqlPhase::Auth);
    let more = packet(3, b"cleartext-password\0");
    assert_eq!(
        parse_one(MessageKind::Request, &more, &mut st),
        Parse::Skip { len: more.len() }
    );
}

#[test]
fn login_failure_keeps_namespace_unset() {
    let mut c = Conn::new();
    c.server(&greeting(BASE_CAPS | CLIENT_CONNECT_WITH_DB));
    c.client(&handshake_response(
        BASE_CAPS | CLIENT_CONNECT_WITH_DB,
        Some("shop"),
    ));
    c.server(&err(2, 1045, "28000", "Access denied"));
    assert!(c.out.is_empty());
    assert_eq!(c.stats.unmatched_responses, 0);
}

#[test]
fn error_response() {
    let mut c = Conn::new();
    c.client(&query("SELEC 1"));
    c.server(&err(
        1,
        1064,
        "42000",
        "You have an error in your SQL syntax",
    ));
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" text="SELEC ?" error=1064/42000"#]
    );
    let Exchange::Db(d) = &c.out[0].exchange else {
        panic!("not a database record");
    };
    assert_eq!(
        d.outcome,
        DbOutcome::Error {
            code: "1064".into(),
            detail: Some("42000".into())
        }
    );
}

#[test]
fn ok_with_affected_rows_and_times() {
    let mut c = Conn::new();
    c.client(&query("UPDATE accounts SET balance = 0 WHERE id = 3"));
    let req_ts = c.ts;
    c.server(&ok(1, 4, 2));
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="-" summary="UPDATE accounts" text="UPDATE accounts SET balance = ? WHERE id = ?" ok affected=4"#
        ]
    );
    assert_eq!(c.out[0].start_ns, req_ts);
    assert_eq!(c.out[0].end_ns, c.ts);
}

#[test]
fn deprecate_eof_on_off_and_unknown() {
    for (caps, deprecate) in [
        (Some(BASE_CAPS | CLIENT_DEPRECATE_EOF), true),
        (Some(BASE_CAPS), false),
        (None, true),
        (None, false),
    ] {
        let mut c = Conn::new();
        if let Some(caps) = caps {
            login(&mut c, caps, None);
        }
        c.client(&query("SELECT a, b FROM t"));
        let (rs, _) = result_set(
            1,
            &["a", "b"],
            &[&["1", "2"], &["3", "4"], &["5", "6"]],
            deprecate,
            2,
        );
        c.server(&rs);
        // An empty result set, too.
        c.client(&query("SELECT a FROM t WHERE 0"));
        let (rs, _) = result_set(1, &["a"], &[], deprecate, 2);
        c.server(&rs);
        assert_eq!(
            c.lines(),
            vec![
                r#"SQL ns="-" summary="SELECT t" text="SELECT a, b FROM t" ok rows=3"#,
                r#"SQL ns="-" summary="SELECT t" text="SELECT a FROM t WHERE ?" ok rows=0"#,
            ],
            "caps {caps:?} deprecate {deprecate}"
        );
        assert_eq!(c.stats.unmatched_responses, 0, "caps {caps:?}");
    }
}

#[test]
fn multiple_result_sets() {
    for deprecate in [false, true] {
        let mut c = Conn::new();
        c.client(&query("SELECT 1; SELECT 2, 3; UPDATE t SET a = 1"));
        let (mut bytes, seq) = result_set(
            1,
            &["1"],
            &[&["1"]],
            deprecate,
            2 | SERVER_MORE_RESULTS_EXISTS,
        );
        let (rs2, seq) = result_set(
            seq,
            &["2", "3"],
            &[&["2", "3"], &["2", "3"]],
            deprecate,
            2 | SERVER_MORE_RESULTS_EXISTS,
        );
        bytes.extend(rs2);
        bytes.extend(ok(seq, 5, 2));
        // Delivered packet by packet to exercise the incremental stitcher.
        let mut at = 0;
        while at < bytes.len() {
            let n = 4 + u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], 0]) as usize;
            c.server(&bytes[at..at + n]);
            at += n;
        }
        assert_eq!(
            c.lines(),
            vec![
                r#"SQL ns="-" summary="SELECT SELECT UPDATE t" text="SELECT ?; SELECT ?, ?; UPDATE t SET a = ?" ok rows=3 affected=5"#
            ],
            "deprecate {deprecate}"
        );
    }
}

#[test]
fn call_procedure_result_then_ok() {
    let mut c = Conn::new();
    login(&mut c, BASE_CAPS, Some("shop"));
    c.client(&query("CALL report(2024)"));
    let (mut bytes, seq) = result_set(1, &["n"], &[&["10"]], false, 2 | SERVER_MORE_RESULTS_EXISTS);
    bytes.extend(ok(seq, 0, 2));
    c.server(&bytes);
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="shop" summary="CALL report" text="CALL report(?)" ok rows=1 affected=0"#]
    );
}

fn prepare_ok(id: u32, cols: u16, params: u16) -> Vec<u8> {
    let mut p = vec![0x00];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&cols.to_le_bytes());
    p.extend_from_slice(&params.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&0u16.to_le_bytes());
    packet(1, &p)
}

fn prepare_response(id: u32, cols: &[&str], params: usize, deprecate: bool) -> Vec<u8> {
    let mut v = prepare_ok(id, cols.len() as u16, params as u16);
    let mut seq = 2;
    for _ in 0..params {
        v.extend(coldef(seq, "?"));
        seq += 1;
    }
    if params > 0 && !deprecate {
        v.extend(eof(seq, 2));
        seq += 1;
    }
    for c in cols {
        v.extend(coldef(seq, c));
        seq += 1;
    }
    if !cols.is_empty() && !deprecate {
        v.extend(eof(seq, 2));
    }
    v
}

/// A binary result set row: 0x00 header, NULL bitmap, values.
fn binary_row(seq: u8, v: u32) -> Vec<u8> {
    let mut p = vec![0x00, 0x00];
    p.extend_from_slice(&v.to_le_bytes());
    packet(seq, &p)
}

fn execute(id: u32) -> Vec<u8> {
    let mut b = id.to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 0x03, 0x00]);
    b.extend_from_slice(b"\x2a\x00\x00\x00"); // parameter value 42: never exported
    command(COM_STMT_EXECUTE, &b)
}

#[test]
fn prepared_statements_map_ids_to_text() {
    for (caps, deprecate) in [
        (Some(BASE_CAPS | CLIENT_DEPRECATE_EOF), true),
        (Some(BASE_CAPS), false),
        (None, false),
        (None, true),
    ] {
        let mut c = Conn::new();
        if let Some(caps) = caps {
            login(&mut c, caps, Some("shop"));
        }
        let ns = if caps.is_some() { "shop" } else { "-" };
        c.client(&command(
            COM_STMT_PREPARE,
            b"SELECT id FROM users WHERE age > ?",
        ));
        c.server(&prepare_response(1, &["id"], 1, deprecate));
        c.client(&execute(1));
        let mut rs = packet(1, &[1]);
        rs.extend(coldef(2, "id"));
        let mut seq = 3;
        if !deprecate {
            rs.extend(eof(seq, 2));
            seq += 1;
        }
        rs.extend(binary_row(seq, 1));
        rs.extend(binary_row(seq + 1, 2));
        rs.extend(if deprecate {
            ok_fe(seq + 2, 2)
        } else {
            eof(seq + 2, 2)
        });
        c.server(&rs);
        c.client(&execute(99)); // unknown id
        c.server(&ok(1, 0, 2));
        c.client(&command(COM_STMT_CLOSE, &1u32.to_le_bytes()));
        c.client(&execute(1)); // closed: no text any more
        c.server(&err(1, 1243, "HY000", "Unknown prepared statement handler"));
        let text = r#"summary="SELECT users" text="SELECT id FROM users WHERE age > ?""#;
        assert_eq!(
            c.lines(),
            vec![
                format!(r#"PREPARE ns="{ns}" {text} ok"#),
                format!(r#"SQL ns="{ns}" {text} ok rows=2"#),
                format!(r#"SQL ns="{ns}" ok affected=0"#),
                format!(r#"SQL ns="{ns}" error=1243/HY000"#),
            ],
            "caps {caps:?}"
        );
        assert_eq!(c.stats.unmatched_responses, 0, "caps {caps:?}");
        assert!(!format!("{:?}", c.out).contains("42"));
    }
}

#[test]
fn prepare_without_columns_unknown_eof_settles_on_next_request() {
    let mut c = Conn::new();
    c.client(&command(COM_STMT_PREPARE, b"DELETE FROM t WHERE id = ?"));
    c.server(&prepare_response(5, &[], 1, true));
    // DEPRECATE_EOF unknown: the answer might still get an EOF; it settles with the next command.
    assert!(c.out.is_empty());
    c.client(&command(COM_PING, b""));
    c.server(&ok(1, 0, 2));
    assert_eq!(
        c.lines(),
        vec![
            r#"PREPARE ns="-" summary="DELETE t" text="DELETE FROM t WHERE id = ?" ok"#,
            r#"PING ns="-" ok"#,
        ]
    );
}

#[test]
fn init_db_and_use_change_namespace() {
    let mut c = Conn::new();
    c.client(&command(COM_INIT_DB, b"shop"));
    c.server(&ok(1, 0, 2));
    c.client(&query("SELECT 1"));
    c.server(
        &[
            packet(1, &[1]),
            coldef(2, "1"),
            eof(3, 2),
            text_row(4, &["1"]),
            eof(5, 2),
        ]
        .concat(),
    );
    c.client(&query("USE `billing`"));
    c.server(&ok(1, 0, 2));
    c.client(&command(COM_INIT_DB, b"missing"));
    c.server(&err(1, 1049, "42000", "Unknown database"));
    c.client(&command(COM_PING, b""));
    c.server(&ok(1, 0, 2));
    c.client(&command(COM_QUIT, b""));
    assert_eq!(
        c.lines(),
        vec![
            r#"INIT_DB ns="-" ok"#,
            r#"SQL ns="shop" summary="SELECT" text="SELECT ?" ok rows=1"#,
            r#"SQL ns="shop" summary="USE billing" text="USE `billing`" ok affected=0"#,
            r#"INIT_DB ns="billing" error=1049/42000"#,
            r#"PING ns="billing" ok"#,
        ]
    );
}

/// Regression (R2 hostile bytes, seed `mysql_long_schema`): a `USE` naming 3000 bytes set
/// `db.namespace` to all of them, past the 256-byte cap COM_INIT_DB keeps; a COM_INIT_DB of
/// invalid UTF-8 tripled past it when made text.
#[test]
fn namespaces_stay_within_their_cap() {
    let mut c = Conn::new();
    c.client(&query(&format!("USE {}", "a".repeat(3000))));
    c.server(&ok(1, 0, 2));
    c.client(&query("SELECT 1"));
    c.server(&ok(1, 0, 2));
    c.client(&command(COM_INIT_DB, &[0xff; 300]));
    c.server(&ok(1, 0, 2));
    c.client(&query("SELECT 2"));
    c.server(&ok(1, 0, 2));
    let namespaces: Vec<String> = c
        .out
        .iter()
        .filter_map(|r| match &r.exchange {
            Exchange::Db(d) => d.namespace.as_deref().map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(namespaces.len(), 3, "{namespaces:?}");
    assert_eq!(namespaces[0], "a".repeat(MYSQL_MAX_SCHEMA_BYTES));
    for ns in &namespaces {
        assert!(ns.len() <= MYSQL_MAX_SCHEMA_BYTES, "{} bytes", ns.len());
    }
    // 0xFF is not UTF-8: U+FFFD per byte, as many as fit.
    assert_eq!(namespaces[2], "\u{fffd}".repeat(MYSQL_MAX_SCHEMA_BYTES / 3));
}

/// Regression (found by `cargo xtask fuzz`, seed `fuzz-crash-init-db-with-nul`): a COM_INIT_DB
/// of binary bytes answered OK became `db.namespace` and the span name, NUL bytes included. No
/// MySQL identifier holds NUL: the namespace is unknown instead.
#[test]
fn a_schema_holding_nul_is_no_namespace() {
    let mut c = Conn::new();
    c.client(&command(COM_INIT_DB, b"shop"));
    c.server(&ok(1, 0, 2));
    c.client(&command(COM_INIT_DB, b"\0\x08\0\0\x05\x01"));
    c.server(&ok(1, 0, 2));
    c.client(&query("SELECT 1"));
    c.server(&ok(1, 0, 2));
    let last = c.out.last().unwrap();
    let Exchange::Db(d) = &last.exchange else {
        panic!("{last:?}");
    };
    assert_eq!(d.namespace, None);
}

#[test]
fn response_before_any_request_is_unmatched() {
    let mut c = Conn::new();
    // Attached mid-response: rows and EOF of a query we never saw.
    c.server(&[text_row(4, &["x"]), text_row(5, &["y"]), eof(6, 2)].concat());
    assert!(c.out.is_empty());
    assert_eq!(c.stats.unmatched_responses, 1);
    c.client(&query("SELECT 2"));
    c.server(
        &[
            packet(1, &[1]),
            coldef(2, "2"),
            eof(3, 2),
            text_row(4, &["2"]),
            eof(5, 2),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok rows=1"#]
    );
}

#[test]
fn missing_response_is_superseded_or_expired() {
    let mut c = Conn::new();
    c.client(&query("SELECT 1"));
    // The answer was lost; the next request is answered.
    c.client(&query("SELECT 2"));
    c.server(&ok(1, 0, 2));
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok affected=0"#]
    );
    assert_eq!(c.stats.unmatched_requests, 1);
    // A request that never gets an answer expires.
    c.client(&query("SELECT 3"));
    let mut out = Vec::new();
    c.parser.expire(c.ts + 1, &mut out, &mut c.stats);
    assert!(out.is_empty());
    assert_eq!(c.stats.unmatched_requests, 2);
}

#[test]
fn continuation_packets_are_joined_without_buffering() {
    // A 16 MiB - 1 query packet, a continuation, and the OK; the capture keeps only the first
    // 4 KiB of each syscall, like the kernel cap.
    let limits = ParserLimits::default();
    let mut c = Conn::with_limits(limits);
    let mut sql = b"INSERT INTO blobs VALUES ('".to_vec();
    sql.resize(MYSQL_MAX_PACKET as usize - 1, b'a');
    let first = command(COM_QUERY, &sql);
    assert_eq!(first.len(), 4 + MYSQL_MAX_PACKET as usize);
    let mut rest = b"aaaa".to_vec();
    rest.extend_from_slice(b"'), (1)");
    let second = packet(1, &rest);
    c.client_truncated(&first, 4096);
    c.client_truncated(&second, second.len());
    assert!(c.parser.buffered_bytes() < 8192);
    // Server answers with seq 2 (after the two request packets).
    c.server(&ok(2, 2, 2));
    // A 16 MiB row in a result set: 0xFFFFFF row packet, its continuation, then EOF.
    c.client(&query("SELECT data FROM blobs"));
    let mut row = vec![0xfe];
    row.extend_from_slice(&(MYSQL_MAX_PACKET as u64 + 10).to_le_bytes());
    row.resize(MYSQL_MAX_PACKET as usize, b'z');
    let big = packet(4, &row);
    let cont = packet(5, &[b'z'; 19]);
    let mut head = [packet(1, &[1]), coldef(2, "data"), eof(3, 2)].concat();
    head.extend_from_slice(&big[..4096]);
    c.server_truncated(&[head.clone(), big[4096..].to_vec()].concat(), head.len());
    c.server(&cont);
    c.server(&eof(6, 2));
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="-" summary="INSERT blobs" ok affected=2"#,
            r#"SQL ns="-" summary="SELECT blobs" text="SELECT data FROM blobs" ok rows=1"#,
        ]
    );
    assert_eq!(c.stats.bytes_lost, 0);
    assert_eq!(c.stats.invalid, 0);
    assert!(c.parser.buffered_bytes() < 8192);
}

#[test]
fn gap_after_loss_resyncs_and_marks_the_answer() {
    let mut c = Conn::new();
    c.client(&query("SELECT a FROM t"));
    let rows: Vec<Vec<String>> = (0..20).map(|i| vec![format!("v{i}")]).collect();
    let rows: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let rows: Vec<&[&str]> = rows.iter().map(Vec::as_slice).collect();
    let (rs, _) = result_set(1, &["a"], &rows, false, 2);
    // Deliver: first 60 bytes, then lose 50 bytes (kernel drop), then the rest.
    c.server(&rs[..60]);
    c.pos[1] += 50;
    c.server(&rs[110..]);
    assert_eq!(c.stats.resyncs, 1);
    assert!(c.stats.bytes_lost >= 50);
    // The exchange still completes, but the row count is not trusted.
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT t" text="SELECT a FROM t" ok"#]
    );
    // The next exchange is clean.
    c.client(&command(COM_PING, b""));
    c.server(&ok(1, 0, 2));
    assert_eq!(c.lines().len(), 2);
    assert_eq!(c.stats.unmatched_responses, 0);
}

#[test]
fn gap_in_requests_loses_only_that_exchange() {
    let mut c = Conn::new();
    let q = query("SELECT a FROM t WHERE b = 'x'");
    // Only 10 bytes arrive, then the stream continues after a loss.
    c.client(&q[..10]);
    c.pos[0] += (q.len() - 10) as u64 + 7;
    c.server(&ok(1, 0, 2));
    c.client(&query("SELECT 2"));
    c.server(&ok(1, 0, 2));
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok affected=0"#]
    );
    assert_eq!(c.stats.unmatched_responses, 1);
    assert_eq!(c.stats.bytes_lost, 10 + (q.len() - 10) as u64 + 7);
    assert_eq!(c.stats.resyncs, 1);
}

#[test]
fn capture_truncated_request_is_still_recorded() {
    let mut c = Conn::new();
    // The kernel copied 20 of the query's bytes: the record keeps what is safe.
    let q = query("SELECT a FROM things WHERE b = 'secret'");
    c.client_truncated(&q, 24);
    c.server(&ok(1, 0, 2));
    c.client(&query("SELECT 2"));
    c.server(&ok(1, 0, 2));
    assert_eq!(
        c.lines(),
        vec![
            r#"SQL ns="-" summary="SELECT" text="SELECT a FROM" ok affected=0"#,
            r#"SQL ns="-" summary="SELECT" text="SELECT ?" ok affected=0"#,
        ]
    );
    assert_eq!(c.stats.bytes_lost, 0);
    assert_eq!(c.stats.unmatched_responses, 0);
}

#[test]
fn truncated_capture_of_a_long_query_fails_closed_inside_a_literal() {
    let limits = ParserLimits {
        max_query_text_bytes: 64,
        ..ParserLimits::default()
    };
    let mut c = Conn::with_limits(limits);
    let mut sql = String::from("SELECT * FROM users WHERE token = '");
    sql.push_str(&"s".repeat(2000));
    sql.push('\'');
    c.client(&query(&sql));
    c.server(&ok(1, 0, 2));
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT users" ok affected=0"#]
    );
    assert!(!format!("{:?}", c.out).contains("sss"));
}

#[test]
fn queue_bounds_count_drops() {
    let limits = ParserLimits {
        max_queued_frames: 4,
        ..ParserLimits::default()
    };
    let mut c = Conn::with_limits(limits);
    for i in 0..10 {
        c.client(&query(&format!("SELECT {i}")));
    }
    assert!(c.parser.buffered_bytes() == 0);
    let ConnParser::Mysql(p) = &c.parser else {
        panic!("not a MySQL parser");
    };
    assert!(p.queued_frames().0 <= 4);
    assert!(c.stats.unmatched_requests >= 5);
}

#[test]
fn server_role_mirrors_client_role() {
    let mut p = ConnParser::new(Protocol::Mysql, Role::Server, ParserLimits::default());
    let mut out = Vec::new();
    let mut st = ParseStats::default();
    let q = query("SELECT 1");
    p.on_data(
        Chunk {
            direction: Direction::Ingress,
            pos: 0,
            ts_ns: 10,
            bytes: &q,
            len: q.len() as u32,
            datagram: false,
            peer: None,
        },
        &mut out,
        &mut st,
    );
    let r = ok(1, 0, 2);
    p.on_data(
        Chunk {
            direction: Direction::Egress,
            pos: 0,
            ts_ns: 20,
            bytes: &r,
            len: r.len() as u32,
            datagram: false,
            peer: None,
        },
        &mut out,
        &mut st,
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ns, out[0].end_ns), (10, 20));
}

#[test]
fn duplicate_events_are_ignored() {
    let mut c = Conn::new();
    let q = query("SELECT 1");
    c.client(&q);
    c.pos[0] = 0;
    c.client(&q); // the same bytes again at the same position
    c.server(&ok(1, 0, 2));
    assert_eq!(c.out.len(), 1);
    assert_eq!(c.stats.unmatched_requests, 0);
}

// ---------- (d) golden ----------

/// Replays a capture from record `skip` on (a later attach), each record cut into pieces of
/// at most `piece` bytes.
fn replay(recs: &[(u8, u64, Vec<u8>)], skip: usize, piece: usize) -> (Vec<String>, ParseStats) {
    let mut c = Conn::new();
    for (dir, ts, bytes) in recs.iter().skip(skip) {
        let (d, i) = if *dir == b'C' {
            (Direction::Egress, 0)
        } else {
            (Direction::Ingress, 1)
        };
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
    c.parser.expire(u64::MAX, &mut c.out, &mut c.stats);
    (c.out.iter().map(render).collect(), c.stats)
}

fn check_golden(golden: &std::path::Path, text: &str) {
    testkit::check_golden(
        golden,
        text,
        &["hunter2", "ann-secret", "caching_sha2", "mysql_native"],
    );
}

#[test]
fn golden_captures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol/mysql/testdata");
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
        let (lines, stats) = replay(&recs, 0, usize::MAX);
        check_golden(&path.with_extension("golden"), &golden_text(&lines, &stats));
        // Any chunking gives the same records.
        for piece in [1, 3, 7, 64] {
            let (again, _) = replay(&recs, 0, piece);
            assert_eq!(again, lines, "{} in pieces of {piece}", path.display());
        }
        // Attaching after the handshake (capabilities unknown, no namespace).
        let (lines, stats) = replay(&recs, 8, usize::MAX);
        check_golden(
            &path.with_extension("attach.golden"),
            &golden_text(&lines, &stats),
        );
    }
    assert!(seen > 0, "no captures in {}", dir.display());
}

// ---------- properties ----------

/// A scripted session: (client bytes, server bytes) per exchange.
fn session() -> Vec<(Vec<u8>, Vec<u8>)> {
    let (rs, _) = result_set(1, &["id", "name"], &[&["1", "a"], &["2", "b"]], false, 2);
    let (multi, seq) = result_set(1, &["x"], &[&["1"]], false, 2 | SERVER_MORE_RESULTS_EXISTS);
    let multi = [multi, ok(seq, 1, 2)].concat();
    vec![
        (query("SELECT id, name FROM users WHERE name = 'x'"), rs),
        (query("UPDATE t SET a = 1"), ok(1, 3, 2)),
        (query("BAD"), err(1, 1064, "42000", "syntax")),
        (
            command(COM_STMT_PREPARE, b"SELECT ? FROM t"),
            prepare_response(3, &["c"], 1, false),
        ),
        (
            execute(3),
            [
                packet(1, &[1]),
                coldef(2, "c"),
                eof(3, 2),
                binary_row(4, 9),
                eof(5, 2),
            ]
            .concat(),
        ),
        (query("SELECT 1; UPDATE u SET b = 2"), multi),
        (command(COM_PING, b""), ok(1, 0, 2)),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        crate::protocol::chaos::drive(Protocol::Mysql, &data);
    }

    #[test]
    fn arbitrary_bytes_after_a_handshake_never_panic(
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        cuts in proptest::collection::vec(0usize..400, 0..10),
    ) {
        let mut c = Conn::new();
        login(&mut c, BASE_CAPS | CLIENT_DEPRECATE_EOF | CLIENT_QUERY_ATTRIBUTES, Some("db"));
        for chunk in split_at_points(&garbage, &cuts) {
            c.server(chunk);
            c.client(chunk);
        }
        let mut out = Vec::new();
        c.parser.expire(u64::MAX, &mut out, &mut c.stats);
    }

    #[test]
    fn any_split_gives_the_same_records(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let whole = {
            let mut c = Conn::new();
            for (req, resp) in session() {
                c.client(&req);
                c.server(&resp);
            }
            c.lines()
        };
        let mut c = Conn::new();
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
}

#[test]
fn large_result_set_in_one_read_is_not_dropped() {
    let mut c = Conn::new();
    c.client(&query("SELECT n FROM numbers"));
    let mut rs = [packet(1, &[1]), coldef(2, "n"), eof(3, 2)].concat();
    let mut seq: u8 = 4;
    for i in 0..5000 {
        rs.extend(text_row(seq, &[&i.to_string()]));
        seq = seq.wrapping_add(1);
    }
    rs.extend(eof(seq, 2));
    assert!(rs.len() < ParserLimits::default().max_buffer_bytes);
    c.server(&rs);
    assert_eq!(
        c.lines(),
        vec![r#"SQL ns="-" summary="SELECT numbers" text="SELECT n FROM numbers" ok rows=5000"#]
    );
    assert_eq!(c.stats.unmatched_responses, 0);
}

// ---------- (c) stitcher fed frames ----------

fn timed(start: u64, end: u64, frame: MysqlFrame) -> crate::protocol::Timed<MysqlFrame> {
    crate::protocol::Timed::new(start, end, frame)
}

fn cmd_frame(code: u8, arg: MysqlArg) -> MysqlFrame {
    MysqlFrame::Command(MysqlCommand {
        code,
        arg,
        continued: false,
    })
}

fn sql_frame(code: u8, sql: &str) -> MysqlFrame {
    cmd_frame(
        code,
        MysqlArg::Text {
            sql: Some(sql.as_bytes().to_vec()),
            truncated: false,
        },
    )
}

fn ok_frame(seq: u8) -> MysqlFrame {
    MysqlFrame::Packet(MysqlPacket::new(seq, 7, &[0, 1, 0, 2, 0, 0, 0]))
}

/// Runs the stitcher over queued frames; returns the records' golden lines and times.
fn stitch_frames(
    reqs: Vec<crate::protocol::Timed<MysqlFrame>>,
    resps: Vec<crate::protocol::Timed<MysqlFrame>>,
) -> (Vec<(String, u64, u64)>, ParseStats) {
    let mut s = <MysqlStitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs = reqs.into_iter().collect();
    let mut resps = resps.into_iter().collect();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    let lines = out
        .iter()
        .map(|r| (render(r), r.start_ns, r.end_ns))
        .collect();
    (lines, stats)
}

#[test]
fn stitcher_pairs_commands_in_order_by_time() {
    let (recs, stats) = stitch_frames(
        vec![
            timed(10, 10, sql_frame(COM_QUERY, "UPDATE t SET a = 1")),
            timed(30, 30, cmd_frame(COM_PING, MysqlArg::None)),
        ],
        vec![timed(20, 21, ok_frame(1)), timed(40, 41, ok_frame(1))],
    );
    assert_eq!(
        recs,
        vec![
            (
                r#"SQL ns="-" summary="UPDATE t" text="UPDATE t SET a = ?" ok affected=1"#.into(),
                10,
                21
            ),
            (r#"PING ns="-" ok"#.into(), 30, 41),
        ]
    );
    assert_eq!(stats.unmatched_requests + stats.unmatched_responses, 0);
}

#[test]
fn stitcher_a_missing_response_does_not_steal_the_next_one() {
    // The first query's answer was lost: the OK stamped after the second query answers it.
    let (recs, stats) = stitch_frames(
        vec![
            timed(10, 10, sql_frame(COM_QUERY, "SELECT 1")),
            timed(30, 30, sql_frame(COM_QUERY, "DELETE FROM t")),
        ],
        vec![timed(35, 36, ok_frame(1))],
    );
    assert_eq!(recs.len(), 1);
    assert!(recs[0].0.contains("DELETE t"), "{recs:?}");
    assert_eq!((recs[0].1, recs[0].2), (30, 36));
    assert_eq!(stats.unmatched_requests, 1);
}

#[test]
fn stitcher_a_response_before_any_request_is_unmatched() {
    let (recs, stats) = stitch_frames(
        vec![timed(50, 50, cmd_frame(COM_PING, MysqlArg::None))],
        vec![timed(20, 21, ok_frame(1)), timed(60, 61, ok_frame(1))],
    );
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].1, recs[0].2), (50, 61));
    assert_eq!(stats.unmatched_responses, 1);
}

#[test]
fn stitcher_keys_prepared_statements_by_id() {
    let prepare_ok = MysqlFrame::Packet(MysqlPacket::new(
        1,
        12,
        &[0x00, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ));
    let (recs, _) = stitch_frames(
        vec![
            timed(
                10,
                10,
                sql_frame(COM_STMT_PREPARE, "SELECT a FROM t WHERE b = ?"),
            ),
            timed(30, 30, cmd_frame(COM_STMT_EXECUTE, MysqlArg::Statement(7))),
            timed(50, 50, cmd_frame(COM_STMT_EXECUTE, MysqlArg::Statement(8))),
        ],
        vec![
            timed(20, 20, prepare_ok),
            timed(40, 40, ok_frame(1)),
            timed(60, 60, ok_frame(1)),
        ],
    );
    let names: Vec<&str> = recs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        vec![
            r#"PREPARE ns="-" summary="SELECT t" text="SELECT a FROM t WHERE b = ?" ok"#,
            r#"SQL ns="-" summary="SELECT t" text="SELECT a FROM t WHERE b = ?" ok affected=1"#,
            r#"SQL ns="-" ok affected=1"#,
        ],
        "statement 8 was never prepared: no text, never another statement's"
    );
}

#[test]
fn stitcher_marks_a_response_whose_end_was_lost() {
    let mut last = timed(20, 25, ok_frame(1));
    last.complete = false;
    let mut s = <MysqlStitcher as Stitcher>::new(ParserLimits::default());
    let mut reqs = vec![timed(10, 10, sql_frame(COM_QUERY, "SELECT 1"))]
        .into_iter()
        .collect();
    let mut resps = vec![last].into_iter().collect();
    let mut out = Vec::new();
    s.stitch(
        &mut reqs,
        &mut resps,
        &mut (),
        &mut out,
        &mut ParseStats::default(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].incomplete, Some(crate::record::Incomplete::EndLost));
}
