//! Redis serialization protocol, RESP2 and RESP3 (<https://redis.io/docs/latest/develop/reference/protocol-spec/>).
//!
//! A command is an array of bulk strings (`*<n>\r\n$<len>\r\n…`) or an inline line starting
//! with a common command (`PING\r\n`, `SET k v\r\n`; `GET` is left to HTTP). Replies are
//! recognised only in unambiguous forms (`+OK`/`+PONG`/`+QUEUED` alone or pipelined, `-ERR …`,
//! `-WRONGTYPE …`, `:<n>\r\n`, `$<n>\r\n`) and say the sender is the server.
//!
//! An array alone does not say who sent it: a reply (`LRANGE`, a published message) is an array
//! too. When connect/accept gave the role, an array is a command in the direction the role
//! allows; when it did not (a socket that predates the receiver), an array infers nothing,
//! except a pub/sub `message`/`pmessage`/`smessage`, which only a server sends. Such a connection
//! is inferred from its next inline command or unambiguous reply instead of guessing a role.

use crate::{direction, proto, role};

use super::{Inferred, Message};

/// `*<digits>\r\n$<digit>` with up to 3 digits: the head of an array of bulk strings.
#[inline(always)]
fn command_array(h: &[u8; 16]) -> bool {
    if h[0] != b'*' || !h[1].is_ascii_digit() || h[1] == b'0' {
        return false;
    }
    let at = if h[2] == b'\r' {
        2
    } else if h[2].is_ascii_digit() && h[3] == b'\r' {
        3
    } else if h[2].is_ascii_digit() && h[3].is_ascii_digit() && h[4] == b'\r' {
        4
    } else {
        return false;
    };
    h[at + 1] == b'\n' && h[at + 2] == b'$' && h[at + 3].is_ascii_digit()
}

/// `*<n>\r\n$7\r\nmessage`, `$8\r\npmessage`, `$8\r\nsmessage`: a published message, which a
/// server pushes to a subscriber.
#[inline(always)]
fn pubsub_message(h: &[u8; 16]) -> bool {
    if h[0] != b'*' || !h[1].is_ascii_digit() || h[2] != b'\r' || h[4] != b'$' {
        return false;
    }
    let at = match (h[5], h[8]) {
        (b'7', _) => 8,
        (b'8', b'p') | (b'8', b's') => 9,
        _ => return false,
    };
    h[6] == b'\r'
        && h[7] == b'\n'
        && h[at] == b'm'
        && h[at + 1] == b'e'
        && h[at + 2] == b's'
        && h[at + 3] == b's'
        && h[at + 4] == b'a'
        && h[at + 5] == b'g'
}

/// A space or a line end after an inline command's name.
#[inline(always)]
fn ends_word(b: u8) -> bool {
    b == b' ' || b == b'\r' || b == b'\n'
}

/// The first four bytes as a little-endian word, for one switch over command names.
const fn word(w: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*w)
}

/// An inline command: a common command name in upper case, then a space or the line end.
/// Only names no other text protocol starts a message with (no `GET`: HTTP; no `QUIT`: SMTP,
/// FTP, POP3). One switch on the first four bytes keeps the verifier's paths few.
#[inline(always)]
fn inline_command(h: &[u8; 16]) -> bool {
    const PING: u32 = word(b"PING");
    const ECHO: u32 = word(b"ECHO");
    const AUTH: u32 = word(b"AUTH");
    const INCR: u32 = word(b"INCR");
    const INFO: u32 = word(b"INFO");
    const KEYS: u32 = word(b"KEYS");
    const HSET: u32 = word(b"HSET");
    const HGET: u32 = word(b"HGET");
    const SADD: u32 = word(b"SADD");
    const ZADD: u32 = word(b"ZADD");
    const MGET: u32 = word(b"MGET");
    const SET: u32 = word(b"SET ");
    const DEL: u32 = word(b"DEL ");
    const SELE: u32 = word(b"SELE");
    const HELL: u32 = word(b"HELL");
    const PUBL: u32 = word(b"PUBL");
    const SUBS: u32 = word(b"SUBS");
    const LPUS: u32 = word(b"LPUS");
    const RPUS: u32 = word(b"RPUS");
    const MULT: u32 = word(b"MULT");
    match u32::from_le_bytes([h[0], h[1], h[2], h[3]]) {
        PING | ECHO | AUTH | INCR | INFO | KEYS | HSET | HGET | SADD | ZADD | MGET => {
            ends_word(h[4])
        }
        SET | DEL => true,
        SELE => h[4] == b'C' && h[5] == b'T' && ends_word(h[6]),
        HELL => h[4] == b'O' && ends_word(h[5]),
        PUBL => h[4] == b'I' && h[5] == b'S' && h[6] == b'H' && ends_word(h[7]),
        SUBS => h[4] == b'C' && h[5] == b'R' && h[6] == b'I' && h[7] == b'B' && h[8] == b'E',
        LPUS | RPUS => h[4] == b'H' && ends_word(h[5]),
        MULT => h[4] == b'I' && ends_word(h[5]),
        _ => false,
    }
}

/// `:<digits>\r\n` or `$<digits>\r\n` (a bulk reply header), with a sign for integers.
#[inline(always)]
fn number_line(h: &[u8; 16], seen: usize) -> bool {
    let mut i = 1;
    if h[0] == b':' && h[1] == b'-' {
        i = 2;
    }
    if !h[i].is_ascii_digit() {
        return false;
    }
    // Bounded scan for the end of the number.
    let mut k = i + 1;
    while k < 14 {
        if k + 1 >= seen {
            return false;
        }
        if h[k] == b'\r' {
            return h[k + 1] == b'\n';
        }
        if !h[k].is_ascii_digit() {
            return false;
        }
        k += 1;
    }
    false
}

/// `+OK\r\n`, `+PONG\r\n`, `+QUEUED\r\n`, alone or followed by more replies (a pipeline).
#[inline(always)]
fn short_status(h: &[u8; 16], total: u64) -> bool {
    let n = if h[1] == b'O' && h[2] == b'K' {
        3
    } else if h[1] == b'P' && h[2] == b'O' && h[3] == b'N' && h[4] == b'G' {
        5
    } else if h[1] == b'Q'
        && h[2] == b'U'
        && h[3] == b'E'
        && h[4] == b'U'
        && h[5] == b'E'
        && h[6] == b'D'
    {
        7
    } else {
        return false;
    };
    if h[0] != b'+' || h[n] != b'\r' || h[n + 1] != b'\n' {
        return false;
    }
    let end = (n + 2) as u64;
    total == end || (total > end && matches!(h[n + 2], b'+' | b'-' | b':' | b'$' | b'*'))
}

#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    if msg.seen < 4 {
        return None;
    }
    let h = msg.head;
    let egress = msg.direction == direction::EGRESS;
    let found = |we_client: bool| Inferred {
        protocol: proto::REDIS,
        role: if we_client {
            role::CLIENT
        } else {
            role::SERVER
        },
    };
    // A published message: sent by a server.
    if msg.seen >= 14 && pubsub_message(h) {
        return Some(found(!egress));
    }
    // A command array: sent by a client, received by a server, when the role is known.
    if msg.seen >= 8 && command_array(h) {
        return match msg.role_hint {
            role::CLIENT => Some(found(true)),
            role::SERVER => Some(found(false)),
            _ => None,
        };
    }
    // An inline command: only a client writes one.
    if msg.seen >= 6 && inline_command(h) {
        return Some(found(egress));
    }
    // An unambiguous reply: sent by a server, received by a client.
    let reply = match h[0] {
        b'+' => msg.seen >= 5 && short_status(h, msg.total),
        // -ERR / -WRONGTYPE / -NOAUTH … error replies.
        b'-' => {
            h[1].is_ascii_uppercase()
                && h[2].is_ascii_uppercase()
                && h[3].is_ascii_uppercase()
                && (h[1] == b'E' || h[1] == b'W' || h[1] == b'N' || h[1] == b'M' || h[1] == b'B')
        }
        b':' | b'$' => number_line(h, msg.seen),
        _ => false,
    };
    if reply {
        return Some(found(!egress));
    }
    None
}
