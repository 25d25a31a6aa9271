//! Arbitrary bytes through every parser, for the fuzz targets (`receiver/fuzz/fuzz_targets/`,
//! one per entry of [`TARGETS`]), their seed corpus (`receiver/fuzz/seeds/<target>/`, replayed
//! as regression tests) and the no-panic property tests of every protocol. One driver per
//! target, so every input is held to the same invariants:
//! - no panic, whatever the bytes, chunking, duplicates, gaps, truncation or datagram mode;
//! - bounded memory: never more than `max_buffer_bytes` buffered per direction;
//! - every record counted, none ends before it starts, and the span each one becomes (with the
//!   exporter's own encoder) passes [`crate::span::schema`].
//!
//! Framer input layout ([`drive`]): byte 0 picks the role (bit 0) and datagram mode (bit 1);
//! then repeated `[ctl, n, n bytes…]` where `ctl` picks the direction (bit 0), a duplicate
//! rewind (bit 1), a loss jump (bit 2) and a truncated capture (bits 3..=5: bytes reported but
//! not copied); bit 6 makes the chunk length-only (sendfile). [`encode`] writes that layout.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use ebpf_common::INFER_BYTES;
use ebpf_common::infer::{self as kinfer, Message};

use crate::model::{ConnMeta, Direction, ProcessMeta, Protocol, Role, Transport};
use crate::protocol::sql::{self, Dialect, MAX_SUMMARY_BYTES, Statement};
use crate::protocol::{Chunk, ConnParser, ParseStats, ParserLimits};
use crate::record::{ConnRecord, Record};
use crate::span::schema::{self, Caps};

/// Buffer cap used by the driver (small, so the bounds are exercised).
pub const MAX_BUFFER_BYTES: usize = 1024;

/// The limits of every connection the driver makes.
pub const LIMITS: ParserLimits = ParserLimits {
    max_buffer_bytes: MAX_BUFFER_BYTES,
    max_queued_frames: 16,
    max_query_text_bytes: 128,
};

/// A fuzz target: its name (the `[[bin]]` of `receiver/fuzz/Cargo.toml` and the folder of its
/// seeds) and the driver it runs on each input.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "mysql_framer",
        run: |d| drop(drive(Protocol::Mysql, d)),
    },
    Target {
        name: "postgres_framer",
        run: |d| drop(drive(Protocol::Postgres, d)),
    },
    Target {
        name: "redis_framer",
        run: |d| drop(drive(Protocol::Redis, d)),
    },
    Target {
        name: "http1_framer",
        run: |d| drop(drive(Protocol::Http1, d)),
    },
    Target {
        name: "dns_framer",
        run: |d| drop(drive(Protocol::Dns, d)),
    },
    Target {
        name: "sql_sanitizer",
        run: drive_sql,
    },
    Target {
        name: "infer",
        run: drive_infer,
    },
];

/// The framer target of `protocol`.
pub fn framer_target(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Mysql => "mysql_framer",
        Protocol::Postgres => "postgres_framer",
        Protocol::Redis => "redis_framer",
        Protocol::Http1 => "http1_framer",
        Protocol::Dns => "dns_framer",
    }
}

/// The connection a record of the driver came from (addresses made up, the role and transport
/// those of the input), as the tracker would attach it.
pub fn conn_meta(role: Role, transport: Transport) -> ConnMeta {
    static PROCESS: OnceLock<Arc<ProcessMeta>> = OnceLock::new();
    let client: SocketAddr = SocketAddr::from(([127, 0, 0, 2], 40_000));
    let server: SocketAddr = SocketAddr::from(([127, 0, 0, 3], 4_000));
    let (local, peer) = match role {
        Role::Client => (client, server),
        Role::Server => (server, client),
    };
    ConnMeta {
        role: Some(role),
        transport: Some(transport),
        local: Some(local),
        peer: Some(peer),
        unix_path: None,
        process: PROCESS
            .get_or_init(|| {
                Arc::new(ProcessMeta {
                    pid: 1,
                    executable_name: "fuzz".into(),
                    ..ProcessMeta::default()
                })
            })
            .clone(),
    }
}

/// Turns `rec` into its span as the tracker and the exporter would (wall clock = boot time +
/// 1.7e18 ns) and checks it against the schema; `Err` names the violation.
pub fn check_span(meta: &ConnMeta, rec: &Record, limits: &ParserLimits) -> Result<(), String> {
    const EPOCH_OFFSET: u64 = 1_700_000_000_000_000_000;
    if rec.end_ns < rec.start_ns {
        return Err(format!(
            "record ends before it starts: {} < {}",
            rec.end_ns, rec.start_ns
        ));
    }
    let mut conn = meta.clone();
    if rec.peer.is_some() {
        conn.peer = rec.peer;
    }
    let cr = ConnRecord {
        conn,
        protocol: rec.protocol,
        start_unix_ns: rec.start_ns.saturating_add(EPOCH_OFFSET),
        end_unix_ns: rec.end_ns.saturating_add(EPOCH_OFFSET),
        incomplete: rec.incomplete,
        exchange: rec.exchange.clone(),
    };
    let caps = Caps {
        max_query_text_bytes: limits.max_query_text_bytes,
    };
    schema::check_record(&cr, &caps)
        .map(drop)
        .map_err(|e| format!("{e}\nrecord: {rec:?}"))
}

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
    let meta = conn_meta(
        role,
        if datagram {
            Transport::Udp
        } else {
            Transport::Tcp
        },
    );
    let mut parser = ConnParser::new(protocol, role, LIMITS);
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
        assert_eq!(r.protocol, protocol);
        assert_eq!(check_span(&meta, r, &LIMITS), Ok(()), "span schema");
    }
    (out, stats)
}

/// Writes the [`drive`] layout: `mode`, then each `(ctl, bytes)` as `[ctl, n, bytes]` pieces of
/// at most 255 bytes (a longer chunk becomes several with the same `ctl`).
pub fn encode(mode: u8, chunks: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![mode];
    for &(ctl, bytes) in chunks {
        if bytes.is_empty() {
            out.extend_from_slice(&[ctl, 0]);
        }
        for piece in bytes.chunks(255) {
            out.push(ctl);
            out.push(piece.len() as u8);
            out.extend_from_slice(piece);
        }
    }
    out
}

// ---- SQL sanitiser ------------------------------------------------------------------------------

const S: &str = "s3cr3t-CANARY";
const T: &str = "q7xy2w-PLUMBO";

/// A literal (or comment) with `{}` where its content goes, the content, and a twin content of
/// the same length and shape.
const MYSQL_LITERALS: &[(&str, &str, &str)] = &[
    ("'{}'", S, T),
    ("\"{}\"", S, T),
    (r"'it\'s {}'", S, T),
    ("'it''s {}'", S, T),
    ("0x{}", "CAFEBABE", "DEADBEEF"),
    ("X'{}'", "CAFEBABE", "DEADBEEF"),
    ("0b{}", "101101", "010010"),
    ("b'{}'", "101101", "010010"),
    ("N'{}'", S, T),
    ("_utf8mb4'{}'", S, T),
    ("{}", "86753091", "12345678"),
    ("-{}", "4.25e7", "9.75e3"),
    ("/* {} */", S, T),
    ("/*! {} */", S, T),
    ("# {}\n", S, T),
    ("-- {}\n", S, T),
];

const POSTGRES_LITERALS: &[(&str, &str, &str)] = &[
    ("'{}'", S, T),
    ("'it''s {}'", S, T),
    (r"E'it\'s {}\\'", S, T),
    ("U&'{}'", S, T),
    ("$${}$$", S, T),
    ("$tag${}$tag$", S, T),
    ("$a$ $b$ {} $b$ $a$", S, T),
    ("B'{}'", "101101", "010010"),
    ("X'{}'", "CAFEBABE", "DEADBEEF"),
    ("0x{}", "CAFEBABE", "DEADBEEF"),
    ("{}", "86753091", "12345678"),
    ("-{}", "4.25e7", "9.75e3"),
    ("DATE '{}'", "2024-01-31", "1999-12-25"),
    ("/* /* {} */ still */", S, T),
    ("--{}\n", S, T),
];

fn check_statement(st: &Statement, cap: usize) {
    if let Some(t) = &st.text {
        assert!(!t.is_empty() && t.len() <= cap, "{t:?} over {cap}");
    }
    if let Some(s) = &st.summary {
        assert!(s.len() <= MAX_SUMMARY_BYTES, "{s:?}");
    }
}

/// Some 3-byte piece of the secret shows in `out`.
fn leaks(out: &[u8], secret: &str) -> bool {
    secret
        .as_bytes()
        .windows(3)
        .any(|w| out.windows(3).any(|o| o == w))
}

/// Arbitrary bytes through `sql::statement` in both dialects, whole and as a truncated capture,
/// then the fail-closed property: a canary literal placed after a prefix that lexes cleanly
/// never changes the output, whatever comes after it and wherever the capture is cut.
///
/// Input layout: byte 0 picks the dialect (bit 0) and the text cap (bits 1..=7, × 4 bytes);
/// byte 1 picks the canary; byte 2 picks the cut; the rest is SQL, split at its first NUL into
/// the prefix before the canary and the suffix after it.
pub fn drive_sql(data: &[u8]) {
    let [ctl, pick, cut, rest @ ..] = data else {
        return;
    };
    let dialect = if ctl & 1 == 0 {
        Dialect::Mysql
    } else {
        Dialect::Postgres
    };
    let cap = usize::from(ctl >> 1) * 4;

    // Any bytes: no panic, bounded output.
    for truncated in [false, true] {
        check_statement(&sql::statement(rest, truncated, dialect, cap), cap);
    }

    // A canary after a prefix that ends outside any literal or comment (the prefix alone
    // sanitises), separated by spaces so it starts a new token.
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (prefix, suffix) = rest.split_at(split);
    let prefix_text = String::from_utf8_lossy(prefix);
    if sql::sanitize(&prefix_text, dialect, usize::MAX).is_none() {
        return;
    }
    let table = match dialect {
        Dialect::Mysql => MYSQL_LITERALS,
        Dialect::Postgres => POSTGRES_LITERALS,
    };
    let Some(&(literal, secret, twin)) = table.get(usize::from(*pick) % table.len()) else {
        return;
    };
    let build = |content: &str| {
        let lit = literal.replace("{}", content);
        [prefix, b" ", lit.as_bytes(), b" ", suffix].concat()
    };
    let (a, b) = (build(secret), build(twin));
    // Cut anywhere from just before the canary to just after it, or keep the whole text.
    let at = prefix.len() + usize::from(*cut) % (literal.len() + secret.len() + 1);
    let context_leaks = leaks(prefix, secret) || leaks(suffix, secret);
    for (n, truncated) in [(a.len(), false), (at.min(a.len()), true)] {
        let (Some(x), Some(y)) = (a.get(..n), b.get(..n)) else {
            return;
        };
        let sx = sql::statement(x, truncated, dialect, cap);
        let sy = sql::statement(y, truncated, dialect, cap);
        assert_eq!(sx, sy, "the output depends on the canary's content");
        if !context_leaks {
            for part in [&sx.text, &sx.summary, &sx.use_schema]
                .into_iter()
                .flatten()
            {
                assert!(!leaks(part.as_bytes(), secret), "{part:?} leaks {secret:?}");
            }
        }
    }
}

// ---- kernel inference ---------------------------------------------------------------------------

/// The shared kernel/user inference (`ebpf_common::infer`) on arbitrary first bytes: no panic
/// (in the kernel a panic cannot happen, but an out-of-range index is a verifier rejection or
/// a wrong answer), an answer that names a known protocol and a role, the datagram rule (a
/// datagram socket is only ever DNS), determinism, and that only the first `seen` bytes count
/// (the kernel's scratch buffer holds stale bytes after them). `glues` answers MySQL, DNS or
/// nothing.
///
/// Input layout: byte 0: direction (bit 0), socket type (bits 1..=2: unknown, stream,
/// datagram), role hint (bits 3..=4: unknown, client, server); byte 1: `seen` (mod 17);
/// bytes 2..=9: `total` (u64 LE, raised to at least `seen`); then up to 16 head bytes.
pub fn drive_infer(data: &[u8]) {
    use ebpf_common::{direction, proto, role, sock};
    let [ctl, seen, t0, t1, t2, t3, t4, t5, t6, t7, head @ ..] = data else {
        return;
    };
    let dir = if ctl & 1 == 0 {
        direction::EGRESS
    } else {
        direction::INGRESS
    };
    let sock_type = match (ctl >> 1) & 3 {
        1 => sock::STREAM,
        2 => sock::DGRAM,
        _ => sock::UNKNOWN,
    };
    let role_hint = match (ctl >> 3) & 3 {
        1 => role::CLIENT,
        2 => role::SERVER,
        _ => role::UNKNOWN,
    };
    let seen = usize::from(*seen) % (INFER_BYTES + 1);
    let seen = seen.min(head.len());
    let total = u64::from_le_bytes([*t0, *t1, *t2, *t3, *t4, *t5, *t6, *t7]).max(seen as u64);
    let run = |stale: u8| {
        let mut buf = [stale; INFER_BYTES];
        for (dst, src) in buf.iter_mut().zip(head.iter().take(seen)) {
            *dst = *src;
        }
        kinfer::infer(&Message {
            head: &buf,
            seen,
            total,
            direction: dir,
            sock_type,
            role_hint,
        })
    };
    let answer = run(0);
    assert_eq!(answer, run(0), "not deterministic");
    for stale in [0xff, 0x2a, b'\r'] {
        assert_eq!(answer, run(stale), "bytes after `seen` changed the answer");
    }
    if let Some(found) = answer {
        assert!(
            (proto::MYSQL..proto::COUNT).contains(&found.protocol),
            "{found:?}"
        );
        assert!(
            found.role == role::CLIENT || found.role == role::SERVER,
            "{found:?}"
        );
        if sock_type == sock::DGRAM {
            assert_eq!(found.protocol, proto::DNS, "a datagram socket is only DNS");
        }
    }
    let pending = u32::from_le_bytes([*t0, *t1, *t2, *t3]);
    if let Some(p) = kinfer::glues(pending, *t4, total) {
        assert!(p == proto::MYSQL || p == proto::DNS, "glues: {p}");
    }
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

        #[test]
        fn inference_holds_on_arbitrary_input(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            drive_infer(&data);
        }
    }

    #[test]
    fn every_protocol_has_a_framer_target() {
        for &p in Protocol::ALL {
            let name = framer_target(p);
            assert!(TARGETS.iter().any(|t| t.name == name), "{name}");
        }
    }

    #[test]
    fn encode_round_trips_through_the_layout() {
        let long = vec![b'x'; 600];
        let data = encode(1, &[(0, b"abc"), (1, &long)]);
        assert_eq!(data.len(), 1 + 2 + 3 + 3 * 2 + 600);
        assert_eq!(&data[..6], &[1, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&data[6..8], &[1, 255]);
    }
}
