//! Arbitrary bytes in arbitrary chunking, both directions, both roles, through `ConnParser`.
//!
//! Input layout: byte 0 picks the role; then repeated `[ctl, n, n bytes…]` where `ctl` picks
//! the direction (bit 0), a duplicate rewind (bit 1), a loss jump (bit 2) and a truncated
//! capture (bits 3..=5 → bytes reported but not copied).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run mysql_framer -- -max_total_time=60`
#![no_main]

use ebpf_receiver::protocol::{Chunk, ConnParser, Direction, ParseStats, ParserLimits, Protocol};
use ebpf_receiver::record::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&role, mut rest)) = data.split_first() else {
        return;
    };
    let role = if role & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let limits = ParserLimits {
        max_buffer_bytes: 1024,
        max_queued_frames: 16,
        max_query_text_bytes: 128,
    };
    let mut parser = ConnParser::new(Protocol::Mysql, role, limits);
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    let mut pos = [0u64; 2];
    let mut ts = 0u64;
    while let [ctl, n, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        rest = after;
        let i = usize::from(ctl & 1);
        let dir = if i == 0 {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let mut at = pos[i];
        if ctl & 2 != 0 {
            at = at.saturating_sub(u64::from(ctl >> 4));
        }
        if ctl & 4 != 0 {
            at += u64::from(ctl >> 3);
        }
        let missing = u32::from((ctl >> 3) & 7) * 100;
        let len = chunk.len() as u32 + missing;
        ts += 1;
        parser.on_data(
            Chunk {
                direction: dir,
                pos: at,
                ts_ns: ts,
                bytes: chunk,
                len,
            },
            &mut out,
            &mut stats,
        );
        pos[i] = pos[i].max(at + u64::from(len));
        assert!(parser.buffered_bytes() <= 2 * 1024);
    }
    parser.expire(u64::MAX, &mut out, &mut stats);
    assert_eq!(stats.records as usize, out.len());
    for r in &out {
        assert!(r.end_ns >= r.start_ns);
    }
});
