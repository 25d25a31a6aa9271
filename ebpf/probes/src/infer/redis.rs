//! Redis serialization protocol, RESP2 and RESP3 (<https://redis.io/docs/latest/develop/reference/protocol-spec/>).
//!
//! A command is an array of bulk strings (`*<n>\r\n$<len>\r\n…`), or an inline `PING`. Replies
//! are recognised only in their unambiguous forms (`+OK\r\n`, `+PONG\r\n`, `-ERR …`,
//! `-WRONGTYPE …`, `:<n>\r\n`, `$<n>\r\n`): a connection attached mid-stream is inferred from
//! its next command otherwise. An array seen inbound is a command to a server, unless connect()
//! said we are the client.

use ebpf_common::{direction, proto, role};

use super::{Inferred, Message};

/// `*<digits>\r\n$<digit>`: the head of an array of bulk strings.
#[inline(always)]
fn command_array(h: &[u8; 16]) -> bool {
    if h[0] != b'*' || !h[1].is_ascii_digit() || h[1] == b'0' {
        return false;
    }
    // Up to 3 digits of element count.
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

#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    if msg.seen < 4 {
        return None;
    }
    let h = msg.head;
    let egress = msg.direction == direction::EGRESS;
    let request = |we_client: bool| Inferred {
        protocol: proto::REDIS,
        role: if we_client {
            role::CLIENT
        } else {
            role::SERVER
        },
    };
    // A command: sent by a client, received by a server.
    let inline_ping = msg.total == 6
        && h[0] == b'P'
        && h[1] == b'I'
        && h[2] == b'N'
        && h[3] == b'G'
        && h[4] == b'\r'
        && h[5] == b'\n';
    if (msg.seen >= 8 && command_array(h)) || inline_ping {
        let we_client = if egress {
            msg.role_hint != role::SERVER
        } else {
            msg.role_hint == role::CLIENT
        };
        return Some(request(we_client));
    }
    // An unambiguous reply: sent by a server, received by a client.
    let reply = match h[0] {
        // +OK\r\n, +PONG\r\n, +QUEUED\r\n: short simple strings ending the message.
        b'+' => {
            let t = msg.total as usize;
            (5..=9).contains(&t) && t <= msg.seen && {
                let cr = h[(t - 2) & 15];
                let lf = h[(t - 1) & 15];
                cr == b'\r' && lf == b'\n'
            }
        }
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
        return Some(request(!egress));
    }
    None
}
