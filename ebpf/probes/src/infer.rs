//! In-kernel protocol inference: one function per protocol of the closed `proto` set, each
//! looking at the first `INFER_BYTES` of one message and answering (protocol, role) or nothing.
//! Adding a protocol = one function here and one line in `infer`.

use ebpf_common::{INFER_BYTES, direction, proto, role};

/// What the first bytes of a message say about the connection.
#[derive(Clone, Copy)]
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
}

/// Tries every supported protocol in turn; protocols switched off in the configuration are
/// never reported (their connections are given up like unknown traffic).
#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    mysql(msg).filter(|found| crate::maps::protocol_enabled(found.protocol))
}

/// Largest MySQL packet payload (3-byte length).
const MYSQL_MAX_PAYLOAD: u32 = (1 << 24) - 1;
/// A syscall this large may carry only the start of a long request (a big COM_QUERY is written
/// in net-buffer-sized chunks), so the whole-message check is waived.
const MYSQL_PARTIAL_MIN: u64 = 1024;

/// MySQL client/server protocol
/// (<https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html>).
/// Every packet starts with a 3-byte little-endian payload length and a sequence id; a command
/// phase request has sequence id 0 and starts with the command byte, the server's initial
/// handshake (Protocol::HandshakeV10) has sequence id 0 and starts with 0x0a followed by the
/// NUL-terminated server version.
#[inline(always)]
fn mysql(msg: &Message<'_>) -> Option<Inferred> {
    // Header and command byte: COM_PING and COM_QUIT are 5 bytes in all.
    if msg.seen < 5 {
        return None;
    }
    let h = msg.head;
    let len = u32::from(h[0]) | (u32::from(h[1]) << 8) | (u32::from(h[2]) << 16);
    // Sequence id 0: the first packet of a command or of the handshake.
    if h[3] != 0 || len == 0 || len > MYSQL_MAX_PAYLOAD {
        return None;
    }
    let whole = u64::from(len) + 4 <= msg.total;
    let egress = msg.direction == direction::EGRESS;

    // Protocol::HandshakeV10: protocol version 10, server version starts with a digit
    // ("8.0.36", "5.5.5-10.11.6-MariaDB"), sane length, whole in one syscall.
    if msg.seen >= 6 && h[4] == 0x0a && (30..=512).contains(&len) && whole && h[5].is_ascii_digit()
    {
        let r = if egress { role::SERVER } else { role::CLIENT };
        return Some(Inferred {
            protocol: proto::MYSQL,
            role: r,
        });
    }

    // Command phase request; minimum payload per command.
    let cmd = h[4];
    let shape_ok = match cmd {
        // COM_QUIT, COM_PING, COM_CONNECT: the command byte alone.
        0x01 | 0x0e | 0x0b => len == 1,
        // COM_QUERY <query text>, COM_STMT_PREPARE <query text>.
        0x03 | 0x16 => len >= 2,
        // COM_INIT_DB <schema name>.
        0x02 => len >= 2,
        // COM_STMT_EXECUTE: stmt id (4), flags (1), iteration count (4).
        0x17 => len >= 10,
        // COM_STMT_CLOSE: stmt id (4).
        0x19 => len == 5,
        _ => false,
    };
    if !shape_ok || !(whole || msg.total >= MYSQL_PARTIAL_MIN) {
        return None;
    }
    let r = if egress { role::CLIENT } else { role::SERVER };
    Some(Inferred {
        protocol: proto::MYSQL,
        role: r,
    })
}
