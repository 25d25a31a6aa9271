//! The shared inference on real first bytes of each protocol, as user space runs it.

use super::{Inferred, Message, glues, infer};
use crate::{INFER_BYTES, direction, proto, role, sock};

/// Infers from the first bytes of `bytes`, a whole message of one syscall.
fn infer_on(bytes: &[u8], direction: u8, sock_type: u8, role_hint: u8) -> Option<Inferred> {
    let mut head = [0u8; INFER_BYTES];
    let seen = bytes.len().min(INFER_BYTES);
    head[..seen].copy_from_slice(&bytes[..seen]);
    infer(&Message {
        head: &head,
        seen,
        total: bytes.len() as u64,
        direction,
        sock_type,
        role_hint,
    })
}

fn found(protocol: u8, role: u8) -> Option<Inferred> {
    Some(Inferred { protocol, role })
}

/// A MariaDB 10.11 greeting (Protocol::HandshakeV10), as the server writes it.
fn mysql_greeting() -> Vec<u8> {
    let mut payload = vec![0x0a];
    payload.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
    payload.extend_from_slice(&[0x1f, 0, 0, 0]); // thread id
    payload.extend_from_slice(b"3a>W)Kk:\0"); // scramble, part 1
    payload.extend_from_slice(&[0xfe, 0xf7, 0x2d, 0x02, 0x00, 0xff, 0x81, 0x15]);
    payload.extend_from_slice(&[0; 10]);
    payload.extend_from_slice(b"Yq?/K@#|bR-N\0mysql_native_password\0");
    let len = payload.len() as u32;
    let mut packet = len.to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(&payload);
    packet
}

#[test]
fn mysql_greeting_names_the_server() {
    let g = mysql_greeting();
    assert_eq!(
        infer_on(&g, direction::EGRESS, sock::STREAM, role::SERVER),
        found(proto::MYSQL, role::SERVER)
    );
    assert_eq!(
        infer_on(&g, direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::MYSQL, role::CLIENT)
    );
    // A COM_QUERY read by the server.
    let q = b"\x09\x00\x00\x00\x03SELECT 1";
    assert_eq!(
        infer_on(q, direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::MYSQL, role::SERVER)
    );
    // MariaDB reads the 4-byte header on its own: it glues to the payload it announces.
    let header = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    assert_eq!(glues(header, 4, 9), Some(proto::MYSQL));
    assert_eq!(glues(header, 4, 10), None);
}

#[test]
fn http_request_and_status_lines() {
    let get =
        b"GET /api/status/200 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n\r\n";
    assert_eq!(
        infer_on(get, direction::EGRESS, sock::STREAM, role::CLIENT),
        found(proto::HTTP1, role::CLIENT)
    );
    assert_eq!(
        infer_on(get, direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::HTTP1, role::SERVER)
    );
    let ok = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        infer_on(ok, direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::HTTP1, role::CLIENT)
    );
    // The HTTP/2 preface is not HTTP/1.
    assert_eq!(
        infer_on(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            direction::EGRESS,
            sock::STREAM,
            0
        ),
        None
    );
}

#[test]
fn postgres_startup_and_ssl_request() {
    // StartupMessage of psql: protocol 3.0, user, database, application_name.
    let mut body = 0x0003_0000u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0app\0database\0shop\0application_name\0psql\0\0");
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    assert_eq!(
        infer_on(&startup, direction::EGRESS, sock::STREAM, role::CLIENT),
        found(proto::POSTGRES, role::CLIENT)
    );
    assert_eq!(
        infer_on(&startup, direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::POSTGRES, role::SERVER)
    );
    let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    assert_eq!(
        infer_on(&ssl, direction::EGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::POSTGRES, role::CLIENT)
    );
    // A simple Query of a connection that predates us.
    let mut q = vec![b'Q'];
    q.extend_from_slice(&13u32.to_be_bytes());
    q.extend_from_slice(b"SELECT 1;\0");
    assert_eq!(
        infer_on(&q, direction::EGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::POSTGRES, role::CLIENT)
    );
}

#[test]
fn redis_array_needs_the_role_and_replies_do_not() {
    let set = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    assert_eq!(
        infer_on(set, direction::EGRESS, sock::STREAM, role::CLIENT),
        found(proto::REDIS, role::CLIENT)
    );
    assert_eq!(
        infer_on(set, direction::INGRESS, sock::STREAM, role::SERVER),
        found(proto::REDIS, role::SERVER)
    );
    // An array alone does not say who sent it.
    assert_eq!(
        infer_on(set, direction::EGRESS, sock::STREAM, role::UNKNOWN),
        None
    );
    assert_eq!(
        infer_on(b"+OK\r\n", direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::REDIS, role::CLIENT)
    );
    assert_eq!(
        infer_on(b"PING\r\n", direction::INGRESS, sock::STREAM, role::UNKNOWN),
        found(proto::REDIS, role::SERVER)
    );
}

/// A query for `example.com` A with EDNS, as dig sends it.
fn dns_query() -> Vec<u8> {
    let mut q = vec![0x3c, 0x1f, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

#[test]
fn dns_over_udp_and_tcp() {
    let q = dns_query();
    assert_eq!(
        infer_on(&q, direction::EGRESS, sock::DGRAM, role::UNKNOWN),
        found(proto::DNS, role::CLIENT)
    );
    assert_eq!(
        infer_on(&q, direction::INGRESS, sock::DGRAM, role::UNKNOWN),
        found(proto::DNS, role::SERVER)
    );
    // Over TCP the message has a 2-byte length prefix.
    let mut tcp = (q.len() as u16).to_be_bytes().to_vec();
    tcp.extend_from_slice(&q);
    assert_eq!(
        infer_on(&tcp, direction::EGRESS, sock::STREAM, role::CLIENT),
        found(proto::DNS, role::CLIENT)
    );
    // dnsmasq reads the length on its own: it glues to the message it announces.
    let len = u32::from(u16::from_ne_bytes([tcp[0], tcp[1]]));
    assert_eq!(glues(len, 2, q.len() as u64), Some(proto::DNS));
}

#[test]
fn other_traffic_is_nothing() {
    // A TLS ClientHello, an SSH banner, a bare MySQL header.
    let tls = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xa1, 0xb2,
    ];
    for bytes in [
        &tls[..],
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        b"\x09\x00\x00\x00",
    ] {
        for dir in [direction::EGRESS, direction::INGRESS] {
            assert_eq!(infer_on(bytes, dir, sock::STREAM, role::CLIENT), None);
        }
    }
    // A datagram socket carries only DNS: an HTTP request line there is nothing.
    assert_eq!(
        infer_on(b"GET / HTTP/1.1\r\n\r\n", direction::EGRESS, sock::DGRAM, 0),
        None
    );
}

/// Regression (found by `cargo xtask fuzz`, target `infer`): the kernel's head is a per-CPU
/// scratch buffer, so after a short message it still holds an earlier message's bytes. A
/// 6-byte `SELECT` followed by a stale `\r` was inferred as an inline Redis command; only the
/// first `seen` bytes may count, for every protocol.
#[test]
fn bytes_after_seen_never_count() {
    let messages: [&[u8]; 6] = [
        b"SELECT",
        b"PUBLISH",
        b"SUBSCRIBE",
        b"*1\r\n$4\r\nPIN",
        b"GET / HTTP/1.",
        b"\x09\x00\x00\x00\x03SELE",
    ];
    for bytes in messages {
        for seen in 0..=bytes.len().min(INFER_BYTES) {
            for stale in [0u8, b'\r', b' ', b'\n', 0xff, b'E'] {
                let mut head = [stale; INFER_BYTES];
                head[..seen].copy_from_slice(&bytes[..seen]);
                let mut zeroed = [0u8; INFER_BYTES];
                zeroed[..seen].copy_from_slice(&bytes[..seen]);
                for (dir, sock_type, hint) in [
                    (direction::EGRESS, sock::STREAM, role::CLIENT),
                    (direction::INGRESS, sock::STREAM, role::SERVER),
                    (direction::EGRESS, sock::UNKNOWN, role::UNKNOWN),
                ] {
                    let msg = |head| Message {
                        head,
                        seen,
                        total: bytes.len() as u64,
                        direction: dir,
                        sock_type,
                        role_hint: hint,
                    };
                    assert_eq!(
                        infer(&msg(&head)),
                        infer(&msg(&zeroed)),
                        "{bytes:?} seen {seen} stale {stale:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_conversation_turns_at_the_first_message_in_the_other_direction() {
    use crate::turn::{OPEN, WAIT, WAIT_EGRESS, WAIT_INGRESS, after};
    // Seen from connect/accept: always open.
    assert_eq!(after(OPEN, true), OPEN);
    assert_eq!(after(OPEN, false), OPEN);
    // Predates the receiver: the first direction seen waits, however many messages.
    assert_eq!(after(WAIT, true), WAIT_EGRESS);
    assert_eq!(after(WAIT_EGRESS, true), WAIT_EGRESS);
    assert_eq!(after(WAIT, false), WAIT_INGRESS);
    assert_eq!(after(WAIT_INGRESS, false), WAIT_INGRESS);
    // The other direction opens it for good.
    assert_eq!(after(WAIT_EGRESS, false), OPEN);
    assert_eq!(after(WAIT_INGRESS, true), OPEN);
}
