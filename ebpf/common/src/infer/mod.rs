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
#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
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
