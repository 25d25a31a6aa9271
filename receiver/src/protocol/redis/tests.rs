//! Redis framer, stitcher and golden tests (CONVENTIONS §8).

use crate::protocol::testkit::{self, capture_records, golden_text, split_at_points};
use std::collections::VecDeque;
use std::fmt::Write as _;

use super::*;
use crate::model::{Direction, Protocol, Role};
use crate::protocol::{
    Chunk, ConnParser, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher, Timed,
};
use crate::record::{DbOutcome, Exchange, Incomplete, Record};

/// The password used in every test and capture; must never show up in a record.
const CANARY: &str = "hunter2-redis-canary";

// ---------- wire builders ----------

/// A command as a RESP array of bulk strings.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend(format!("${}\r\n", a.len()).bytes());
        v.extend(a.bytes());
        v.extend(b"\r\n");
    }
    v
}

fn bulk(s: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", s.len()).into_bytes();
    v.extend_from_slice(s);
    v.extend(b"\r\n");
    v
}

fn array(n: usize, elements: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!("*{n}\r\n").into_bytes();
    for e in elements {
        v.extend_from_slice(e);
    }
    v
}

fn push(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!(">{}\r\n", elements.len()).into_bytes();
    for e in elements {
        v.extend_from_slice(e);
    }
    v
}

fn confirmation(kind: &str, channel: &str, count: i64, resp3: bool) -> Vec<u8> {
    let parts = [
        bulk(kind.as_bytes()),
        bulk(channel.as_bytes()),
        format!(":{count}\r\n").into_bytes(),
    ];
    if resp3 {
        push(&parts)
    } else {
        array(3, &parts)
    }
}

fn message(channel: &str, payload: &str, resp3: bool) -> Vec<u8> {
    let parts = [
        bulk(b"message"),
        bulk(channel.as_bytes()),
        bulk(payload.as_bytes()),
    ];
    if resp3 {
        push(&parts)
    } else {
        array(3, &parts)
    }
}

// ---------- harness ----------

/// One traced connection; by default the client side, seen from its start.
pub(super) struct Conn {
    pub parser: ConnParser,
    role: Role,
    pub ts: u64,
    pub pos: [u64; 2],
    pub out: Vec<Record>,
    pub stats: ParseStats,
}

impl Conn {
    fn new() -> Conn {
        Conn::with(Role::Client, true, ParserLimits::default())
    }

    /// A connection that predates the receiver (no `seen_from_start`).
    fn attached() -> Conn {
        Conn::with(Role::Client, false, ParserLimits::default())
    }

    fn with(role: Role, from_start: bool, limits: ParserLimits) -> Conn {
        let mut parser = ConnParser::new(Protocol::Redis, role, limits);
        if from_start {
            parser.seen_from_start();
        }
        Conn {
            parser,
            role,
            ts: 1_000,
            pos: [0, 0],
            out: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    /// Feeds bytes that travel from client to server (`true`) or back, as seen by our side.
    fn feed(&mut self, to_server: bool, bytes: &[u8], len: u32) {
        self.ts += 1_000;
        let egress = to_server == (self.role == Role::Client);
        let dir = if egress {
            Direction::Egress
        } else {
            Direction::Ingress
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

    fn client(&mut self, bytes: &[u8]) {
        self.feed(true, bytes, bytes.len() as u32);
    }

    fn server(&mut self, bytes: &[u8]) {
        self.feed(false, bytes, bytes.len() as u32);
    }

    /// Server bytes of which the kernel copied only the first `captured`.
    fn server_truncated(&mut self, bytes: &[u8], captured: usize) {
        self.feed(false, &bytes[..captured], bytes.len() as u32);
    }

    /// Server bytes lost entirely (a gap in the stream).
    fn server_lost(&mut self, n: usize) {
        self.ts += 1_000;
        self.pos[if self.role == Role::Client { 1 } else { 0 }] += n as u64;
    }

    fn client_lost(&mut self, n: usize) {
        self.ts += 1_000;
        self.pos[if self.role == Role::Client { 0 } else { 1 }] += n as u64;
    }

    fn exchange(&mut self, req: &[u8], resp: &[u8]) {
        self.client(req);
        self.server(resp);
    }

    fn lines(&self) -> Vec<String> {
        self.out.iter().map(render).collect()
    }

    fn expire_all(&mut self) {
        self.parser.close(&mut self.out, &mut self.stats);
    }
}

/// One record as a golden line.
pub(super) fn render(r: &Record) -> String {
    let Exchange::Db(d) = &r.exchange else {
        panic!("not a database record: {r:?}");
    };
    let mut s = format!(
        "{} ns={}",
        d.operation.as_deref().unwrap_or("-"),
        d.namespace.as_deref().unwrap_or("-")
    );
    if let Some(t) = &d.query_text {
        let _ = write!(s, " text={t:?}");
    }
    if let Some(n) = d.batch_size {
        let _ = write!(s, " batch={n}");
    }
    match &d.outcome {
        DbOutcome::Success => s.push_str(" ok"),
        DbOutcome::Error { code, .. } => {
            let _ = write!(s, " error={code:?}");
        }
    }
    if let Some(i) = r.incomplete {
        let _ = write!(s, " incomplete={}", i.as_str());
    }
    s
}

fn state() -> RedisFramingState {
    RedisFramingState::default()
}

/// A state that has seen commands, so replies are framed (not discarded as mid-stream).
fn reply_state() -> RedisFramingState {
    RedisFramingState {
        requests: 1,
        lost: None,
        ..RedisFramingState::default()
    }
}

fn parse_req(bytes: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
    RedisFramer::default().parse(MessageKind::Request, bytes, st)
}

fn parse_resp(bytes: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
    RedisFramer::default().parse(MessageKind::Response, bytes, st)
}

fn command(name: Option<&'static str>, args: u64, effect: Effect, seq: u64) -> RedisFrame {
    RedisFrame::Command(RedisCommand {
        name,
        args,
        effect,
        seq,
        after_loss: false,
    })
}

// ---------- (a) bytes → frames ----------

#[test]
fn command_table() {
    use Effect as E;
    let cases: Vec<(Vec<u8>, Option<&str>, u64, Effect)> = vec![
        (cmd(&["GET", "k"]), Some("GET"), 1, E::None),
        (cmd(&["set", "k", "v"]), Some("SET"), 2, E::None),
        (
            cmd(&["HMSET", "h", "f1", "v1", "f2", "v2"]),
            Some("HMSET"),
            5,
            E::None,
        ),
        (cmd(&["PING"]), Some("PING"), 0, E::None),
        (
            cmd(&["CLIENT", "SETINFO", "LIB-NAME", "x"]),
            Some("CLIENT SETINFO"),
            2,
            E::None,
        ),
        (
            cmd(&["config", "get", "save"]),
            Some("CONFIG GET"),
            1,
            E::None,
        ),
        (
            cmd(&["SCRIPT", "LOAD", "return 1"]),
            Some("SCRIPT LOAD"),
            1,
            E::None,
        ),
        // An unknown subcommand is an argument of the container.
        (cmd(&["CLIENT", "NOPE", "x"]), Some("CLIENT"), 2, E::None),
        (cmd(&["FOO", "bar"]), None, 1, E::None),
        (cmd(&["SELECT", "2"]), Some("SELECT"), 1, E::Select(Some(2))),
        (cmd(&["SELECT", "x"]), Some("SELECT"), 1, E::Select(None)),
        (cmd(&["SELECT", "-1"]), Some("SELECT"), 1, E::Select(None)),
        (
            cmd(&["HELLO", "3", "AUTH", "default", CANARY]),
            Some("HELLO"),
            4,
            E::Hello(Some(3)),
        ),
        (cmd(&["AUTH", CANARY]), Some("AUTH"), 1, E::None),
        (
            cmd(&["SUBSCRIBE", "a", "b"]),
            Some("SUBSCRIBE"),
            2,
            E::Subscribe(SubKind::Channel, 2),
        ),
        (
            cmd(&["PUNSUBSCRIBE"]),
            Some("PUNSUBSCRIBE"),
            0,
            E::Unsubscribe(SubKind::Pattern, 0),
        ),
        (
            cmd(&["SSUBSCRIBE", "s"]),
            Some("SSUBSCRIBE"),
            1,
            E::Subscribe(SubKind::Shard, 1),
        ),
        (cmd(&["MULTI"]), Some("MULTI"), 0, E::Multi),
        (cmd(&["EXEC"]), Some("EXEC"), 0, E::Exec),
        (cmd(&["DISCARD"]), Some("DISCARD"), 0, E::Discard),
        (cmd(&["RESET"]), Some("RESET"), 0, E::Reset),
        (cmd(&["MONITOR"]), Some("MONITOR"), 0, E::Monitor),
        (
            cmd(&["CLIENT", "REPLY", "off"]),
            Some("CLIENT REPLY"),
            1,
            E::ClientReply(ReplyMode::Off),
        ),
        (
            cmd(&["CLIENT", "REPLY", "SKIP"]),
            Some("CLIENT REPLY"),
            1,
            E::ClientReply(ReplyMode::Skip),
        ),
        (cmd(&["CLIENT", "REPLY"]), Some("CLIENT REPLY"), 0, E::None),
        // Inline commands.
        (b"PING\r\n".to_vec(), Some("PING"), 0, E::None),
        (b"set k v\n".to_vec(), Some("SET"), 2, E::None),
        (
            b"SET k \"hello world\"\r\n".to_vec(),
            Some("SET"),
            2,
            E::None,
        ),
        (b"set 'a b' 'it\\'s'\r\n".to_vec(), Some("SET"), 2, E::None),
        (
            b"  select   5  \r\n".to_vec(),
            Some("SELECT"),
            1,
            E::Select(Some(5)),
        ),
        (
            b"client reply on\r\n".to_vec(),
            Some("CLIENT REPLY"),
            1,
            E::ClientReply(ReplyMode::On),
        ),
        (b"NOSUCH a\r\n".to_vec(), None, 1, E::None),
    ];
    for (bytes, name, args, effect) in cases {
        let mut st = state();
        match parse_req(&bytes, &mut st) {
            Parse::Frame {
                frame: RedisFrame::Command(c),
                len,
            } => {
                assert_eq!(len, bytes.len(), "{:?}", String::from_utf8_lossy(&bytes));
                assert_eq!(
                    (c.name, c.args, c.effect, c.seq, c.after_loss),
                    (name, args, effect, 1, false),
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
                assert_eq!(st.req_left, 0);
                assert!(!format!("{c:?}").contains(CANARY));
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&bytes)),
        }
    }
}

#[test]
fn commands_without_a_reply_are_skipped() {
    for bytes in [&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"\n", b"   \r\n"] {
        let mut st = state();
        assert_eq!(
            parse_req(bytes, &mut st),
            Parse::Skip { len: bytes.len() },
            "{bytes:?}"
        );
        assert_eq!(st.requests, 0);
    }
}

/// Parses one reply from a fresh state; asserts it is whole.
fn reply(bytes: &[u8]) -> RedisReply {
    let mut st = reply_state();
    match parse_resp(bytes, &mut st) {
        Parse::Frame {
            frame: RedisFrame::Reply(r),
            len,
        } => {
            assert_eq!(len, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
            assert!(st.stack.is_empty() && st.reply.is_none());
            r
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn reply_table() {
    let r = |shape, word, error: Option<&str>| RedisReply {
        shape,
        word,
        error: error.map(Into::into),
        ..RedisReply::default()
    };
    use Shape as S;
    use Word as W;
    let cases: Vec<(&[u8], RedisReply)> = vec![
        (b"+OK\r\n", r(S::Simple, W::Ok, None)),
        (b"+QUEUED\r\n", r(S::Simple, W::Queued, None)),
        (b"+PONG\r\n", r(S::Simple, W::Pong, None)),
        (b"+RESET\r\n", r(S::Simple, W::Reset, None)),
        (b"+hello\r\n", r(S::Simple, W::Other, None)),
        (
            b"+1700000000.123456 [0 127.0.0.1:1] \"GET\" \"k\"\r\n",
            r(S::Simple, W::MonitorLine, None),
        ),
        (
            b"-ERR unknown command 'FOO'\r\n",
            r(S::Error, W::Other, Some("ERR")),
        ),
        (
            b"-WRONGTYPE Operation against a key\r\n",
            r(S::Error, W::Other, Some("WRONGTYPE")),
        ),
        (b"-NOAUTH Authentication required.\r\n", r(S::Error, W::Other, Some("NOAUTH"))),
        (b"-EXECABORT Transaction discarded\r\n", r(S::Error, W::Other, Some("EXECABORT"))),
        // No conventional prefix: the code is empty (exported as `_OTHER`), never the text.
        (b"-oops something secret\r\n", r(S::Error, W::Other, Some(""))),
        (b"-\r\n", r(S::Error, W::Other, Some(""))),
        (b":42\r\n", r(S::Integer, W::Other, None)),
        (b":-7\r\n", r(S::Integer, W::Other, None)),
        (b"$5\r\nhello\r\n", r(S::Bulk, W::Other, None)),
        (b"$0\r\n\r\n", r(S::Bulk, W::Other, None)),
        (b"$-1\r\n", r(S::Null, W::Other, None)),
        (b"*-1\r\n", r(S::Null, W::Other, None)),
        (b"*0\r\n", r(S::Array, W::Other, None)),
        (b"_\r\n", r(S::Null, W::Other, None)),
        (b"#t\r\n", r(S::Scalar, W::Other, None)),
        (b",3.14\r\n", r(S::Scalar, W::Other, None)),
        (b"(3492890328409238509324850943850943825024385\r\n", r(S::Scalar, W::Other, None)),
        (b"=15\r\ntxt:Some string\r\n", r(S::Bulk, W::Other, None)),
        (b"!21\r\nSYNTAX invalid syntax\r\n", r(S::Error, W::Other, Some("SYNTAX"))),
        (b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", r(S::Map, W::Other, None)),
        (b"~2\r\n:1\r\n:2\r\n", RedisReply { shape: S::Set, last_int: Some(2), ..RedisReply::default() }),
        // A RESP3 attribute annotates the reply after it.
        (
            b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.05\r\n*2\r\n:2039123\r\n:9543892\r\n",
            RedisReply { shape: S::Array, last_int: Some(9543892), ..RedisReply::default() },
        ),
        // ... also inside an aggregate, before an element.
        (
            b"*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nx\r\n:5\r\n",
            RedisReply { shape: S::Array, last_int: Some(5), ..RedisReply::default() },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(reply(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
    }
    // Aggregates: first element's word, first inner error, last integer.
    let exec = reply(b"*3\r\n+OK\r\n-ERR value is not an integer\r\n:4\r\n");
    assert_eq!(
        (exec.shape, exec.inner_error.as_deref(), exec.last_int),
        (S::Array, Some("ERR"), Some(4))
    );
    let sub = reply(&confirmation("subscribe", "ch", 2, false));
    assert_eq!(
        (sub.shape, sub.word, sub.last_int),
        (S::Array, W::Subscribe(SubKind::Channel), Some(2))
    );
    let sub = reply(&confirmation("punsubscribe", "p*", 0, true));
    assert_eq!(
        (sub.shape, sub.word, sub.last_int),
        (S::Push, W::Unsubscribe(SubKind::Pattern), Some(0))
    );
    let msg = reply(&message("ch", "secret-payload", true));
    assert_eq!((msg.shape, msg.word), (S::Push, W::Message));
    assert!(!format!("{msg:?}").contains("secret"));
    let pong = reply(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(pong.word, W::Pong);
    // Nested: only direct elements count.
    let nested = reply(b"*2\r\n*2\r\n-ERR deep\r\n:9\r\n:1\r\n");
    assert_eq!((nested.inner_error, nested.last_int), (None, Some(1)));
}

// ---------- (b) prefixes and garbage ----------

fn valid_commands() -> Vec<Vec<u8>> {
    vec![
        cmd(&["SET", "key", "value"]),
        cmd(&["CLIENT", "REPLY", "ON"]),
        cmd(&["SELECT", "12"]),
        cmd(&["HELLO", "3", "AUTH", "default", CANARY]),
        b"GET key\r\n".to_vec(),
        b"PING\n".to_vec(),
    ]
}

fn valid_replies() -> Vec<Vec<u8>> {
    vec![
        b"+OK\r\n".to_vec(),
        b"-ERR nope\r\n".to_vec(),
        b":123\r\n".to_vec(),
        b"$5\r\nhello\r\n".to_vec(),
        b"$-1\r\n".to_vec(),
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n".to_vec(),
        b"%1\r\n+k\r\n#f\r\n".to_vec(),
        b"|1\r\n+a\r\n+b\r\n,1.5\r\n".to_vec(),
        b"!10\r\nERR broken\r\n".to_vec(),
        confirmation("subscribe", "c", 1, true),
    ]
}

#[test]
fn every_prefix_of_a_command_is_incomplete() {
    for c in valid_commands() {
        for n in 0..c.len() {
            let mut st = state();
            let got = parse_req(&c[..n], &mut st);
            // A command whose first elements are read is emitted at once; the rest follows.
            let early = matches!(got, Parse::Frame { .. }) && st.req_left > 0;
            assert!(
                got == Parse::Incomplete || early,
                "{:?} cut at {n}: {got:?}",
                String::from_utf8_lossy(&c)
            );
        }
    }
}

#[test]
fn every_prefix_of_a_reply_is_incomplete_or_a_partial_that_completes() {
    for r in valid_replies() {
        let whole = reply(&r);
        for n in 0..r.len() {
            let mut st = reply_state();
            match parse_resp(&r[..n], &mut st) {
                Parse::Incomplete => {}
                // An aggregate is consumed as it arrives: the rest completes it.
                Parse::Frame {
                    frame: RedisFrame::Partial { .. },
                    len,
                } => {
                    assert!(len <= n);
                    match parse_resp(&r[len..], &mut st) {
                        Parse::Frame {
                            frame: RedisFrame::Reply(got),
                            len: rest,
                        } => {
                            assert_eq!(len + rest, r.len());
                            assert_eq!(got, whole);
                        }
                        other => panic!("{r:?} resumed at {len}: {other:?}"),
                    }
                }
                other => panic!("{:?} cut at {n}: {other:?}", String::from_utf8_lossy(&r)),
            }
        }
    }
}

#[test]
fn garbage_is_invalid() {
    for g in [
        &b"\x00\x01\x02"[..],
        b"\xff\xfe",
        b"*x\r\n",
        b"*1\r\n:5\r\n",
        b"*2\r\n$3\r\nabcd\r\n",
    ] {
        assert_eq!(parse_req(g, &mut state()), Parse::Invalid, "{g:?}");
    }
    for g in [
        &b"?\r\n"[..],
        b"hello\r\n",
        b":12a\r\n",
        b"$3\r\nabcd\r\n",
        b"$-2\r\n",
        b"*-5\r\n",
        b"$?\r\n;4\r\nHell\r\n",
        b"_x\r\n",
        b"+a\rb\r\n",
    ] {
        assert_eq!(parse_resp(g, &mut reply_state()), Parse::Invalid, "{g:?}");
    }
}

#[test]
fn command_resync_after_garbage_lands_on_the_next_command() {
    let framer = RedisFramer::default();
    let st = state();
    let mut buf = b"\x00\x17garbage$3\r\nxyz\r\n*1\r\n:1\r\n".to_vec();
    let at = buf.len();
    buf.extend(cmd(&["GET", "k"]));
    assert_eq!(
        framer.find_boundary(MessageKind::Request, &buf, 1, &st),
        Some(at)
    );
    // Inline commands too, at a line start only, and only known names.
    let buf = b"xx PING\r\nnotacommand x\r\nPING\r\n";
    assert_eq!(
        framer.find_boundary(MessageKind::Request, buf, 1, &st),
        Some(24)
    );
    assert_eq!(
        framer.find_boundary(MessageKind::Request, b"\x01\x02", 0, &st),
        None
    );
    // The next command is flagged: commands may have been lost.
    let mut st = state();
    let _ = framer.find_boundary(MessageKind::Request, b"*1\r\n", 0, &st);
    match parse_req(&cmd(&["PING"]), &mut st) {
        Parse::Frame {
            frame: RedisFrame::Command(c),
            ..
        } => assert!(c.after_loss),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reply_garbage_is_dropped_until_a_reply_after_the_next_command() {
    let mut c = Conn::new();
    c.exchange(&cmd(&["GET", "a"]), b"$1\r\nx\r\n");
    c.client(&cmd(&["GET", "b"]));
    c.server(b"?garbage that looks like +OK\r\n:1\r\n");
    c.server(b"+OK\r\n");
    // The next command's reply is framed again.
    c.exchange(&cmd(&["GET", "c"]), b"$1\r\nz\r\n");
    c.expire_all();
    assert_eq!(
        c.lines(),
        vec![r#"GET ns=0 text="GET ?" ok"#, r#"GET ns=0 text="GET ?" ok"#,]
    );
    assert_eq!(c.stats.invalid, 1);
    assert_eq!(
        c.stats.unmatched_requests, 1,
        "GET b's reply was in the garbage"
    );
}

// ---------- (c) stitcher fed frames ----------

fn timed(start: u64, end: u64, frame: RedisFrame) -> Timed<RedisFrame> {
    Timed::new(start, end, frame)
}

fn req(seq: u64, name: &'static str, args: u64, effect: Effect) -> RedisFrame {
    command(Some(name), args, effect, seq)
}

fn rep(shape: Shape, word: Word) -> RedisFrame {
    RedisFrame::Reply(RedisReply {
        shape,
        word,
        ..RedisReply::default()
    })
}

fn ok() -> RedisFrame {
    rep(Shape::Simple, Word::Ok)
}

fn queued() -> RedisFrame {
    rep(Shape::Simple, Word::Queued)
}

fn err(code: &str) -> RedisFrame {
    RedisFrame::Reply(RedisReply {
        shape: Shape::Error,
        error: Some(code.into()),
        ..RedisReply::default()
    })
}

fn conf(word: Word, count: i64, shape: Shape) -> RedisFrame {
    RedisFrame::Reply(RedisReply {
        shape,
        word,
        last_int: Some(count),
        ..RedisReply::default()
    })
}

struct Stitched {
    lines: Vec<String>,
    times: Vec<(u64, u64)>,
    stats: ParseStats,
}

/// Runs the stitcher over queued frames, then closes; `expire_at` runs an expiry first.
fn stitch_frames(
    from_start: bool,
    reqs: Vec<Timed<RedisFrame>>,
    resps: Vec<Timed<RedisFrame>>,
    expire_at: Option<u64>,
) -> Stitched {
    let mut s = RedisStitcher::new(ParserLimits::default());
    if from_start {
        s.seen_from_start();
    }
    let mut reqs: VecDeque<_> = reqs.into();
    let mut resps: VecDeque<_> = resps.into();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    if let Some(deadline) = expire_at {
        // Only the requests arrived so far; replies come after the expiry.
        let mut later = std::mem::take(&mut resps);
        s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
        s.expire(&mut reqs, &mut resps, deadline, &mut out, &mut stats);
        resps.append(&mut later);
    }
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    s.expire(&mut reqs, &mut resps, u64::MAX, &mut out, &mut stats);
    Stitched {
        lines: out.iter().map(render).collect(),
        times: out.iter().map(|r| (r.start_ns, r.end_ns)).collect(),
        stats,
    }
}

#[test]
fn stitcher_pairs_pipelined_commands_in_order() {
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "SET", 2, Effect::None)),
            timed(10, 10, req(2, "GET", 1, Effect::None)),
            timed(10, 10, req(3, "LPUSH", 2, Effect::None)),
        ],
        vec![
            timed(20, 20, ok()),
            timed(20, 21, rep(Shape::Bulk, Word::Other)),
            timed(21, 22, err("WRONGTYPE")),
        ],
        None,
    );
    assert_eq!(
        s.lines,
        vec![
            r#"SET ns=0 text="SET ? ?" ok"#,
            r#"GET ns=0 text="GET ?" ok"#,
            r#"LPUSH ns=0 text="LPUSH ? ?" error="WRONGTYPE""#,
        ]
    );
    assert_eq!(s.times, vec![(10, 20), (10, 21), (10, 22)]);
    assert_eq!(s.stats.records, 3);
}

#[test]
fn stitcher_a_reply_that_started_before_its_command_is_not_its_reply() {
    let s = stitch_frames(
        true,
        vec![timed(10, 10, req(1, "GET", 1, Effect::None))],
        vec![
            timed(5, 5, ok()),
            timed(20, 20, rep(Shape::Bulk, Word::Other)),
        ],
        None,
    );
    // The stray reply answered a command we never saw (a SELECT?): the namespace is unknown.
    assert_eq!(s.lines, vec![r#"GET ns=- text="GET ?" ok"#]);
    assert_eq!(s.times, vec![(10, 20)]);
    assert_eq!(s.stats.unmatched_responses, 1);
}

#[test]
fn stitcher_an_overdue_reply_is_owed_so_later_pairs_stay_aligned() {
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "GET", 1, Effect::None)),
            timed(11, 11, req(2, "SET", 2, Effect::None)),
        ],
        vec![
            timed(100, 100, rep(Shape::Bulk, Word::Other)),
            timed(101, 101, ok()),
        ],
        Some(50),
    );
    // Both were given up at 50; their replies, when they came, were dropped, not shifted.
    assert!(s.lines.is_empty(), "{:?}", s.lines);
    assert_eq!(s.stats.unmatched_requests, 2);
    assert_eq!(s.stats.unmatched_responses, 0);

    // A blocking command is not given up by the timeout.
    let s = stitch_frames(
        true,
        vec![timed(10, 10, req(1, "BLPOP", 2, Effect::None))],
        vec![timed(100, 100, rep(Shape::Array, Word::Other))],
        Some(50),
    );
    assert_eq!(s.lines, vec![r#"BLPOP ns=0 text="BLPOP ? ?" ok"#]);
    assert_eq!(s.times, vec![(10, 100)]);
}

#[test]
fn stitcher_gives_up_commands_before_a_reply_marked_after_loss() {
    let marked = RedisFrame::Reply(RedisReply {
        shape: Shape::Simple,
        word: Word::Pong,
        answers: Some(3),
        ..RedisReply::default()
    });
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "LRANGE", 3, Effect::None)),
            timed(30, 30, req(2, "SELECT", 1, Effect::Select(Some(4)))),
            timed(40, 40, req(3, "PING", 0, Effect::None)),
            timed(50, 50, req(4, "GET", 1, Effect::None)),
        ],
        vec![
            timed(20, 25, RedisFrame::Partial { answers: None }),
            timed(41, 42, marked),
            timed(51, 52, rep(Shape::Bulk, Word::Other)),
        ],
        None,
    );
    // LRANGE's reply had begun: a record ending at its last byte seen, marked; SELECT's
    // outcome is unknown, so is the namespace from then on.
    assert_eq!(
        s.lines,
        vec![
            r#"LRANGE ns=0 text="LRANGE ? ? ?" ok incomplete=response_end_lost"#,
            r#"PING ns=- text="PING" ok"#,
            r#"GET ns=- text="GET ?" ok"#,
        ]
    );
    assert_eq!(s.times[0], (10, 25));
    assert_eq!(s.stats.unmatched_requests, 1);
}

#[test]
fn stitcher_drops_pushes_and_published_messages() {
    let resp3_msg = rep(Shape::Push, Word::Message);
    let resp2_msg = rep(Shape::Array, Word::Message);
    // RESP3: pushes anywhere, subscribe confirmations as pushes.
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "HELLO", 1, Effect::Hello(Some(3)))),
            timed(
                20,
                20,
                req(2, "SUBSCRIBE", 2, Effect::Subscribe(SubKind::Channel, 2)),
            ),
            timed(30, 30, req(3, "GET", 1, Effect::None)),
        ],
        vec![
            timed(11, 11, rep(Shape::Map, Word::Other)),
            timed(
                21,
                21,
                conf(Word::Subscribe(SubKind::Channel), 1, Shape::Push),
            ),
            timed(22, 22, resp3_msg.clone()),
            timed(
                23,
                23,
                conf(Word::Subscribe(SubKind::Channel), 2, Shape::Push),
            ),
            timed(31, 31, resp3_msg.clone()),
            timed(32, 32, rep(Shape::Bulk, Word::Other)),
            timed(33, 33, resp3_msg),
        ],
        None,
    );
    assert_eq!(
        s.lines,
        vec![
            r#"HELLO ns=0 text="HELLO ?" ok"#,
            r#"SUBSCRIBE ns=0 text="SUBSCRIBE ? ?" ok"#,
            r#"GET ns=0 text="GET ?" ok"#,
        ]
    );
    assert_eq!(s.times, vec![(10, 11), (20, 23), (30, 32)]);
    assert_eq!(s.stats.unmatched_responses, 0);

    // RESP2: in subscribe mode, message arrays are pushes; `pong` answers PING; UNSUBSCRIBE
    // without arguments ends when the count reaches 0; then arrays are replies again.
    let s = stitch_frames(
        true,
        vec![
            timed(
                20,
                20,
                req(1, "SUBSCRIBE", 1, Effect::Subscribe(SubKind::Channel, 1)),
            ),
            timed(30, 30, req(2, "PING", 0, Effect::None)),
            timed(
                40,
                40,
                req(
                    3,
                    "UNSUBSCRIBE",
                    0,
                    Effect::Unsubscribe(SubKind::Channel, 0),
                ),
            ),
            timed(50, 50, req(4, "LRANGE", 3, Effect::None)),
        ],
        vec![
            timed(
                21,
                21,
                conf(Word::Subscribe(SubKind::Channel), 1, Shape::Array),
            ),
            timed(25, 25, resp2_msg.clone()),
            timed(31, 31, resp2_msg.clone()),
            timed(32, 32, rep(Shape::Array, Word::Pong)),
            timed(
                41,
                41,
                conf(Word::Unsubscribe(SubKind::Channel), 0, Shape::Array),
            ),
            // A list that happens to hold "message" first is a reply outside subscribe mode.
            timed(51, 51, resp2_msg),
        ],
        None,
    );
    assert_eq!(
        s.lines,
        vec![
            r#"SUBSCRIBE ns=0 text="SUBSCRIBE ?" ok"#,
            r#"PING ns=0 text="PING" ok"#,
            r#"UNSUBSCRIBE ns=0 text="UNSUBSCRIBE" ok"#,
            r#"LRANGE ns=0 text="LRANGE ? ? ?" ok"#,
        ]
    );
    assert_eq!(s.times, vec![(20, 21), (30, 32), (40, 41), (50, 51)]);

    // MONITOR: its stream of lines is not a reply.
    let line = rep(Shape::Simple, Word::MonitorLine);
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "MONITOR", 0, Effect::Monitor)),
            timed(30, 30, req(2, "QUIT", 0, Effect::None)),
        ],
        vec![
            timed(11, 11, ok()),
            timed(20, 20, line.clone()),
            timed(31, 31, line),
            timed(32, 32, ok()),
        ],
        None,
    );
    assert_eq!(
        s.lines,
        vec![
            r#"MONITOR ns=0 text="MONITOR" ok"#,
            r#"QUIT ns=0 text="QUIT" ok"#
        ]
    );
    assert_eq!(s.times[1], (30, 32));
}

#[test]
fn stitcher_a_transaction_is_one_record() {
    let exec_reply = |inner: Option<&str>| {
        RedisFrame::Reply(RedisReply {
            shape: Shape::Array,
            inner_error: inner.map(Into::into),
            ..RedisReply::default()
        })
    };
    let multi = |extra: Vec<Timed<RedisFrame>>, replies: Vec<Timed<RedisFrame>>| {
        let mut reqs = vec![timed(10, 10, req(1, "MULTI", 0, Effect::Multi))];
        reqs.extend(extra);
        let mut resps = vec![timed(11, 11, ok())];
        resps.extend(replies);
        stitch_frames(true, reqs, resps, None)
    };
    let s = multi(
        vec![
            timed(12, 12, req(2, "SET", 2, Effect::None)),
            timed(13, 13, req(3, "INCR", 1, Effect::None)),
            timed(14, 14, req(4, "EXEC", 0, Effect::Exec)),
            timed(20, 20, req(5, "GET", 1, Effect::None)),
        ],
        vec![
            timed(12, 12, queued()),
            timed(13, 13, queued()),
            timed(15, 16, exec_reply(None)),
            timed(21, 21, rep(Shape::Bulk, Word::Other)),
        ],
    );
    assert_eq!(
        s.lines,
        vec![
            r#"MULTI ns=0 text="SET ? ?; INCR ?" batch=2 ok"#,
            r#"GET ns=0 text="GET ?" ok"#,
        ]
    );
    assert_eq!(s.times[0], (10, 16), "MULTI's first byte to EXEC's last");

    // Same command everywhere: `MULTI SET`; an error inside EXEC's results makes it an error.
    let s = multi(
        vec![
            timed(12, 12, req(2, "SET", 2, Effect::None)),
            timed(13, 13, req(3, "SET", 2, Effect::None)),
            timed(14, 14, req(4, "EXEC", 0, Effect::Exec)),
        ],
        vec![
            timed(12, 12, queued()),
            timed(13, 13, queued()),
            timed(15, 16, exec_reply(Some("WRONGTYPE"))),
        ],
    );
    assert_eq!(
        s.lines,
        vec![r#"MULTI SET ns=0 text="SET ? ?" batch=2 error="WRONGTYPE""#]
    );

    // A refused command aborts it (EXECABORT); a queued SELECT is not applied then.
    let s = multi(
        vec![
            timed(12, 12, req(2, "SELECT", 1, Effect::Select(Some(3)))),
            timed(13, 13, command(None, 0, Effect::None, 3)),
            timed(14, 14, req(4, "EXEC", 0, Effect::Exec)),
            timed(20, 20, req(5, "PING", 0, Effect::None)),
        ],
        vec![
            timed(12, 12, queued()),
            timed(13, 13, err("ERR")),
            timed(15, 16, err("EXECABORT")),
            timed(21, 21, rep(Shape::Simple, Word::Pong)),
        ],
    );
    assert_eq!(
        s.lines,
        vec![
            r#"MULTI ns=0 batch=2 error="EXECABORT""#,
            r#"PING ns=0 text="PING" ok"#,
        ]
    );

    // A queued SELECT applies when EXEC runs everything.
    let s = multi(
        vec![
            timed(12, 12, req(2, "SELECT", 1, Effect::Select(Some(3)))),
            timed(14, 14, req(3, "EXEC", 0, Effect::Exec)),
            timed(20, 20, req(4, "PING", 0, Effect::None)),
        ],
        vec![
            timed(12, 12, queued()),
            timed(15, 16, exec_reply(None)),
            timed(21, 21, rep(Shape::Simple, Word::Pong)),
        ],
    );
    assert_eq!(
        s.lines,
        vec![
            r#"MULTI SELECT ns=0 text="SELECT ?" batch=1 ok"#,
            r#"PING ns=3 text="PING" ok"#,
        ]
    );

    // DISCARD: one record named DISCARD.
    let s = multi(
        vec![
            timed(12, 12, req(2, "SET", 2, Effect::None)),
            timed(14, 14, req(3, "DISCARD", 0, Effect::Discard)),
        ],
        vec![timed(12, 12, queued()), timed(15, 16, ok())],
    );
    assert_eq!(s.lines, vec![r#"DISCARD ns=0 text="SET ? ?" batch=1 ok"#]);

    // Attached mid-transaction: queued commands are no records; EXEC is named EXEC.
    let s = stitch_frames(
        false,
        vec![
            timed(12, 12, req(1, "SET", 2, Effect::None)),
            timed(14, 14, req(2, "EXEC", 0, Effect::Exec)),
        ],
        vec![timed(12, 12, queued()), timed(15, 16, exec_reply(None))],
        None,
    );
    assert_eq!(s.lines, vec![r#"EXEC ns=- text="EXEC" ok"#]);
    assert_eq!(s.stats.unmatched_responses, 0);
}

#[test]
fn stitcher_commands_dropped_by_the_queue_bound_have_their_replies_owed() {
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "SET", 2, Effect::None)),
            // Commands 2 and 3 were framed, then dropped by the queue bound.
            timed(10, 10, req(4, "GET", 1, Effect::None)),
        ],
        vec![
            timed(20, 20, ok()),
            timed(20, 20, ok()),
            timed(20, 20, ok()),
            timed(20, 21, rep(Shape::Bulk, Word::Other)),
        ],
        None,
    );
    assert_eq!(
        s.lines,
        vec![
            r#"SET ns=0 text="SET ? ?" ok"#,
            r#"GET ns=- text="GET ?" ok"#
        ]
    );
    assert_eq!(s.times[1], (10, 21));
    assert_eq!(s.stats.unmatched_responses, 0);
}

#[test]
fn a_pipeline_deeper_than_the_queue_bound_stays_aligned() {
    let limits = ParserLimits {
        max_queued_frames: 8,
        ..ParserLimits::default()
    };
    let mut c = Conn::with(Role::Client, true, limits);
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.extend(cmd(&["INCR", &format!("k{i}")]));
    }
    batch.extend(cmd(&["GET", "last"]));
    c.client(&batch);
    let mut replies = b":1\r\n".repeat(20);
    replies.extend(bulk(b"v"));
    c.server(&replies);
    c.expire_all();
    // Whatever was dropped, no command got another's reply: GET ends with a bulk, not `:1`.
    let lines = c.lines();
    assert!(lines.len() < 21, "{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some(r#"GET ns=- text="GET ?" ok"#)
    );
    assert!(lines.iter().all(|l| l.ends_with(" ok")));
    assert!(c.stats.unmatched_requests > 0);
}

#[test]
fn stitcher_follows_client_reply_modes() {
    let s = stitch_frames(
        true,
        vec![
            timed(
                10,
                10,
                req(1, "CLIENT REPLY", 1, Effect::ClientReply(ReplyMode::Skip)),
            ),
            timed(11, 11, req(2, "SET", 2, Effect::None)),
            timed(12, 12, req(3, "GET", 1, Effect::None)),
            timed(
                13,
                13,
                req(4, "CLIENT REPLY", 1, Effect::ClientReply(ReplyMode::Off)),
            ),
            timed(14, 14, req(5, "SET", 2, Effect::None)),
            timed(
                15,
                15,
                req(6, "CLIENT REPLY", 1, Effect::ClientReply(ReplyMode::On)),
            ),
            timed(16, 16, req(7, "INCR", 1, Effect::None)),
        ],
        vec![
            timed(20, 20, rep(Shape::Bulk, Word::Other)),
            timed(21, 21, ok()),
            timed(22, 22, rep(Shape::Integer, Word::Other)),
        ],
        None,
    );
    assert_eq!(
        s.lines,
        vec![
            r#"GET ns=0 text="GET ?" ok"#,
            r#"CLIENT REPLY ns=0 text="CLIENT REPLY ?" ok"#,
            r#"INCR ns=0 text="INCR ?" ok"#,
        ]
    );
    assert_eq!(s.stats.unmatched_requests, 0);
}

#[test]
fn stitcher_namespace_from_start_select_and_attach() {
    let frames = || {
        (
            vec![
                timed(10, 10, req(1, "GET", 1, Effect::None)),
                timed(20, 20, req(2, "SELECT", 1, Effect::Select(Some(2)))),
                timed(30, 30, req(3, "GET", 1, Effect::None)),
                timed(40, 40, req(4, "SELECT", 1, Effect::Select(Some(99)))),
                timed(50, 50, req(5, "GET", 1, Effect::None)),
            ],
            vec![
                timed(11, 11, rep(Shape::Bulk, Word::Other)),
                timed(21, 21, ok()),
                timed(31, 31, rep(Shape::Bulk, Word::Other)),
                timed(41, 41, err("ERR")),
                timed(51, 51, rep(Shape::Bulk, Word::Other)),
            ],
        )
    };
    let (reqs, resps) = frames();
    let s = stitch_frames(true, reqs, resps, None);
    assert_eq!(
        s.lines,
        vec![
            r#"GET ns=0 text="GET ?" ok"#,
            r#"SELECT ns=0 text="SELECT ?" ok"#,
            r#"GET ns=2 text="GET ?" ok"#,
            r#"SELECT ns=2 text="SELECT ?" error="ERR""#,
            r#"GET ns=2 text="GET ?" ok"#,
        ]
    );
    // Attached mid-stream: unknown until a SELECT succeeds.
    let (reqs, resps) = frames();
    let s = stitch_frames(false, reqs, resps, None);
    assert_eq!(
        s.lines
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect::<Vec<_>>(),
        vec!["ns=-", "ns=-", "ns=2", "ns=2", "ns=2"]
    );
}

#[test]
fn stitcher_after_lost_commands_pairs_only_commands_sent_after_the_last_reply() {
    let after_loss = |seq, start| {
        let mut t = timed(start, start, req(seq, "GET", 1, Effect::None));
        if let RedisFrame::Command(c) = &mut t.frame {
            c.after_loss = true;
        }
        t
    };
    // Pipelined: A, two lost commands (never framed: no sequence numbers) and C written at
    // once; their four replies; then D.
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "SET", 2, Effect::None)),
            after_loss(2, 12),
            timed(30, 30, req(3, "PING", 0, Effect::None)),
        ],
        vec![
            timed(20, 20, ok()),
            timed(21, 21, ok()),
            timed(22, 22, rep(Shape::Bulk, Word::Other)),
            timed(23, 23, rep(Shape::Bulk, Word::Other)),
            timed(31, 31, rep(Shape::Simple, Word::Pong)),
        ],
        None,
    );
    // C may have got a lost command's reply: no record. The lost commands' replies say
    // commands were lost (a SELECT?): the namespace is unknown.
    assert_eq!(
        s.lines,
        vec![
            r#"SET ns=0 text="SET ? ?" ok"#,
            r#"PING ns=- text="PING" ok"#
        ]
    );
    assert_eq!(s.times[1], (30, 31));
    assert_eq!(s.stats.unmatched_requests, 1);
    assert_eq!(s.stats.unmatched_responses, 3);

    // A gap inside one command's arguments loses no command: the next one pairs, the
    // namespace stays known.
    let s = stitch_frames(
        true,
        vec![
            timed(10, 10, req(1, "RPUSH", 1000, Effect::None)),
            after_loss(2, 30),
        ],
        vec![
            timed(20, 20, rep(Shape::Integer, Word::Other)),
            timed(31, 31, rep(Shape::Bulk, Word::Other)),
        ],
        None,
    );
    assert_eq!(s.lines[1], r#"GET ns=0 text="GET ?" ok"#);
    assert_eq!(s.stats.unmatched_requests + s.stats.unmatched_responses, 0);
}

// ---------- bytes through the pipeline ----------

#[test]
fn a_bulk_reply_far_beyond_the_capture_cap_ends_at_its_last_byte() {
    let mut c = Conn::new();
    c.client(&cmd(&["GET", "big"]));
    let value = vec![b'B'; 1 << 20];
    let whole = bulk(&value);
    // The server writes 64 KiB at a time; the kernel copies the first 16 KiB of each.
    let mut last_ts = 0;
    for piece in whole.chunks(64 * 1024) {
        c.server_truncated(piece, piece.len().min(16 * 1024));
        last_ts = c.ts;
    }
    c.exchange(&cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(
        c.lines(),
        vec![r#"GET ns=0 text="GET ?" ok"#, r#"PING ns=0 text="PING" ok"#]
    );
    assert_eq!(
        c.out[0].end_ns, last_ts,
        "stamped with its last byte's chunk"
    );
    assert_eq!(c.out[0].incomplete, None);
    assert_eq!((c.stats.bytes_lost, c.stats.invalid), (0, 0));
    assert!(c.parser.buffered_bytes() < 64);
}

#[test]
fn an_aggregate_cut_by_the_capture_cap_is_marked_and_the_next_reply_is_exact() {
    let mut c = Conn::new();
    c.client(&cmd(&["LRANGE", "list", "0", "-1"]));
    let elements: Vec<Vec<u8>> = (0..1000).map(|_| bulk(&[b'e'; 40])).collect();
    let reply = array(1000, &elements);
    c.server_truncated(&reply, 16 * 1024);
    let cut_ts = c.ts;
    c.exchange(&cmd(&["SELECT", "1"]), b"+OK\r\n");
    c.exchange(&cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(
        c.lines(),
        vec![
            r#"LRANGE ns=0 text="LRANGE ? ? ?" ok incomplete=response_end_lost"#,
            r#"SELECT ns=0 text="SELECT ?" ok"#,
            r#"GET ns=1 text="GET ?" ok"#,
        ]
    );
    assert_eq!(c.out[0].end_ns, cut_ts);
    assert_eq!(c.out[0].incomplete, Some(Incomplete::EndLost));
}

#[test]
fn lost_reply_chunks_never_shift_the_pairs() {
    // Ring loss in ping-pong: GET a's whole reply is lost; GET b's reply then cannot be told
    // from a's, so neither gets a record; GET c pairs exactly.
    let mut c = Conn::new();
    c.client(&cmd(&["GET", "a"]));
    c.server_lost(7);
    c.exchange(&cmd(&["GET", "b"]), b"$1\r\nb\r\n");
    c.exchange(&cmd(&["GET", "c"]), b"$2\r\ncc\r\n");
    c.exchange(&cmd(&["SET", "d", "1"]), b"+OK\r\n");
    c.expire_all();
    assert_eq!(
        c.lines(),
        vec![
            r#"GET ns=0 text="GET ?" ok"#,
            r#"SET ns=0 text="SET ? ?" ok"#
        ]
    );
    assert_eq!(
        c.out[0].start_ns + 1_000,
        c.out[0].end_ns,
        "GET c's own reply"
    );
    assert_eq!(c.stats.unmatched_requests, 2);

    // Batch pipelining: a batch's replies lost; the next batch is given up; then exact.
    let mut c = Conn::new();
    let batch = |k: &str| [cmd(&["INCR", k]), cmd(&["INCR", k])].concat();
    c.exchange(&batch("a"), b":1\r\n:2\r\n");
    c.client(&batch("b"));
    c.server_lost(8);
    c.exchange(&batch("c"), b":5\r\n:6\r\n");
    c.exchange(&batch("d"), b":7\r\n:8\r\n");
    c.expire_all();
    assert_eq!(c.out.len(), 4, "{:?}", c.lines());
    assert_eq!(c.out[2].end_ns, c.out[3].end_ns);
    assert_eq!(c.stats.unmatched_requests, 4);
}

#[test]
fn a_lost_command_does_not_shift_the_replies() {
    let mut c = Conn::new();
    c.exchange(&cmd(&["GET", "a"]), b"$1\r\n1\r\n");
    let lost = cmd(&["SELECT", "7"]);
    c.client_lost(lost.len());
    c.server(b"+OK\r\n");
    c.exchange(&cmd(&["GET", "b"]), b"$1\r\n2\r\n");
    assert_eq!(
        c.lines(),
        vec![r#"GET ns=0 text="GET ?" ok"#, r#"GET ns=- text="GET ?" ok"#]
    );
    assert_eq!(c.out[1].start_ns + 1_000, c.out[1].end_ns);
}

#[test]
fn hostile_counts_cost_only_the_bytes_that_arrive() {
    // A command announcing 2^31-1 arguments: framed at once, the rest stepped over.
    let mut c = Conn::new();
    c.client(b"*2147483647\r\n$3\r\nSET\r\n");
    for _ in 0..1000 {
        c.client(b"$1\r\nx\r\n");
    }
    assert!(c.parser.buffered_bytes() < 64);
    // Over Redis' own limit: garbage.
    assert_eq!(parse_req(b"*2147483648\r\n", &mut state()), Parse::Invalid);
    // A reply announcing 2^31-1 elements, then a map of 2^62: counted, never allocated.
    let mut st = reply_state();
    let mut buf = b"*2147483647\r\n".to_vec();
    for _ in 0..1000 {
        buf.extend(b":1\r\n");
    }
    buf.extend(b"%4611686018427387903\r\n:1\r\n:2\r\n");
    match parse_resp(&buf, &mut st) {
        Parse::Frame {
            frame: RedisFrame::Partial { .. },
            len,
        } => assert_eq!(len, buf.len()),
        other => panic!("{other:?}"),
    }
    assert!(st.stack.len() <= REDIS_MAX_DEPTH);
    // Nesting deeper than the bound is garbage.
    let deep = b"*1\r\n".repeat(REDIS_MAX_DEPTH + 1);
    assert_eq!(parse_resp(&deep, &mut reply_state()), Parse::Invalid);
    let ok = [b"*1\r\n".repeat(REDIS_MAX_DEPTH), b":1\r\n".to_vec()].concat();
    assert!(matches!(
        parse_resp(&ok, &mut reply_state()),
        Parse::Frame {
            frame: RedisFrame::Reply(_),
            ..
        }
    ));
    // Lengths that overflow.
    for b in [
        &b"$9223372036854775807\r\n"[..],
        b"$99999999999999999999\r\n",
    ] {
        let got = parse_resp(b, &mut reply_state());
        assert!(
            matches!(got, Parse::Invalid | Parse::Frame { .. }),
            "{got:?}"
        );
    }
}

#[test]
fn secrets_are_never_read_into_frames_or_records() {
    let secret_commands = [
        cmd(&["AUTH", CANARY]),
        cmd(&["AUTH", "alice", CANARY]),
        cmd(&["HELLO", "3", "AUTH", "default", CANARY, "SETNAME", "x"]),
        cmd(&["CONFIG", "SET", "requirepass", CANARY]),
        cmd(&["ACL", "SETUSER", "alice", &format!(">{CANARY}")]),
        cmd(&["MIGRATE", "h", "1", "k", "0", "10", "AUTH", CANARY]),
        cmd(&[CANARY]),
        format!("AUTH {CANARY}\r\n").into_bytes(),
        format!("{CANARY} x\r\n").into_bytes(),
    ];
    let mut c = Conn::new();
    for command in &secret_commands {
        let mut st = state();
        let framed = parse_req(command, &mut st);
        assert!(!format!("{framed:?}").contains("hunter2"), "{framed:?}");
        c.exchange(command, b"-WRONGPASS invalid username-password pair\r\n");
    }
    assert_eq!(c.out.len(), secret_commands.len());
    for line in c.lines() {
        assert!(!line.contains("hunter2"), "{line}");
    }
    assert_eq!(c.lines()[0], r#"AUTH ns=0 text="AUTH ?" error="WRONGPASS""#);
    assert_eq!(
        c.lines()[2],
        r#"HELLO ns=0 text="HELLO ? ? ? ? ? ?" error="WRONGPASS""#
    );
    assert_eq!(c.lines()[6], r#"_OTHER ns=0 error="WRONGPASS""#);
}

#[test]
fn query_text_is_capped_at_a_word_boundary() {
    assert_eq!(query_text("SET", 2, 2048), "SET ? ?");
    assert_eq!(query_text("MSET", 1_000_000, 11), "MSET ? ? ?");
    assert_eq!(query_text("CLIENT SETINFO", 2, 4), "CLIENT SETINFO");
}

#[test]
fn mid_stream_attach_starts_at_the_first_reply_after_a_command() {
    let mut c = Conn::attached();
    // The tail of a reply to a command sent before we attached.
    c.server(b"$40\r\neeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\r\n:1\r\n+OK\r\n");
    c.exchange(&cmd(&["GET", "a"]), b"$1\r\nx\r\n");
    c.exchange(&cmd(&["SELECT", "5"]), b"+OK\r\n");
    c.exchange(&cmd(&["GET", "b"]), b"$-1\r\n");
    assert_eq!(
        c.lines(),
        vec![
            r#"GET ns=- text="GET ?" ok"#,
            r#"SELECT ns=- text="SELECT ?" ok"#,
            r#"GET ns=5 text="GET ?" ok"#,
        ]
    );
    assert_eq!(c.stats.unmatched_responses, 0);
}

/// A scripted session: (command bytes, reply bytes) per exchange.
fn session() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (cmd(&["AUTH", CANARY]), b"+OK\r\n".to_vec()),
        (cmd(&["SET", "k", "v"]), b"+OK\r\n".to_vec()),
        (cmd(&["GET", "k"]), bulk(b"v")),
        (
            [cmd(&["MULTI"]), cmd(&["INCR", "n"]), cmd(&["EXEC"])].concat(),
            b"+OK\r\n+QUEUED\r\n*1\r\n:1\r\n".to_vec(),
        ),
        (cmd(&["SELECT", "2"]), b"+OK\r\n".to_vec()),
        (
            cmd(&["HGETALL", "h"]),
            b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n".to_vec(),
        ),
        (b"PING\r\nPING\r\n".to_vec(), b"+PONG\r\n+PONG\r\n".to_vec()),
        (cmd(&["LPUSH", "k", "x"]), b"-WRONGTYPE no\r\n".to_vec()),
        (
            cmd(&["SUBSCRIBE", "c"]),
            confirmation("subscribe", "c", 1, false),
        ),
        (Vec::new(), message("c", "hi", false)),
        (
            cmd(&["UNSUBSCRIBE"]),
            confirmation("unsubscribe", "c", 0, false),
        ),
    ]
}

const SESSION_LINES: &[&str] = &[
    r#"AUTH ns=0 text="AUTH ?" ok"#,
    r#"SET ns=0 text="SET ? ?" ok"#,
    r#"GET ns=0 text="GET ?" ok"#,
    r#"MULTI INCR ns=0 text="INCR ?" batch=1 ok"#,
    r#"SELECT ns=0 text="SELECT ?" ok"#,
    r#"HGETALL ns=2 text="HGETALL ?" ok"#,
    r#"PING ns=2 text="PING" ok"#,
    r#"PING ns=2 text="PING" ok"#,
    r#"LPUSH ns=2 text="LPUSH ? ?" error="WRONGTYPE""#,
    r#"SUBSCRIBE ns=2 text="SUBSCRIBE ?" ok"#,
    r#"UNSUBSCRIBE ns=2 text="UNSUBSCRIBE" ok"#,
];

#[test]
fn client_and_server_sides_give_the_same_records() {
    for role in [Role::Client, Role::Server] {
        let mut c = Conn::with(role, true, ParserLimits::default());
        for (req, resp) in session() {
            if !req.is_empty() {
                c.client(&req);
            }
            c.server(&resp);
        }
        c.expire_all();
        assert_eq!(c.lines(), SESSION_LINES, "{role:?}");
        assert_eq!(c.stats.unmatched_requests + c.stats.unmatched_responses, 0);
    }
}

// ---------- properties ----------

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        crate::protocol::chaos::drive(Protocol::Redis, &data);
    }

    #[test]
    fn arbitrary_bytes_after_a_session_never_panic(
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        cuts in proptest::collection::vec(0usize..400, 0..10),
    ) {
        let mut c = Conn::new();
        for (req, resp) in session().into_iter().take(4) {
            c.exchange(&req, &resp);
        }
        for chunk in split_at_points(&garbage, &cuts) {
            c.server(chunk);
            c.client(chunk);
        }
        c.expire_all();
        proptest::prop_assert!(c.parser.buffered_bytes() <= 2 * ParserLimits::default().max_buffer_bytes);
    }

    #[test]
    fn any_split_gives_the_same_records(cuts in proptest::collection::vec(0usize..200, 0..12)) {
        let mut c = Conn::new();
        for (req, resp) in session() {
            for chunk in split_at_points(&req, &cuts) {
                c.client(chunk);
            }
            for chunk in split_at_points(&resp, &cuts) {
                c.server(chunk);
            }
        }
        c.expire_all();
        proptest::prop_assert_eq!(c.lines(), SESSION_LINES);
        proptest::prop_assert_eq!(c.stats.invalid, 0);
    }
}

// ---------- (d) golden ----------

/// How a capture is replayed.
#[derive(Clone, Copy)]
struct Replay {
    role: Role,
    /// Records skipped (a later attach: the connection then predates the receiver).
    skip: usize,
    /// Each record cut into pieces of at most this many bytes.
    piece: usize,
    /// Bytes the kernel copies of one syscall (`ebpf.max_capture_bytes`); the rest is a gap.
    cap: usize,
}

impl Replay {
    const KERNEL: Replay = Replay {
        role: Role::Client,
        skip: 0,
        piece: usize::MAX,
        cap: 16 * 1024,
    };
}

fn replay(recs: &[(u8, u64, Vec<u8>)], how: Replay) -> (Vec<String>, ParseStats) {
    let mut c = Conn::with(how.role, how.skip == 0, ParserLimits::default());
    for (dir, ts, bytes) in recs.iter().skip(how.skip) {
        let to_server = *dir == b'C';
        for chunk in bytes.chunks(how.piece.max(1)) {
            c.ts = *ts - 1_000;
            let captured = &chunk[..chunk.len().min(how.cap)];
            c.feed(to_server, captured, chunk.len() as u32);
        }
    }
    c.expire_all();
    (c.lines(), c.stats)
}

fn check_golden(golden: &std::path::Path, text: &str) {
    testkit::check_golden(
        golden,
        text,
        &[
            "hunter2",
            "ann-secret",
            "secret-arg",
            "hello-subscriber",
            "VXK",
            "oslo",
        ],
    );
}

#[test]
fn golden_captures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol/redis/testdata");
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
        // As the kernel delivers it: at most 16 KiB of each syscall.
        let (lines, stats) = replay(&recs, Replay::KERNEL);
        check_golden(&path.with_extension("golden"), &golden_text(&lines, &stats));
        // The server's side sees the same exchanges.
        let (server, _) = replay(
            &recs,
            Replay {
                role: Role::Server,
                ..Replay::KERNEL
            },
        );
        assert_eq!(server, lines, "{} from the server side", path.display());
        // Any chunking of whole captures gives the same records.
        let full = Replay {
            cap: usize::MAX,
            ..Replay::KERNEL
        };
        let (whole, _) = replay(&recs, full);
        for piece in [1, 3, 7, 64] {
            let (again, _) = replay(&recs, Replay { piece, ..full });
            assert_eq!(again, whole, "{} in pieces of {piece}", path.display());
        }
        // Attaching after the first exchanges (no namespace until a SELECT).
        let (lines, stats) = replay(
            &recs,
            Replay {
                skip: 3,
                ..Replay::KERNEL
            },
        );
        check_golden(
            &path.with_extension("attach.golden"),
            &golden_text(&lines, &stats),
        );
    }
    assert!(seen >= 6, "captures in {}", dir.display());
}
