//! HTTP/1.x (RFC 9112): a request line `METHOD SP request-target SP HTTP/1.x` or a status line
//! `HTTP/1.x SP 3DIGIT SP reason`. The methods are those of RFC 9110 plus PATCH (RFC 5789) and
//! QUERY; `PRI * HTTP/2.0` (the HTTP/2 preface) is not HTTP/1.

use crate::{direction, proto, role};

use super::{Inferred, Message};

/// Length of the method when `h` starts with a known method followed by a space.
#[inline(always)]
fn method_len(h: &[u8; 16]) -> usize {
    match (h[0], h[1], h[2], h[3]) {
        (b'G', b'E', b'T', b' ') | (b'P', b'U', b'T', b' ') => 3,
        (b'P', b'O', b'S', b'T') | (b'H', b'E', b'A', b'D') => 4,
        (b'P', b'A', b'T', b'C') if h[4] == b'H' => 5,
        (b'T', b'R', b'A', b'C') if h[4] == b'E' => 5,
        (b'Q', b'U', b'E', b'R') if h[4] == b'Y' => 5,
        (b'D', b'E', b'L', b'E') if h[4] == b'T' && h[5] == b'E' => 6,
        (b'O', b'P', b'T', b'I') if h[4] == b'O' && h[5] == b'N' && h[6] == b'S' => 7,
        (b'C', b'O', b'N', b'N') if h[4] == b'E' && h[5] == b'C' && h[6] == b'T' => 7,
        _ => 0,
    }
}

#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    if msg.seen < 12 {
        return None;
    }
    let h = msg.head;
    let egress = msg.direction == direction::EGRESS;
    // Status line: "HTTP/1.0 200" / "HTTP/1.1 404".
    if h[0] == b'H'
        && h[1] == b'T'
        && h[2] == b'T'
        && h[3] == b'P'
        && h[4] == b'/'
        && h[5] == b'1'
        && h[6] == b'.'
        && (h[7] == b'0' || h[7] == b'1')
        && h[8] == b' '
        && h[9].is_ascii_digit()
        && h[10].is_ascii_digit()
        && h[11].is_ascii_digit()
    {
        return Some(Inferred {
            protocol: proto::HTTP1,
            role: if egress { role::SERVER } else { role::CLIENT },
        });
    }
    // Request line: the method, one space, then an origin-form path, an absolute URI, `*` or
    // (CONNECT) an authority.
    let n = method_len(h);
    if n == 0 || h[n] != b' ' {
        return None;
    }
    let t = h[n + 1];
    if !(t == b'/' || t == b'*' || t.is_ascii_alphanumeric()) {
        return None;
    }
    Some(Inferred {
        protocol: proto::HTTP1,
        role: if egress { role::CLIENT } else { role::SERVER },
    })
}
