//! The pipeline itself, with a toy protocol: a frame is `F`, a 2-byte big-endian body length
//! and the body; the framer keeps the first body byte and cuts the frame as soon as its header
//! is buffered, so every body longer than what arrived exercises the tail (last-byte) logic.
//! Length 0xFFFF means "until the connection closes". The stitcher pairs frames in order.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::Pipeline;
use crate::model::{Direction, Protocol, Role};
use crate::protocol::{
    Chunk, Cursor, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher, Timed,
    UNTIL_CLOSE,
};
use crate::record::{DbExchange, Exchange, Incomplete, Record};

#[derive(Clone, Debug, PartialEq)]
struct Toy {
    first: Option<u8>,
}

struct ToyFramer;

impl Framer for ToyFramer {
    type Frame = Toy;
    type State = ();

    fn new(_: ParserLimits) -> Self {
        ToyFramer
    }

    fn parse(&self, _: MessageKind, buf: &[u8], _: &mut ()) -> Parse<Toy> {
        let mut c = Cursor::new(buf);
        match c.u8() {
            None => return Parse::Incomplete,
            Some(b'F') => {}
            Some(_) => return Parse::Invalid,
        }
        let Some(n) = c.u16_be() else {
            return Parse::Incomplete;
        };
        let len = if n == 0xffff {
            UNTIL_CLOSE
        } else {
            3 + usize::from(n)
        };
        Parse::Frame {
            frame: Toy { first: c.u8() },
            len,
        }
    }

    fn parse_before_gap(&self, kind: MessageKind, buf: &[u8], state: &mut ()) -> Parse<Toy> {
        self.parse(kind, buf, state)
    }

    fn find_boundary(&self, _: MessageKind, buf: &[u8], from: usize, _: &()) -> Option<usize> {
        (from..buf.len()).find(|&i| buf.get(i) == Some(&b'F'))
    }
}

/// Pairs in order; the record's text is `req>resp` (first body bytes as chars).
struct ToyStitcher;

impl Stitcher for ToyStitcher {
    type Frame = Toy;
    type State = ();

    fn new(_: ParserLimits) -> Self {
        ToyStitcher
    }

    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<Toy>>,
        resps: &mut VecDeque<Timed<Toy>>,
        _: &mut (),
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        while !reqs.is_empty() && !resps.is_empty() {
            let (Some(q), Some(r)) = (reqs.pop_front(), resps.pop_front()) else {
                return;
            };
            let ch = |t: &Toy| t.first.map_or('-', char::from);
            stats.records += 1;
            out.push(Record {
                protocol: Protocol::Mysql,
                start_ns: q.start_ns,
                end_ns: r.end_ns,
                incomplete: (!r.complete).then_some(Incomplete::EndLost),
                peer: q.peer,
                exchange: Exchange::Db(DbExchange {
                    query_text: Some(format!("{}>{}", ch(&q.frame), ch(&r.frame))),
                    ..DbExchange::default()
                }),
            });
        }
    }

    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<Toy>>,
        _: &mut VecDeque<Timed<Toy>>,
        deadline_ns: u64,
        _: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        while reqs.front().is_some_and(|q| q.start_ns < deadline_ns) {
            reqs.pop_front();
            stats.unmatched_requests += 1;
        }
    }
}

type Toys = Pipeline<ToyFramer, ToyStitcher>;

fn client() -> Toys {
    Pipeline::new(Role::Client, ParserLimits::default())
}

fn frame(first: u8, body_len: u16) -> Vec<u8> {
    let mut v = vec![b'F'];
    v.extend_from_slice(&body_len.to_be_bytes());
    v.extend(std::iter::repeat_n(first, usize::from(body_len)));
    v
}

/// A pipeline fed chunk by chunk, with stream positions kept per direction.
struct Run {
    p: Toys,
    pos: [u64; 2],
    out: Vec<Record>,
    stats: ParseStats,
}

impl Run {
    fn new(p: Toys) -> Run {
        Run {
            p,
            pos: [0, 0],
            out: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    /// `captured` of the `len` bytes reach us; positions advance by `len`.
    fn send(&mut self, dir: Direction, ts: u64, bytes: &[u8], len: usize) {
        let i = usize::from(dir == Direction::Ingress);
        let pos = self.pos[i];
        self.pos[i] += len as u64;
        self.p.on_data(
            Chunk {
                direction: dir,
                pos,
                ts_ns: ts,
                bytes,
                len: len as u32,
                datagram: false,
                peer: None,
            },
            &mut self.out,
            &mut self.stats,
        );
    }

    fn req(&mut self, ts: u64, bytes: &[u8]) {
        self.send(Direction::Egress, ts, bytes, bytes.len());
    }

    fn resp(&mut self, ts: u64, bytes: &[u8]) {
        self.send(Direction::Ingress, ts, bytes, bytes.len());
    }

    /// A length-only chunk (sendfile/splice).
    fn resp_uncaptured(&mut self, ts: u64, len: usize) {
        self.send(Direction::Ingress, ts, &[], len);
    }

    /// Positions jump: `len` response bytes were never reported (ring full).
    fn lose_resp(&mut self, len: usize) {
        self.pos[1] += len as u64;
    }

    fn records(&self) -> Vec<(String, u64, u64, Option<Incomplete>)> {
        self.out
            .iter()
            .map(|r| {
                let Exchange::Db(db) = &r.exchange else {
                    panic!("not a database record");
                };
                (
                    db.query_text.clone().unwrap_or_default(),
                    r.start_ns,
                    r.end_ns,
                    r.incomplete,
                )
            })
            .collect()
    }
}

#[test]
fn frames_split_across_chunks_and_pipelined_in_one() {
    let mut r = Run::new(client());
    let q = [frame(b'a', 3), frame(b'b', 1)].concat();
    r.req(10, &q[..2]);
    r.req(11, &q[2..]);
    let a = frame(b'x', 2);
    r.resp(20, &a[..4]);
    assert!(
        r.records().is_empty(),
        "the response's last byte has not arrived"
    );
    r.resp(21, &[a[4..].to_vec(), frame(b'y', 1)].concat());
    assert_eq!(
        r.records(),
        vec![("a>x".into(), 10, 21, None), ("b>y".into(), 11, 21, None)]
    );
    assert_eq!(r.stats.frames, 4);
    assert_eq!(r.stats.invalid + r.stats.bytes_lost, 0);
}

#[test]
fn a_long_body_ends_at_the_chunk_holding_its_last_byte() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'g', 1));
    let body = frame(b'z', 5000);
    r.resp(20, &body[..100]);
    r.resp(30, &body[100..4000]);
    assert!(r.records().is_empty());
    r.resp(40, &body[4000..]);
    assert_eq!(r.records(), vec![("g>z".into(), 10, 40, None)]);
}

#[test]
fn bytes_moved_by_sendfile_still_end_the_response() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'g', 1));
    // Header written, then the 1 MiB body by sendfile in two calls (length-only chunks).
    r.resp(20, &frame(b'f', 0xfff0)[..3]);
    r.resp_uncaptured(25, 0x8000);
    r.resp_uncaptured(60, 0xfff0 - 0x8000);
    assert_eq!(r.records(), vec![("g>-".into(), 10, 60, None)]);
    assert_eq!(r.stats.bytes_lost, 0, "skipped bytes are not lost");
    // The next exchange on the connection still frames.
    r.req(70, &frame(b'h', 1));
    r.resp(80, &frame(b'k', 1));
    assert_eq!(r.records().len(), 2);
}

#[test]
fn a_truncated_capture_ends_the_frame_in_the_same_chunk() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'g', 1));
    let body = frame(b't', 20000);
    // The kernel copied 16 KiB of the 20003 bytes of one read.
    r.send(Direction::Ingress, 20, &body[..16384], body.len());
    assert_eq!(r.records(), vec![("g>t".into(), 10, 20, None)]);
}

#[test]
fn a_lost_last_chunk_marks_the_response_incomplete() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'g', 1));
    let body = frame(b'z', 5000);
    r.resp(20, &body[..1000]);
    r.lose_resp(4003);
    r.req(90, &frame(b'h', 1));
    r.resp(95, &frame(b'k', 1));
    assert_eq!(
        r.records(),
        vec![
            ("g>z".into(), 10, 20, Some(Incomplete::EndLost)),
            ("h>k".into(), 90, 95, None),
        ],
        "the end is the last byte seen, never the next response's"
    );
}

#[test]
fn until_close_ends_at_the_last_byte_seen() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'g', 1));
    r.resp(20, &[b'F', 0xff, 0xff, b'c', b'd']);
    r.resp(30, b"more body");
    r.resp(40, b"and more");
    assert!(r.records().is_empty());
    r.p.close(&mut r.out, &mut r.stats);
    assert_eq!(r.records(), vec![("g>c".into(), 10, 40, None)]);
}

#[test]
fn close_in_the_middle_of_a_body_is_incomplete() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'g', 1));
    r.resp(20, &frame(b'z', 100)[..50]);
    r.p.close(&mut r.out, &mut r.stats);
    assert_eq!(
        r.records(),
        vec![("g>z".into(), 10, 20, Some(Incomplete::EndLost))]
    );
}

#[test]
fn garbage_is_counted_and_resynced_at_the_next_frame() {
    let mut r = Run::new(client());
    r.req(10, &[b"xyz".to_vec(), frame(b'a', 1)].concat());
    r.resp(20, &frame(b'b', 1));
    assert_eq!(r.records(), vec![("a>b".into(), 10, 20, None)]);
    assert_eq!(r.stats.invalid, 1);
    assert_eq!(r.stats.bytes_lost, 3);
}

#[test]
fn a_gap_mid_frame_resyncs() {
    let mut r = Run::new(client());
    let q = frame(b'a', 1);
    r.req(10, &q[..2]);
    // Egress bytes lost: the next chunk starts later in the stream.
    r.pos[0] += 10;
    r.req(12, &frame(b'c', 1));
    r.resp(20, &frame(b'd', 1));
    assert_eq!(r.records(), vec![("c>d".into(), 12, 20, None)]);
    assert!(r.stats.bytes_lost >= 2);
    assert_eq!(r.stats.resyncs, 1);
}

#[test]
fn duplicate_positions_are_ignored() {
    let mut r = Run::new(client());
    let q = frame(b'a', 4);
    r.req(10, &q);
    // The same bytes reported again (a retried read).
    r.pos[0] = 0;
    r.req(11, &q);
    r.resp(20, &frame(b'b', 1));
    assert_eq!(r.records(), vec![("a>b".into(), 10, 20, None)]);
    assert_eq!(r.stats.frames, 2);
}

#[test]
fn server_role_swaps_directions() {
    let mut r = Run::new(Pipeline::new(Role::Server, ParserLimits::default()));
    r.resp(10, &frame(b'q', 1)); // ingress = requests for a server
    r.req(20, &frame(b'r', 1));
    assert_eq!(r.records(), vec![("q>r".into(), 10, 20, None)]);
}

#[test]
fn the_queue_is_bounded() {
    let limits = ParserLimits {
        max_queued_frames: 4,
        ..ParserLimits::default()
    };
    let mut r = Run::new(Pipeline::new(Role::Client, limits));
    let many: Vec<u8> = (0..10u8).flat_map(|i| frame(b'a' + i, 0)).collect();
    r.req(10, &many);
    assert_eq!(r.p.queued_frames(), (4, 0));
    assert_eq!(r.stats.unmatched_requests, 6);
}

#[test]
fn datagrams_are_framed_one_by_one_with_their_peer() {
    let mut p = client();
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    let peer: SocketAddr = "10.1.2.3:53".parse().unwrap_or_else(|_| unreachable!());
    let mut dgram = |p: &mut Toys, dir, ts, bytes: &[u8], len: usize| {
        p.on_data(
            Chunk {
                direction: dir,
                pos: 0,
                ts_ns: ts,
                bytes,
                len: len as u32,
                datagram: true,
                peer: Some(peer),
            },
            &mut out,
            &mut stats,
        );
    };
    dgram(&mut p, Direction::Egress, 10, &frame(b'q', 2), 5);
    dgram(&mut p, Direction::Egress, 11, b"junk", 4);
    dgram(&mut p, Direction::Ingress, 20, &frame(b'a', 3)[..4], 6);
    assert_eq!(stats.invalid, 1, "junk is one invalid datagram, no resync");
    assert_eq!(stats.bytes_lost, 4 + 2);
    assert_eq!(out.len(), 1);
    let rec = &out[0];
    assert_eq!((rec.start_ns, rec.end_ns, rec.peer), (10, 20, Some(peer)));
    assert_eq!(p.buffered_bytes(), 0, "datagrams are never buffered");
}

#[test]
fn expired_requests_are_counted() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'a', 1));
    r.req(50, &frame(b'b', 1));
    r.p.expire(20, &mut r.out, &mut r.stats);
    assert_eq!(r.stats.unmatched_requests, 1);
    assert_eq!(r.p.queued_frames(), (1, 0));
}

#[test]
fn nothing_expires_while_a_response_is_still_arriving() {
    let mut r = Run::new(client());
    r.req(10, &frame(b'a', 1));
    // A long response: its head arrived, its last byte has not.
    r.resp(20, &frame(b'z', 5000)[..100]);
    r.p.expire(1_000, &mut r.out, &mut r.stats);
    assert_eq!(
        r.stats.unmatched_requests, 0,
        "the request is being answered"
    );
    r.resp_uncaptured(2_000, 5003 - 100);
    assert_eq!(r.records(), vec![("a>z".into(), 10, 2_000, None)]);
    // Without a response in flight the same deadline gives up.
    r.req(3_000, &frame(b'b', 1));
    r.p.expire(4_000, &mut r.out, &mut r.stats);
    assert_eq!(r.stats.unmatched_requests, 1);
}
