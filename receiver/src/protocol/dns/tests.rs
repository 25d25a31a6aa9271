//! DNS framer, stitcher and golden tests (CONVENTIONS §8).

use crate::protocol::testkit::{self, golden_text};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::frame::testing::read_name;
use super::types::*;
use super::{DnsFramer, DnsStitcher};
use crate::model::{Direction, Protocol, Role, Transport};
use crate::protocol::{
    Chunk, ConnParser, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher, Timed, chaos,
};
use crate::record::{DnsExchange, Exchange, Incomplete, Record};

use MessageKind::{Request, Response};

/// Canaries: bytes that ride in DNS messages and must never reach a record.
const TXT_CANARY: &str = "e2e-txt-canary-secret";
const TSIG_CANARY: &[u8] = b"canary-tsig-mac-0123456789";
const COOKIE_CANARY: &[u8] = b"cookie-canary-01";

// ---------- builders ----------

fn name_wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    if name != "." {
        for label in name.trim_end_matches('.').split('.') {
            w.push(label.len() as u8);
            w.extend_from_slice(label.as_bytes());
        }
    }
    w.push(0);
    w
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

/// A standard query with RD set, optionally with an OPT record carrying `options`.
fn query_with(id: u16, qname_wire: &[u8], qtype: u16, edns: Option<&[u8]>) -> Vec<u8> {
    let mut m = header(id, 0x0100, [1, 0, 0, u16::from(edns.is_some())]);
    m.extend_from_slice(qname_wire);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(options) = edns {
        m.extend_from_slice(&opt(0, options));
    }
    m
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    query_with(id, &name_wire(name), qtype, None)
}

/// A resource record; `owner` in wire form (a pointer is `[0xc0, 12]`).
fn rr(owner: &[u8], rtype: u16, class: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
    let mut r = owner.to_vec();
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&class.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
    r
}

/// The question's name, by pointer (RFC 1035 §4.1.4).
const AT_QNAME: [u8; 2] = [0xc0, 12];

fn a(ip: &str) -> Vec<u8> {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    rr(&AT_QNAME, TYPE_A, CLASS_IN, 60, &ip.octets())
}

fn aaaa(ip: &str) -> Vec<u8> {
    let ip: std::net::Ipv6Addr = ip.parse().unwrap();
    rr(&AT_QNAME, TYPE_AAAA, CLASS_IN, 60, &ip.octets())
}

/// An OPT pseudo-record (RFC 6891 §6.1.2): root owner, UDP size 1232, extended RCODE.
fn opt(ext_rcode: u8, options: &[u8]) -> Vec<u8> {
    rr(&[0], TYPE_OPT, 1232, u32::from(ext_rcode) << 24, options)
}

/// An EDNS COOKIE option (code 10) holding `bytes`.
fn cookie(bytes: &[u8]) -> Vec<u8> {
    let mut o = 10u16.to_be_bytes().to_vec();
    o.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    o.extend_from_slice(bytes);
    o
}

/// A TSIG record (RFC 8945) whose MAC is the canary: stepped over, never read.
fn tsig() -> Vec<u8> {
    let mut data = name_wire("hmac-sha256");
    data.extend_from_slice(&[0, 0, 0x65, 0x43, 0x21, 0x00, 0x01, 0x2c]);
    data.extend_from_slice(&(TSIG_CANARY.len() as u16).to_be_bytes());
    data.extend_from_slice(TSIG_CANARY);
    data.extend_from_slice(&[0x12, 0x34, 0, 0, 0, 0]);
    rr(&name_wire("key.e2e.test"), 250, 255, 0, &data)
}

/// A response: QR, RD, RA, `extra` flag bits and `rcode`, the question, then the sections.
fn response_with(
    id: u16,
    name: &str,
    qtype: u16,
    extra: u16,
    rcode: u16,
    sections: [&[Vec<u8>]; 3],
) -> Vec<u8> {
    let [an, ns, ar] = sections;
    let mut m = header(
        id,
        0x8180 | extra | (rcode & 0xf),
        [1, an.len() as u16, ns.len() as u16, ar.len() as u16],
    );
    m.extend_from_slice(&name_wire(name));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    for r in an.iter().chain(ns).chain(ar) {
        m.extend_from_slice(r);
    }
    m
}

fn response(id: u16, name: &str, qtype: u16, rcode: u16, answers: &[Vec<u8>]) -> Vec<u8> {
    response_with(id, name, qtype, 0, rcode, [answers, &[], &[]])
}

/// RFC 1035 §4.2.2: the message behind its 2-byte length.
fn tcp(msg: &[u8]) -> Vec<u8> {
    let mut m = (msg.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(msg);
    m
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn frame(id: u16, flags: u16, name: &str, qtype: u16, transport: Transport) -> DnsFrame {
    DnsFrame {
        id,
        flags,
        question: DnsQuestion {
            name: name.into(),
            name_cut: false,
            qtype,
            qclass: CLASS_IN,
        },
        rcode: flags & 0xf,
        answers: Vec::new(),
        answers_partial: false,
        transport,
    }
}

fn udp(kind: MessageKind, msg: &[u8]) -> Parse<DnsFrame> {
    DnsFramer::default().parse_datagram(kind, msg, false, &mut ())
}

fn stream(kind: MessageKind, buf: &[u8]) -> Parse<DnsFrame> {
    DnsFramer::default().parse(kind, buf, &mut ())
}

fn framed(p: Parse<DnsFrame>, len: usize) -> DnsFrame {
    match p {
        Parse::Frame { frame, len: l } => {
            assert_eq!(l, len, "a frame consumes its whole message");
            frame
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

// ---------- (a) bytes → frames ----------

#[test]
fn frame_table() {
    use Transport::{Tcp, Udp};
    let txt = {
        let mut d = vec![TXT_CANARY.len() as u8];
        d.extend_from_slice(TXT_CANARY.as_bytes());
        rr(&AT_QNAME, 16, CLASS_IN, 0, &d)
    };
    let cname = rr(&AT_QNAME, 5, CLASS_IN, 0, &name_wire("web.e2e.test"));
    let soa = rr(&name_wire("e2e.test"), 6, CLASS_IN, 0, &[0; 22]);
    let with = |mut f: DnsFrame, answers: &[&str], rcode: u16, partial: bool| {
        f.answers = ips(answers);
        f.rcode = rcode;
        f.answers_partial = partial;
        f
    };
    let edns_query = query_with(
        0x0a0b,
        &name_wire("web.e2e.test"),
        TYPE_A,
        Some(&cookie(COOKIE_CANARY)),
    );
    let cases: Vec<(&str, MessageKind, Transport, Vec<u8>, DnsFrame)> = vec![
        (
            "query",
            Request,
            Udp,
            query(0x1234, "web.e2e.test", TYPE_A),
            frame(0x1234, 0x0100, "web.e2e.test", TYPE_A, Udp),
        ),
        (
            "query with an EDNS cookie",
            Request,
            Udp,
            edns_query.clone(),
            frame(0x0a0b, 0x0100, "web.e2e.test", TYPE_A, Udp),
        ),
        (
            "two A answers by pointer",
            Response,
            Udp,
            response(
                7,
                "web.e2e.test",
                TYPE_A,
                0,
                &[a("10.1.2.3"), a("10.1.2.4")],
            ),
            with(
                frame(7, 0x8180, "web.e2e.test", TYPE_A, Udp),
                &["10.1.2.3", "10.1.2.4"],
                0,
                false,
            ),
        ),
        (
            "AAAA",
            Response,
            Udp,
            response(8, "web.e2e.test", TYPE_AAAA, 0, &[aaaa("fd00::1:2:3")]),
            with(
                frame(8, 0x8180, "web.e2e.test", TYPE_AAAA, Udp),
                &["fd00::1:2:3"],
                0,
                false,
            ),
        ),
        (
            "CNAME then A: only the address",
            Response,
            Udp,
            response(9, "alias.e2e.test", TYPE_A, 0, &[cname, a("10.1.2.3")]),
            with(
                frame(9, 0x8180, "alias.e2e.test", TYPE_A, Udp),
                &["10.1.2.3"],
                0,
                false,
            ),
        ),
        (
            "TXT: no address, the strings unread",
            Response,
            Udp,
            response(10, "txt.e2e.test", 16, 0, &[txt]),
            frame(10, 0x8180, "txt.e2e.test", 16, Udp),
        ),
        (
            "NXDOMAIN with the SOA in authority",
            Response,
            Udp,
            response_with(11, "missing.e2e.test", TYPE_A, 0, 3, [&[], &[soa], &[]]),
            with(
                frame(11, 0x8183, "missing.e2e.test", TYPE_A, Udp),
                &[],
                3,
                false,
            ),
        ),
        (
            "extended RCODE from OPT: BADVERS",
            Response,
            Udp,
            response_with(12, "web.e2e.test", TYPE_A, 0, 0, [&[], &[], &[opt(1, &[])]]),
            with(
                frame(12, 0x8180, "web.e2e.test", TYPE_A, Udp),
                &[],
                16,
                false,
            ),
        ),
        (
            "TSIG in additional is stepped over",
            Response,
            Udp,
            response_with(
                13,
                "web.e2e.test",
                TYPE_A,
                0,
                0,
                [
                    &[a("10.1.2.3")],
                    &[],
                    &[opt(0, &cookie(COOKIE_CANARY)), tsig()],
                ],
            ),
            with(
                frame(13, 0x8180, "web.e2e.test", TYPE_A, Udp),
                &["10.1.2.3"],
                0,
                false,
            ),
        ),
        (
            "TC with the records that fit",
            Response,
            Udp,
            response_with(
                14,
                "many.e2e.test",
                TYPE_A,
                FLAG_TC,
                0,
                [&[a("10.2.0.1")], &[], &[]],
            ),
            with(
                frame(14, 0x8380, "many.e2e.test", TYPE_A, Udp),
                &["10.2.0.1"],
                0,
                false,
            ),
        ),
        (
            "root",
            Request,
            Udp,
            query(15, ".", 2),
            frame(15, 0x0100, ".", 2, Udp),
        ),
        (
            "TCP query",
            Request,
            Tcp,
            tcp(&query(16, "txt.e2e.test", 16)),
            frame(16, 0x0100, "txt.e2e.test", 16, Tcp),
        ),
        (
            "TCP response",
            Response,
            Tcp,
            tcp(&response(17, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")])),
            with(
                frame(17, 0x8180, "web.e2e.test", TYPE_A, Tcp),
                &["10.1.2.3"],
                0,
                false,
            ),
        ),
    ];
    for (what, kind, transport, bytes, want) in cases {
        let got = match transport {
            Transport::Udp => framed(udp(kind, &bytes), bytes.len()),
            _ => framed(stream(kind, &bytes), bytes.len()),
        };
        assert_eq!(got, want, "{what}");
        let dump = format!("{got:?}");
        assert!(!dump.contains(TXT_CANARY), "{what}");
    }
}

#[test]
fn names_are_escaped_and_capped() {
    // One label holding a dot, a backslash, a space and a byte outside ASCII.
    let mut wire = vec![7, b'a', b'.', b'b', b'\\', b' ', 0xff, b'Z'];
    wire.extend_from_slice(&name_wire("e2e.test"));
    let msg = query_with(1, &wire, TYPE_A, None);
    let f = framed(udp(Request, &msg), msg.len());
    assert_eq!(f.question.name, "a\\.b\\\\\\032\\255Z.e2e.test");
    assert!(!f.question.name_cut);

    // 4 labels of 60 bytes that each need escaping: 960 bytes of text, cut at 255 without
    // splitting an escape.
    let mut wire = Vec::new();
    for _ in 0..4 {
        wire.push(60);
        wire.extend_from_slice(&[0x01; 60]);
    }
    wire.push(0);
    let msg = query_with(2, &wire, TYPE_A, None);
    let f = framed(udp(Request, &msg), msg.len());
    assert!(f.question.name_cut);
    assert!(f.question.name.len() <= DNS_MAX_NAME_TEXT);
    assert!(f.question.name.ends_with("\\001"), "{}", f.question.name);
    assert!(f.question.name.starts_with("\\001\\001"));
}

#[test]
fn qtype_and_rcode_names() {
    assert_eq!(qtype_name(1), "A");
    assert_eq!(qtype_name(28), "AAAA");
    assert_eq!(qtype_name(65), "HTTPS");
    assert_eq!(qtype_name(65280), "TYPE65280");
    assert_eq!(rcode_error(0), None);
    assert_eq!(rcode_error(2), Some("SERVFAIL"));
    assert_eq!(rcode_error(3), Some("NXDOMAIN"));
    assert_eq!(rcode_error(5), Some("REFUSED"));
    assert_eq!(rcode_error(16), Some("BADVERS"));
    assert_eq!(rcode_error(12), Some("_OTHER"));
    assert_eq!(rcode_error(4095), Some("_OTHER"));
}

#[test]
fn answers_are_bounded() {
    let many: Vec<Vec<u8>> = (1..=60).map(|i| a(&format!("10.2.0.{i}"))).collect();
    let msg = response(3, "many.e2e.test", TYPE_A, 0, &many);
    let f = framed(udp(Response, &msg), msg.len());
    assert_eq!(f.answers.len(), DNS_MAX_ANSWERS);
    assert!(f.answers_partial);
    assert_eq!(f.answers[0], "10.2.0.1".parse::<IpAddr>().unwrap());
    // Header counts far beyond the message: the walk stops at the end, bounded.
    let mut lying = response(4, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")]);
    lying[6..12].copy_from_slice(&[0xff; 6]);
    let f = framed(udp(Response, &lying), lying.len());
    assert_eq!(f.answers, ips(&["10.1.2.3"]));
    assert!(f.answers_partial);
}

#[test]
fn compression_pointers_are_safe() {
    // Header (12 bytes) then bytes at offset 12: names read from `at`.
    let msg = |tail: &[u8]| {
        let mut m = header(1, 0x8180, [1, 0, 0, 0]);
        m.extend_from_slice(tail);
        m
    };
    // A valid backward chain: "e2e.test" at 12, "web" + pointer to 12 at 22.
    let m = msg(&[
        3, b'e', b'2', b'e', 4, b't', b'e', b's', b't', 0, 3, b'w', b'e', b'b', 0xc0, 12,
    ]);
    assert_eq!(read_name(&m, 22), Ok(("web.e2e.test".into(), false, 28)));
    // A pointer to itself (a loop).
    assert_eq!(read_name(&msg(&[0xc0, 12]), 12), Err(true));
    // Two pointers pointing at each other.
    assert_eq!(read_name(&msg(&[0xc0, 14, 0xc0, 12]), 14), Err(true));
    // Forward pointer.
    assert_eq!(read_name(&msg(&[0xc0, 14, 1, b'x', 0]), 12), Err(true));
    // Into the header.
    assert_eq!(read_name(&msg(&[1, b'x', 0xc0, 2]), 12), Err(true));
    // Out of bounds (also forward).
    assert_eq!(read_name(&msg(&[0xc0, 0xff]), 12), Err(true));
    // Reserved label types 0x40 and 0x80.
    assert_eq!(read_name(&msg(&[0x41, 0]), 12), Err(true));
    assert_eq!(read_name(&msg(&[0x81, 0]), 12), Err(true));
    // A label running past the end: too short, not malformed.
    assert_eq!(read_name(&msg(&[5, b'a', b'b']), 12), Err(false));
    assert_eq!(read_name(&msg(&[0xc0]), 12), Err(false));
    // Over 255 bytes.
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    assert_eq!(read_name(&msg(&long), 12), Err(true));
    // A chain of backward pointers longer than the fence.
    let mut chain = vec![0];
    for i in 0..40u16 {
        let target = 12 + if i == 0 { 0 } else { 1 + 2 * (i - 1) };
        chain.extend_from_slice(&[0xc0, target as u8]);
    }
    let m = msg(&chain);
    let last = m.len() - 2;
    assert_eq!(read_name(&m, last), Err(true));
    assert_eq!(read_name(&m, 13), Ok((".".into(), false, 15)));
}

#[test]
fn malformed_names_in_messages() {
    // In the question: the message is not DNS.
    let mut q = header(1, 0x0100, [1, 0, 0, 0]);
    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(udp(Request, &q), Parse::Invalid);
    // In an answer's owner: the response stands, its answers are partial.
    let bad = rr(&[0xc0, 0xf0], TYPE_A, CLASS_IN, 0, &[1, 2, 3, 4]);
    let msg = response(
        2,
        "web.e2e.test",
        TYPE_A,
        0,
        &[a("10.1.2.3"), bad, a("10.1.2.5")],
    );
    let f = framed(udp(Response, &msg), msg.len());
    assert_eq!(f.answers, ips(&["10.1.2.3"]));
    assert!(f.answers_partial);
}

#[test]
fn other_opcodes_and_question_counts() {
    // NOTIFY (opcode 4): valid, stepped over.
    let mut notify = query(5, "e2e.test", 6);
    notify[2] = 0x20;
    assert_eq!(udp(Request, &notify), Parse::Skip { len: notify.len() });
    // No question (a FORMERR answer may omit it): valid, stepped over whole, also on TCP.
    let mut none = header(6, 0x8181, [0, 0, 0, 0]);
    none.extend_from_slice(&[0; 5]);
    assert_eq!(udp(Response, &none), Parse::Skip { len: none.len() });
    let framed_none = tcp(&none);
    assert_eq!(
        stream(Response, &framed_none),
        Parse::Skip {
            len: framed_none.len()
        }
    );
    // Two questions: no server answers that; not DNS as we know it.
    let mut two = query(7, "web.e2e.test", TYPE_A);
    two[5] = 2;
    assert_eq!(udp(Request, &two), Parse::Invalid);
    // The wrong direction: a query where a response is expected and the reverse.
    assert_eq!(
        udp(Response, &query(8, "web.e2e.test", TYPE_A)),
        Parse::Invalid
    );
    assert_eq!(
        udp(Request, &response(8, "web.e2e.test", TYPE_A, 0, &[])),
        Parse::Invalid
    );
}

// ---------- (b) prefixes, garbage, resync ----------

#[test]
fn every_tcp_prefix_is_incomplete() {
    let msgs = [
        (Request, tcp(&query(1, "web.e2e.test", TYPE_A))),
        (
            Request,
            tcp(&query_with(
                2,
                &name_wire("web.e2e.test"),
                TYPE_AAAA,
                Some(&cookie(COOKIE_CANARY)),
            )),
        ),
        (
            Response,
            tcp(&response(3, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")])),
        ),
        (
            Response,
            tcp(&response_with(
                4,
                "x.e2e.test",
                TYPE_A,
                0,
                3,
                [&[], &[], &[tsig()]],
            )),
        ),
    ];
    for (kind, m) in &msgs {
        for n in 0..m.len() {
            assert_eq!(
                stream(*kind, &m[..n]),
                Parse::Incomplete,
                "{n} of {}",
                m.len()
            );
        }
        framed(stream(*kind, m), m.len());
        // Followed by the next message: only the first is consumed.
        let two = [m.clone(), m.clone()].concat();
        framed(stream(*kind, &two), m.len());
    }
}

#[test]
fn every_datagram_prefix_is_invalid_or_framed_with_its_question() {
    let msg = response_with(
        9,
        "web.e2e.test",
        TYPE_A,
        0,
        0,
        [&[a("10.1.2.3"), aaaa("fd00::1")], &[], &[opt(0, &[])]],
    );
    let question_end = 12 + name_wire("web.e2e.test").len() + 4;
    for n in 0..msg.len() {
        // The kernel copied only `n` bytes of the datagram.
        let p = DnsFramer::default().parse_datagram(Response, &msg[..n], true, &mut ());
        if n < question_end {
            assert_eq!(p, Parse::Invalid, "{n}");
        } else {
            let f = framed(p, n);
            assert_eq!(f.question.name, "web.e2e.test");
            assert!(f.answers.len() <= 2);
        }
    }
}

#[test]
fn garbage_is_invalid() {
    let framer = DnsFramer::default();
    for g in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 40],
        &[0x00, 0x05, 1, 2, 3, 4, 5],
        // A response where a query is expected.
        &tcp(&response(1, "web.e2e.test", TYPE_A, 0, &[])),
    ] {
        assert_eq!(framer.parse(Request, g, &mut ()), Parse::Invalid, "{g:?}");
    }
    // A header that refutes itself before the rest of a long message arrives.
    let mut big = vec![0x10, 0x00];
    big.extend_from_slice(&header(1, 0x8180, [1, 0, 0, 0]));
    assert_eq!(framer.parse(Request, &big, &mut ()), Parse::Invalid);
}

#[test]
fn resync_after_garbage_lands_on_the_next_frame() {
    let framer = DnsFramer::default();
    let msg = tcp(&query(0x4242, "web.e2e.test", TYPE_A));
    let garbage = vec![0xffu8; 37];
    let buf = [garbage.clone(), msg.clone()].concat();
    assert_eq!(
        framer.find_boundary(Request, &buf, 1, &()),
        Some(garbage.len())
    );
    // Through the pipeline: the garbage is counted, the exchange after it is recorded.
    let mut c = Conn::tcp(Role::Client);
    c.send(&[garbage, msg].concat());
    c.recv(&tcp(&response(
        0x4242,
        "web.e2e.test",
        TYPE_A,
        0,
        &[a("10.1.2.3")],
    )));
    assert_eq!(
        c.lines(),
        ["DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] tcp"]
    );
    assert!(c.stats.invalid >= 1);
    assert_eq!(c.stats.bytes_lost, 37);
}

// ---------- pipeline: one traced socket ----------

/// One traced socket: egress and ingress fed as the kernel reports them.
struct Conn {
    parser: ConnParser,
    datagram: bool,
    ts: u64,
    pos: [u64; 2],
    out: Vec<Record>,
    stats: ParseStats,
}

impl Conn {
    fn new(role: Role, datagram: bool, limits: ParserLimits) -> Conn {
        Conn {
            parser: ConnParser::new(Protocol::Dns, role, limits),
            datagram,
            ts: 1_000,
            pos: [0, 0],
            out: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    fn udp(role: Role) -> Conn {
        Conn::new(role, true, ParserLimits::default())
    }

    fn tcp(role: Role) -> Conn {
        Conn::new(role, false, ParserLimits::default())
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], len: u32, peer: Option<&str>) {
        self.ts += 1_000;
        let i = usize::from(dir == Direction::Ingress);
        self.parser.on_data(
            Chunk {
                direction: dir,
                pos: self.pos[i],
                ts_ns: self.ts,
                bytes,
                len,
                datagram: self.datagram,
                peer: peer.map(|p| p.parse().unwrap()),
            },
            &mut self.out,
            &mut self.stats,
        );
        self.pos[i] += u64::from(len);
    }

    fn send(&mut self, bytes: &[u8]) {
        self.feed(Direction::Egress, bytes, bytes.len() as u32, None);
    }

    fn recv(&mut self, bytes: &[u8]) {
        self.feed(Direction::Ingress, bytes, bytes.len() as u32, None);
    }

    fn send_to(&mut self, bytes: &[u8], peer: &str) {
        self.feed(Direction::Egress, bytes, bytes.len() as u32, Some(peer));
    }

    fn recv_from(&mut self, bytes: &[u8], peer: &str) {
        self.feed(Direction::Ingress, bytes, bytes.len() as u32, Some(peer));
    }

    fn close(&mut self) {
        self.parser.close(&mut self.out, &mut self.stats);
    }

    fn lines(&self) -> Vec<String> {
        self.out.iter().map(render).collect()
    }
}

/// One record as a golden line.
fn render(r: &Record) -> String {
    let Exchange::Dns(d) = &r.exchange else {
        panic!("not a DNS record: {r:?}");
    };
    let DnsExchange {
        question_name,
        question_type,
        error,
        answers,
        truncated,
        transport,
    } = d;
    let mut s = format!(
        "DNS {question_type} name={question_name:?} {}",
        error.unwrap_or("ok")
    );
    if !answers.is_empty() {
        let list: Vec<String> = answers.iter().map(ToString::to_string).collect();
        let _ = write!(s, " answers=[{}]", list.join(","));
    }
    if *truncated {
        s.push_str(" tc");
    }
    let _ = write!(s, " {}", transport.as_str());
    if let Some(p) = r.peer {
        let _ = write!(s, " peer={p}");
    }
    if let Some(i) = r.incomplete {
        let _ = write!(s, " incomplete={}", i.as_str());
    }
    s
}

#[test]
fn glibc_a_and_aaaa_on_one_socket_answered_out_of_order() {
    let mut c = Conn::udp(Role::Client);
    // sendmmsg: two events; the answers come back AAAA first.
    c.send(&query(0x765b, "web.e2e.test", TYPE_A));
    c.send(&query(0x4e45, "web.e2e.test", TYPE_AAAA));
    c.recv_from(
        &response(0x4e45, "web.e2e.test", TYPE_AAAA, 0, &[aaaa("fd00::1:2:3")]),
        "127.77.0.1:53",
    );
    c.recv_from(
        &response(0x765b, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")]),
        "127.77.0.1:53",
    );
    assert_eq!(
        c.lines(),
        [
            "DNS AAAA name=\"web.e2e.test\" ok answers=[fd00::1:2:3] udp peer=127.77.0.1:53",
            "DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] udp peer=127.77.0.1:53",
        ]
    );
    // Times: each span from its own query to its own answer.
    assert_eq!((c.out[0].start_ns, c.out[0].end_ns), (3_000, 4_000));
    assert_eq!((c.out[1].start_ns, c.out[1].end_ns), (2_000, 5_000));
    assert_eq!(c.stats.records, 2);
}

#[test]
fn server_socket_pairs_by_client_too() {
    // dnsmasq's unconnected socket: two clients ask the same question with the same id.
    let mut c = Conn::udp(Role::Server);
    let q = query(77, "web.e2e.test", TYPE_A);
    let r = response(77, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")]);
    c.recv_from(&q, "127.0.0.1:40001");
    c.recv_from(&q, "127.0.0.1:40002");
    c.send_to(&r, "127.0.0.1:40002");
    c.send_to(&r, "127.0.0.1:40001");
    assert_eq!(
        c.lines(),
        [
            "DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] udp peer=127.0.0.1:40002",
            "DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] udp peer=127.0.0.1:40001",
        ]
    );
    assert_eq!((c.out[0].start_ns, c.out[0].end_ns), (3_000, 4_000));
    assert_eq!((c.out[1].start_ns, c.out[1].end_ns), (2_000, 5_000));
}

#[test]
fn a_query_without_answer_is_counted_never_a_span() {
    let mut c = Conn::udp(Role::Client);
    c.send(&query(1, "web.e2e.test", TYPE_A));
    c.send(&query(2, "web.e2e.test", TYPE_AAAA));
    c.recv(&response(1, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")]));
    // Timeout: the sweep gives up on queries older than the deadline.
    c.parser.expire(2_500, &mut c.out, &mut c.stats);
    assert_eq!(c.stats.unmatched_requests, 0, "not yet: started at 3000");
    c.parser.expire(10_000, &mut c.out, &mut c.stats);
    assert_eq!(c.stats.unmatched_requests, 1);
    assert_eq!(c.out.len(), 1);
    // Closing the socket settles what is left the same way.
    c.send(&query(3, "web.e2e.test", TYPE_A));
    c.close();
    assert_eq!(c.stats.unmatched_requests, 2);
    assert_eq!(c.out.len(), 1);
}

#[test]
fn id_and_question_must_both_match() {
    let mut c = Conn::udp(Role::Client);
    c.send(&query(5, "web.e2e.test", TYPE_A));
    // Same id, another question; same question, another id; another class.
    c.recv(&response(5, "web.e2e.test", TYPE_AAAA, 0, &[]));
    c.recv(&response(6, "web.e2e.test", TYPE_A, 0, &[]));
    let mut chaos_class = response(5, "web.e2e.test", TYPE_A, 0, &[]);
    let at = chaos_class.len() - 1;
    chaos_class[at] = 3;
    c.recv(&chaos_class);
    assert!(c.out.is_empty());
    // The name compares without case (0x20 randomisation).
    c.recv(&response(5, "WEB.e2e.TEST", TYPE_A, 0, &[a("10.1.2.3")]));
    assert_eq!(
        c.lines(),
        ["DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] udp"]
    );
    c.close();
    assert_eq!(c.stats.unmatched_responses, 3);
}

#[test]
fn an_answer_from_another_address_is_not_an_answer() {
    let mut c = Conn::udp(Role::Client);
    c.send_to(&query(5, "web.e2e.test", TYPE_A), "127.77.0.1:53");
    c.recv_from(
        &response(5, "web.e2e.test", TYPE_A, 0, &[]),
        "127.77.0.2:53",
    );
    assert!(c.out.is_empty());
    c.recv_from(
        &response(5, "web.e2e.test", TYPE_A, 0, &[]),
        "127.77.0.1:53",
    );
    assert_eq!(c.out.len(), 1);
}

#[test]
fn errors_truncation_and_retransmission() {
    let mut c = Conn::udp(Role::Client);
    c.send(&query(1, "missing.e2e.test", TYPE_A));
    c.recv(&response(1, "missing.e2e.test", TYPE_A, 3, &[]));
    c.send(&query(2, "many.e2e.test", TYPE_A));
    c.recv(&response_with(
        2,
        "many.e2e.test",
        TYPE_A,
        FLAG_TC,
        0,
        [&[a("10.2.0.1")], &[], &[]],
    ));
    // A retransmission with the same id: the answer pairs with the first copy.
    c.send(&query(3, "web.e2e.test", TYPE_A));
    c.send(&query(3, "web.e2e.test", TYPE_A));
    c.recv(&response(3, "web.e2e.test", TYPE_A, 2, &[]));
    assert_eq!(
        c.lines(),
        [
            "DNS A name=\"missing.e2e.test\" NXDOMAIN udp",
            "DNS A name=\"many.e2e.test\" ok answers=[10.2.0.1] tc udp",
            "DNS A name=\"web.e2e.test\" SERVFAIL udp",
        ]
    );
    assert_eq!(c.out[2].start_ns, 6_000);
    c.close();
    assert_eq!(c.stats.unmatched_requests, 1);
}

#[test]
fn response_before_its_query_still_pairs() {
    // Two threads: the answer's event reaches user space before the query's.
    let mut s = DnsStitcher;
    let mut reqs = VecDeque::new();
    let mut resps = VecDeque::new();
    let (mut out, mut stats) = (Vec::new(), ParseStats::default());
    let q = framed(udp(Request, &query(9, "web.e2e.test", TYPE_A)), 30);
    let r = framed(
        udp(Response, &response(9, "web.e2e.test", TYPE_A, 0, &[])),
        30,
    );
    resps.push_back(Timed::new(20, 20, r.clone()));
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert!(out.is_empty());
    reqs.push_back(Timed::new(10, 10, q.clone()));
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ns, out[0].end_ns), (10, 20));
    // But never an answer that ended before the query started.
    resps.push_back(Timed::new(5, 5, r));
    reqs.push_back(Timed::new(10, 10, q));
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert_eq!(out.len(), 1);
    s.expire(&mut reqs, &mut resps, u64::MAX, &mut out, &mut stats);
    assert_eq!(
        (stats.unmatched_requests, stats.unmatched_responses),
        (1, 1)
    );
    assert!(reqs.is_empty() && resps.is_empty());
}

#[test]
fn incomplete_answer_is_marked() {
    let mut s = DnsStitcher;
    let q = framed(udp(Request, &query(9, "web.e2e.test", TYPE_A)), 30);
    let r = framed(
        udp(Response, &response(9, "web.e2e.test", TYPE_A, 0, &[])),
        30,
    );
    let mut reqs = VecDeque::from([Timed::new(1, 1, q)]);
    let mut lost = Timed::new(2, 3, r);
    lost.complete = false;
    let mut resps = VecDeque::from([lost]);
    let (mut out, mut stats) = (Vec::new(), ParseStats::default());
    s.stitch(&mut reqs, &mut resps, &mut (), &mut out, &mut stats);
    assert_eq!(out[0].incomplete, Some(Incomplete::EndLost));
}

#[test]
fn glibc_tcp_fallback_pipelines_two_queries_in_one_write() {
    // writev of [len, A query, len, AAAA query]; dnsmasq answers both; glibc reads the length
    // and the message with separate reads.
    let mut c = Conn::tcp(Role::Client);
    let qa = query(0xc18c, "many.e2e.test", TYPE_A);
    let q6 = query(0xd88e, "many.e2e.test", TYPE_AAAA);
    c.send(&[tcp(&qa), tcp(&q6)].concat());
    let many: Vec<Vec<u8>> = (1..=60).map(|i| a(&format!("10.2.0.{i}"))).collect();
    let ra = tcp(&response(0xc18c, "many.e2e.test", TYPE_A, 0, &many));
    let r6 = tcp(&response(0xd88e, "many.e2e.test", TYPE_AAAA, 3, &[]));
    c.recv(&ra[..2]);
    c.recv(&ra[2..]);
    c.recv(&r6[..2]);
    c.recv(&r6[2..]);
    let lines = c.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("DNS A name=\"many.e2e.test\" ok answers=[10.2.0.1,"));
    assert!(lines[0].ends_with("10.2.0.16] tcp"), "{}", lines[0]);
    assert_eq!(lines[1], "DNS AAAA name=\"many.e2e.test\" NXDOMAIN tcp");
    // The A answer ends at the read holding its last byte.
    assert_eq!(c.out[0].end_ns, 4_000);
}

#[test]
fn dnsmasq_reads_the_length_a_byte_at_a_time() {
    let mut c = Conn::tcp(Role::Server);
    let q = tcp(&query(0x4a3e, "web.e2e.test", TYPE_A));
    c.recv(&q[..1]);
    c.recv(&q[1..2]);
    c.recv(&q[2..]);
    c.send(&tcp(&response(
        0x4a3e,
        "web.e2e.test",
        TYPE_A,
        0,
        &[a("10.1.2.3")],
    )));
    assert_eq!(
        c.lines(),
        ["DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] tcp"]
    );
    assert_eq!((c.out[0].start_ns, c.out[0].end_ns), (2_000, 5_000));
}

#[test]
fn tcp_answers_out_of_order() {
    // RFC 7766 §6.2.1.1: a server may answer pipelined queries in any order.
    let mut c = Conn::tcp(Role::Client);
    c.send(&tcp(&query(1, "a.e2e.test", TYPE_A)));
    c.send(&tcp(&query(2, "b.e2e.test", TYPE_A)));
    c.recv(
        &[
            tcp(&response(2, "b.e2e.test", TYPE_A, 0, &[])),
            tcp(&response(1, "a.e2e.test", TYPE_A, 0, &[])),
        ]
        .concat(),
    );
    assert_eq!(
        c.lines(),
        [
            "DNS A name=\"b.e2e.test\" ok tcp",
            "DNS A name=\"a.e2e.test\" ok tcp"
        ]
    );
}

#[test]
fn truncated_capture_of_a_long_tcp_answer() {
    // The kernel copied only the first 100 bytes of a 1 KiB answer: the frame is cut from
    // them and ends at the syscall that carried its last byte.
    let mut c = Conn::tcp(Role::Client);
    c.send(&tcp(&query(3, "many.e2e.test", TYPE_A)));
    let many: Vec<Vec<u8>> = (1..=60).map(|i| a(&format!("10.2.0.{i}"))).collect();
    let r = tcp(&response(3, "many.e2e.test", TYPE_A, 0, &many));
    c.feed(Direction::Ingress, &r[..100], r.len() as u32, None);
    assert_eq!(c.out.len(), 1);
    let Exchange::Dns(d) = &c.out[0].exchange else {
        panic!()
    };
    assert_eq!(d.answers.len(), 4, "the answers that were captured whole");
    assert_eq!(c.out[0].incomplete, None);
    // The next exchange on the connection is intact.
    c.send(&tcp(&query(4, "web.e2e.test", TYPE_A)));
    c.recv(&tcp(&response(
        4,
        "web.e2e.test",
        TYPE_A,
        0,
        &[a("10.1.2.3")],
    )));
    assert_eq!(c.out.len(), 2);
}

#[test]
fn lost_bytes_in_a_tcp_answer_mark_it_incomplete() {
    let many: Vec<Vec<u8>> = (1..=60).map(|i| a(&format!("10.2.0.{i}"))).collect();
    let r = tcp(&response(3, "many.e2e.test", TYPE_A, 0, &many));
    // A small buffer cap: the framer cuts the frame before all of it is buffered.
    let limits = ParserLimits {
        max_buffer_bytes: 256,
        ..ParserLimits::default()
    };
    let mut small = Conn::new(Role::Client, false, limits);
    small.send(&tcp(&query(3, "many.e2e.test", TYPE_A)));
    small.recv(&r[..200]);
    // The chunk holding the end is lost; the next one starts past it.
    small.pos[1] = r.len() as u64 + 10;
    small.recv(&tcp(&response(9, "x.e2e.test", TYPE_A, 0, &[])));
    assert_eq!(small.out.len(), 1);
    assert_eq!(small.out[0].incomplete, Some(Incomplete::EndLost));
}

#[test]
fn mid_stream_attach_on_tcp_resyncs() {
    let mut c = Conn::tcp(Role::Client);
    let first = tcp(&query(1, "web.e2e.test", TYPE_A));
    // Watched from the middle of a query: its tail, then a whole exchange.
    c.pos[0] = 5;
    c.send(&[&first[5..], &tcp(&query(2, "web.e2e.test", TYPE_AAAA))[..]].concat());
    c.recv(&tcp(&response(1, "web.e2e.test", TYPE_A, 0, &[])));
    c.recv(&tcp(&response(
        2,
        "web.e2e.test",
        TYPE_AAAA,
        0,
        &[aaaa("fd00::1")],
    )));
    assert_eq!(
        c.lines(),
        ["DNS AAAA name=\"web.e2e.test\" ok answers=[fd00::1] tcp"]
    );
}

#[test]
fn server_side_mirrors_client_side() {
    let mut c = Conn::udp(Role::Server);
    c.recv_from(&query(1, "web.e2e.test", TYPE_A), "127.0.0.1:5000");
    c.send_to(
        &response(1, "web.e2e.test", TYPE_A, 0, &[a("10.1.2.3")]),
        "127.0.0.1:5000",
    );
    assert_eq!(
        c.lines(),
        ["DNS A name=\"web.e2e.test\" ok answers=[10.1.2.3] udp peer=127.0.0.1:5000"]
    );
}

#[test]
fn queue_bounds_count_drops() {
    let limits = ParserLimits {
        max_queued_frames: 4,
        ..ParserLimits::default()
    };
    let mut c = Conn::new(Role::Client, true, limits);
    for id in 0..10 {
        c.send(&query(id, "web.e2e.test", TYPE_A));
    }
    assert_eq!(c.stats.unmatched_requests, 6);
    c.recv(&response(9, "web.e2e.test", TYPE_A, 0, &[]));
    assert_eq!(c.out.len(), 1);
}

#[test]
fn secrets_never_reach_a_record() {
    let mut c = Conn::udp(Role::Client);
    let txt = {
        let mut d = vec![TXT_CANARY.len() as u8];
        d.extend_from_slice(TXT_CANARY.as_bytes());
        rr(&AT_QNAME, 16, CLASS_IN, 0, &d)
    };
    c.send(&query_with(
        1,
        &name_wire("txt.e2e.test"),
        16,
        Some(&cookie(COOKIE_CANARY)),
    ));
    c.recv(&response_with(
        1,
        "txt.e2e.test",
        16,
        0,
        0,
        [&[txt], &[], &[opt(0, &cookie(COOKIE_CANARY)), tsig()]],
    ));
    assert_eq!(c.out.len(), 1);
    let dump = format!("{:?}", c.out);
    for canary in [
        TXT_CANARY,
        std::str::from_utf8(TSIG_CANARY).unwrap(),
        std::str::from_utf8(COOKIE_CANARY).unwrap(),
    ] {
        assert!(!dump.contains(canary), "{canary} in {dump}");
    }
}

// ---------- (d) golden ----------

/// A capture (`testdata/capture.py`): direction, transport, flow, timestamp, bytes.
struct Captured {
    dir: u8,
    transport: u8,
    flow: u32,
    ts: u64,
    bytes: Vec<u8>,
}

fn capture_records(path: &std::path::Path) -> Vec<Captured> {
    let data = std::fs::read(path).unwrap();
    let mut recs = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let flow = u32::from_le_bytes(data[at + 2..at + 6].try_into().unwrap());
        let ts = u64::from_le_bytes(data[at + 6..at + 14].try_into().unwrap());
        let n = u32::from_le_bytes(data[at + 14..at + 18].try_into().unwrap()) as usize;
        recs.push(Captured {
            dir: data[at],
            transport: data[at + 1],
            flow,
            ts,
            bytes: data[at + 18..at + 18 + n].to_vec(),
        });
        at += 18 + n;
    }
    recs
}

/// Replays a capture as the clients saw it (one socket per flow, the server as the datagrams'
/// peer) or as the server saw it (one unconnected UDP socket for every client, one TCP socket
/// per connection), TCP records cut into pieces of at most `piece` bytes.
fn replay(recs: &[Captured], server_view: bool, piece: usize) -> (Vec<String>, ParseStats) {
    let server: SocketAddr = "127.77.0.8:53".parse().unwrap();
    let role = if server_view {
        Role::Server
    } else {
        Role::Client
    };
    let mut conns: std::collections::BTreeMap<(u8, u32), Conn> = Default::default();
    let mut order: Vec<(u64, String)> = Vec::new();
    for r in recs {
        let udp = r.transport == b'U';
        let key = (r.transport, if udp && server_view { 0 } else { r.flow });
        let c = conns
            .entry(key)
            .or_insert_with(|| Conn::new(role, udp, ParserLimits::default()));
        let client_sent = r.dir == b'C';
        let dir = if client_sent != server_view {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let peer = if !udp {
            None
        } else if server_view {
            Some(format!("127.0.0.1:{}", r.flow))
        } else {
            Some(server.to_string())
        };
        let pieces: Vec<&[u8]> = if udp {
            vec![&r.bytes]
        } else {
            r.bytes.chunks(piece.max(1)).collect()
        };
        for p in pieces {
            c.ts = r.ts - 1_000;
            let before = c.out.len();
            c.feed(dir, p, p.len() as u32, peer.as_deref());
            for rec in &c.out[before..] {
                order.push((rec.end_ns, render(rec)));
            }
        }
    }
    let mut stats = ParseStats::default();
    for c in conns.values_mut() {
        let before = c.out.len();
        c.close();
        assert_eq!(c.out.len(), before, "closing adds no record");
        stats.add(&c.stats);
    }
    let first = recs.first().map_or(0, |r| r.ts);
    let lines = order
        .into_iter()
        .map(|(end, line)| format!("+{:>6}us {line}", (end - first) / 1_000))
        .collect();
    (lines, stats)
}

fn check_golden(golden: &std::path::Path, text: &str) {
    testkit::check_golden(golden, text, &["e2e-txt-record"]);
}

#[test]
fn golden_captures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol/dns/testdata");
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
        for (server_view, suffix) in [(false, "client.golden"), (true, "server.golden")] {
            let (lines, stats) = replay(&recs, server_view, usize::MAX);
            check_golden(&path.with_extension(suffix), &golden_text(&lines, &stats));
            // Any chunking of the TCP streams gives the same records.
            for piece in [1, 2, 3, 7, 64] {
                let (again, _) = replay(&recs, server_view, piece);
                assert_eq!(again, lines, "{} in pieces of {piece}", path.display());
            }
        }
    }
    assert!(seen > 0, "no captures in {}", dir.display());
}

// ---------- properties ----------

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Arbitrary bytes in arbitrary chunking, both roles, stream and datagram mode.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        chaos::drive(Protocol::Dns, &data);
    }

    /// A real response with bytes flipped: never a panic, always within the bounds.
    #[test]
    fn mutated_responses_stay_bounded(
        flips in proptest::collection::vec((0usize..600, proptest::num::u8::ANY), 1..12),
        cut in 0usize..600,
        truncated in proptest::bool::ANY,
    ) {
        let many: Vec<Vec<u8>> = (1..=20).map(|i| a(&format!("10.2.0.{i}"))).collect();
        let mut msg = response_with(
            1, "many.e2e.test", TYPE_A, 0, 0, [&many, &[], &[opt(0, &cookie(COOKIE_CANARY)), tsig()]],
        );
        for (at, b) in flips {
            let n = msg.len();
            msg[at % n] = b;
        }
        let msg = &msg[..cut.min(msg.len())];
        for kind in [Request, Response] {
            if let Parse::Frame { frame, len } = DnsFramer::default().parse_datagram(kind, msg, truncated, &mut ()) {
                proptest::prop_assert_eq!(len, msg.len());
                proptest::prop_assert!(frame.answers.len() <= DNS_MAX_ANSWERS);
                proptest::prop_assert!(frame.question.name.len() <= DNS_MAX_NAME_TEXT);
            }
            let framed = tcp(msg);
            if let Parse::Frame { len, .. } = DnsFramer::default().parse(kind, &framed, &mut ()) {
                proptest::prop_assert_eq!(len, framed.len());
            }
        }
    }
}
