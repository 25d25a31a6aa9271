//! DNS (RFC 1035 §4): a 12-byte header (id, flags, four counts) and a question. Over UDP one
//! datagram is one message; over TCP each message has a 2-byte length prefix (RFC 1035 §4.2.2),
//! which a reader may take on its own before the message (see [`glues`]).
//! A query (QR = 0) has one question and no answers; a response (QR = 1) has one question. The
//! opcode must be QUERY (0) and the Z bit clear.

use crate::{direction, proto, role, sock};

use super::{Inferred, Message};

/// Largest message taken as plausible (EDNS allows 4096-byte UDP payloads; TCP up to 64 KiB).
const MAX_MESSAGE: u64 = 65_535;

/// Whether a DNS header starts at `h[at..]`; `Some(true)` for a response, `Some(false)` for a
/// query. `at + 13 <= 16`.
#[inline(always)]
fn header(h: &[u8; 16], at: usize) -> Option<bool> {
    let flags = u16::from_be_bytes([h[at + 2], h[at + 3]]);
    let qd = u16::from_be_bytes([h[at + 4], h[at + 5]]);
    let an = u16::from_be_bytes([h[at + 6], h[at + 7]]);
    let ns = u16::from_be_bytes([h[at + 8], h[at + 9]]);
    let ar = u16::from_be_bytes([h[at + 10], h[at + 11]]);
    let response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    // One question, opcode QUERY, Z clear; the question's first label is 0..=63 bytes.
    if qd != 1 || opcode != 0 || flags & 0x0040 != 0 || h[at + 12] > 63 {
        return None;
    }
    if response {
        (an <= 256 && ns <= 256 && ar <= 256).then_some(true)
    } else {
        // A query carries no answers; EDNS adds one OPT record.
        (an == 0 && ns == 0 && ar <= 1 && flags & 0x000f == 0).then_some(false)
    }
}

/// Over TCP the 2-byte length may be read on its own (dnsmasq reads it a byte at a time, then
/// the message): a kept 2-byte header announcing exactly this read belongs with it.
#[inline(always)]
pub fn glues(pending: u32, len: u8, total: u64) -> bool {
    // The two bytes in memory order: the first is the length's high byte.
    let announced = (u64::from(pending & 0xff) << 8) | u64::from((pending >> 8) & 0xff);
    len == 2 && announced == total && total >= 17
}

#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    if msg.seen < 15 || msg.total > MAX_MESSAGE + 2 {
        return None;
    }
    let h = msg.head;
    let response = if msg.sock_type == sock::DGRAM {
        // Header + root label + type + class at least.
        if msg.total < 17 {
            return None;
        }
        header(h, 0)?
    } else {
        // TCP: the length prefix covers the rest of this write, or the first of the messages
        // in it (glibc writes its A and AAAA queries with one writev after a truncated UDP
        // answer; servers answer pipelined queries with one write).
        let len = u64::from(u16::from_be_bytes([h[0], h[1]]));
        if len + 2 > msg.total || len < 17 {
            return None;
        }
        header(h, 2)?
    };
    let egress = msg.direction == direction::EGRESS;
    // A query sent or a response received: we are the client.
    let client = egress != response;
    Some(Inferred {
        protocol: proto::DNS,
        role: if client { role::CLIENT } else { role::SERVER },
    })
}
