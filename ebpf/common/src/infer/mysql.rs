//! MySQL client/server protocol
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html>).

use crate::{direction, proto, role};

use super::{Inferred, Message};

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
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
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

/// MariaDB reads a packet's 4-byte header and its payload with separate syscalls: a lone header
/// with sequence id 0 whose length is exactly the next read's size belongs with it.
#[inline(always)]
pub fn glues(pending: u32, len: u8, total: u64) -> bool {
    len == 4 && pending != 0 && pending >> 24 == 0 && u64::from(pending & 0x00ff_ffff) == total
}
