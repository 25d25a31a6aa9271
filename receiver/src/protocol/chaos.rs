//! Arbitrary bytes in arbitrary chunking through a [`ConnParser`], for the fuzz targets
//! (`receiver/fuzz/fuzz_targets/<proto>_framer.rs`) and the no-panic property tests of every
//! protocol. One driver, so every protocol is held to the same invariants:
//! - no panic, whatever the bytes, chunking, duplicates, gaps, truncation or datagram mode;
//! - bounded memory: never more than twice `max_buffer_bytes` buffered;
//! - every record counted, and none ends before it starts.
//!
//! Input layout: byte 0 picks the role (bit 0) and datagram mode (bit 1); then repeated
//! `[ctl, n, n bytes…]` where `ctl` picks the direction (bit 0), a duplicate rewind (bit 1), a
//! loss jump (bit 2) and a truncated capture (bits 3..=5: bytes reported but not copied); bit 6
//! makes the chunk length-only (sendfile).

use crate::model::{Direction, Protocol, Role};
use crate::protocol::{Chunk, ConnParser, ParseStats, ParserLimits};
use crate::record::Record;

/// Buffer cap used by the driver (small, so the bounds are exercised).
pub const MAX_BUFFER_BYTES: usize = 1024;

/// Runs `data` through a fresh parser of `protocol`; returns the records and the counters.
/// Panics (the fuzzer's signal) when an invariant above does not hold.
pub fn drive(protocol: Protocol, data: &[u8]) -> (Vec<Record>, ParseStats) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return (Vec::new(), ParseStats::default());
    };
    let role = if mode & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let datagram = mode & 2 != 0;
    let limits = ParserLimits {
        max_buffer_bytes: MAX_BUFFER_BYTES,
        max_queued_frames: 16,
        max_query_text_bytes: 128,
    };
    let mut parser = ConnParser::new(protocol, role, limits);
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    let (mut egress_pos, mut ingress_pos) = (0u64, 0u64);
    let mut ts = 0u64;
    while let [ctl, n, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let (bytes, after) = tail.split_at(n);
        rest = after;
        let (direction, pos) = if ctl & 1 == 0 {
            (Direction::Egress, &mut egress_pos)
        } else {
            (Direction::Ingress, &mut ingress_pos)
        };
        let mut at = *pos;
        if ctl & 2 != 0 {
            at = at.saturating_sub(u64::from(ctl >> 4));
        }
        if ctl & 4 != 0 {
            at += u64::from(ctl >> 3);
        }
        let bytes = if ctl & 64 != 0 { &[][..] } else { bytes };
        let missing = u32::from((ctl >> 3) & 7) * 100;
        let len = n as u32 + missing;
        ts += 1;
        parser.on_data(
            Chunk {
                direction,
                pos: at,
                ts_ns: ts,
                bytes,
                len,
                datagram,
                peer: None,
            },
            &mut out,
            &mut stats,
        );
        *pos = (*pos).max(at + u64::from(len));
        assert!(parser.buffered_bytes() <= 2 * MAX_BUFFER_BYTES);
    }
    parser.close(&mut out, &mut stats);
    assert_eq!(stats.records as usize, out.len());
    for r in &out {
        assert!(r.end_ns >= r.start_ns);
        assert_eq!(r.protocol, protocol);
    }
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Every protocol survives arbitrary input in every mode.
        #[test]
        fn no_protocol_panics_on_arbitrary_input(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            for &p in Protocol::ALL {
                drive(p, &data);
            }
        }
    }
}
