//! Protocol inference: one file per protocol of the closed `proto` set, each with one function
//! looking at the first `INFER_BYTES` of one message and answering (protocol, role) or
//! nothing, and optionally a header-glue hook.
//!
//! Pure, `no_std`, `#[inline(always)]` code shared by the kernel programs (which infer every
//! tracked connection) and user space (which infers the connections the kernel forwards
//! uninferred when `ebpf.kernel_inference` is false): one implementation for both. The
//! caller filters the answer by the protocols switched on in the configuration.
//!
//! Adding a protocol = its file here and one line in [`infer`] (plus one in [`glues`] if its
//! peers read a header on its own before the payload).

mod dns;
mod http1;
mod mysql;
mod postgres;
mod redis;

use crate::{INFER_BYTES, proto, sock};

/// What the first bytes of a message say about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inferred {
    /// `proto::*`.
    pub protocol: u8,
    /// `role::*` of the traced process.
    pub role: u8,
}

/// The first bytes of one message as seen by one syscall.
pub struct Message<'a> {
    /// Up to `INFER_BYTES` bytes; only the first `seen` are valid.
    pub head: &'a [u8; INFER_BYTES],
    /// Valid bytes in `head` (`min(total, INFER_BYTES)`).
    pub seen: usize,
    /// Bytes the syscall transferred.
    pub total: u64,
    /// `direction::*`.
    pub direction: u8,
    /// `sock::*`: datagram sockets carry whole messages (no length prefix for DNS).
    pub sock_type: u8,
    /// `role::*` from connect/accept, when the kernel saw one.
    pub role_hint: u8,
}

/// Tries every supported protocol in turn. Callers drop answers naming a protocol switched
/// off in the configuration (its connections are then given up like unknown traffic).
///
/// Only the first `seen` bytes of the head count: the rest are zeroed before any protocol
/// looks (the kernel's head comes from a per-CPU scratch buffer that still holds the bytes of
/// an earlier message after a short one; a check reading one byte too far, like an inline
/// Redis `SELECT` followed by a stale `\r`, would otherwise infer from them).
#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    let head = visible(msg.head, msg.seen);
    let msg = &Message {
        head: &head,
        seen: msg.seen,
        total: msg.total,
        direction: msg.direction,
        sock_type: msg.sock_type,
        role_hint: msg.role_hint,
    };
    // A datagram socket carries only datagram protocols.
    if msg.sock_type == sock::DGRAM {
        dns::infer(msg)
    } else {
        mysql::infer(msg)
            .or_else(|| http1::infer(msg))
            .or_else(|| postgres::infer(msg))
            .or_else(|| redis::infer(msg))
            .or_else(|| dns::infer(msg))
    }
}

/// `head` with every byte from `seen` on zeroed: two 64-bit masks, no loop (the verifier sees a
/// few ALU instructions).
#[inline(always)]
fn visible(head: &[u8; INFER_BYTES], seen: usize) -> [u8; INFER_BYTES] {
    /// Mask of the low `n` bytes of a word (`n` ≥ 8: all of them).
    #[inline(always)]
    fn low(n: usize) -> u64 {
        if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        }
    }
    let h = head;
    let lo = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) & low(seen);
    let hi = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]])
        & low(seen.saturating_sub(8));
    let (l, h) = (lo.to_le_bytes(), hi.to_le_bytes());
    [
        l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], h[0], h[1], h[2], h[3], h[4], h[5], h[6],
        h[7],
    ]
}

/// Header-glue hooks: the protocol whose lone header (`len` bytes in memory order, read by
/// earlier syscalls of at most 4 bytes) announces exactly the `total` bytes of this read, if
/// any.
#[inline(always)]
pub fn glues(pending: u32, len: u8, total: u64) -> Option<u8> {
    if mysql::glues(pending, len, total) {
        return Some(proto::MYSQL);
    }
    if dns::glues(pending, len, total) {
        return Some(proto::DNS);
    }
    None
}

#[cfg(test)]
mod tests;
