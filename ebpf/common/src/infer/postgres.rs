//! PostgreSQL frontend/backend protocol v3
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>).
//!
//! The client speaks first: a StartupMessage (length, protocol 3.0), or an SSLRequest /
//! GSSENCRequest (length 8, a magic code) that the server answers with one byte (`N` or `S`).
//! Connections that predate the receiver are inferred from a regular message: a type byte, a
//! big-endian length that fits the syscall, and a shape check per type.

use crate::{direction, proto, role};

use super::{Inferred, Message};

/// Protocol major version 3 in a StartupMessage (3.0; 3.2 since PostgreSQL 18).
const PROTOCOL_3: u32 = 3;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// Largest message length taken as plausible (a query text can be long; 64 MiB is plenty).
const MAX_LEN: u32 = 64 << 20;
/// A syscall this large may carry only the start of a long message.
const PARTIAL_MIN: u64 = 1024;

#[inline(always)]
fn be32(h: &[u8; 16], at: usize) -> u32 {
    u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    if msg.seen < 8 {
        return None;
    }
    let h = msg.head;
    let egress = msg.direction == direction::EGRESS;
    let client = Inferred {
        protocol: proto::POSTGRES,
        role: if egress { role::CLIENT } else { role::SERVER },
    };
    let server = Inferred {
        protocol: proto::POSTGRES,
        role: if egress { role::SERVER } else { role::CLIENT },
    };
    // Untyped first messages: length, then a code.
    let len0 = be32(h, 0);
    let code = be32(h, 4);
    if u64::from(len0) == msg.total {
        if len0 == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
            return Some(client);
        }
        if code >> 16 == PROTOCOL_3 && (9..=10_000).contains(&len0) {
            return Some(client);
        }
    }
    // A typed message: type byte, length (counting itself), body.
    let ty = h[0];
    let len = be32(h, 1);
    if !(4..=MAX_LEN).contains(&len) {
        return None;
    }
    let whole = u64::from(len) < msg.total;
    if !whole && msg.total < PARTIAL_MIN {
        return None;
    }
    let b = h[5];
    // An upper-case word, or a localized one (UTF-8).
    let word = |c: u8| c.is_ascii_uppercase() || c >= 0x80;
    match ty {
        // Query: SQL text (a keyword, a parenthesis or a comment first).
        b'Q' if len > 5
            && (b.is_ascii_alphabetic()
                || matches!(b, b' ' | b'(' | b'\n' | b'\t' | b'\r' | b'/' | b'-')) =>
        {
            Some(client)
        }
        // Parse: statement name (often empty) then the query text.
        b'P' if len > 8 && (b == 0 || b.is_ascii_graphic()) => Some(client),
        // Bind: portal name (often empty), statement name, counts: how a connection using
        // prepared statements speaks first (pgbench -M prepared, psycopg prepare=True).
        b'B' if len >= 12 && (b == 0 || b.is_ascii_graphic()) => Some(client),
        // ReadyForQuery: transaction status.
        b'Z' if len == 5 && (b == b'I' || b == b'T' || b == b'E') => Some(server),
        // Authentication request: a known code.
        b'R' if len >= 8 && matches!(be32(h, 5), 0 | 2 | 3 | 5 | 7 | 8 | 9 | 10 | 11 | 12) => {
            Some(server)
        }
        // CommandComplete: an upper-case command tag (`DO` is the shortest). A client's Close
        // is `C`, `S`/`P`, then a name: drivers' names (`S_1`, `C_2`) have a non-letter early.
        b'C' if len > 5
            && b.is_ascii_uppercase()
            && h[6].is_ascii_uppercase()
            && (h[7].is_ascii_uppercase() || h[7] == 0 || h[7] == b' ') =>
        {
            Some(server)
        }
        // RowDescription: a small field count.
        b'T' if len >= 6 && h[5] == 0 && h[6] < 0x10 => Some(server),
        // ErrorResponse / NoticeResponse: the severity field first (`SERROR`, `SFATAL`,
        // localized or not). A client's Execute is `E` then a portal name (`C_1`).
        b'E' | b'N' if len > 8 && b == b'S' && word(h[6]) && word(h[7]) => Some(server),
        // ParseComplete, BindComplete: empty bodies, and more follows in the same read.
        b'1' | b'2' if len == 4 && msg.total > 5 => Some(server),
        _ => None,
    }
}
