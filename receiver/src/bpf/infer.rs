//! User-space protocol inference for `ebpf.kernel_inference: false`, the diagnostic
//! "traditional pipeline" kept for the benchmark comparison: the kernel forwards every message
//! of every tracked connection uninferred, and this runs the kernel's own inference
//! (`ebpf_common::infer`, the same code) on each of them, with the kernel's bookkeeping around
//! it (`ebpf/probes/src/data.rs`): lone headers of at most 4 bytes kept for the header-glue
//! hooks, messages shorter than `INFER_MIN_BYTES` not counted as attempts, giving up after
//! `INFER_MAX_ATTEMPTS`, and on a stream socket that predates the receiver nothing inferred
//! before its conversation turns (`ebpf_common::turn`). A few bytes of state per connection.

use ebpf_common::infer::{self, Message};
use ebpf_common::{INFER_BYTES, INFER_MAX_ATTEMPTS, INFER_MIN_BYTES, direction, role, sock, turn};

use super::DataEvent;
use super::event::protocol_of;
use crate::model::{Direction, Protocol, Role};

/// What one message said about its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inference {
    /// Nothing yet: the message was discarded.
    Unknown,
    /// No supported protocol in the first `INFER_MAX_ATTEMPTS` messages: this message and
    /// every later one of the connection are discarded.
    GaveUp,
    /// The connection speaks `protocol` and the traced process is its `role`. `header` holds
    /// the bytes of a lone header read before this message that belong in front of it (its
    /// first `header_len` bytes), exactly as the kernel would have sent them.
    Inferred {
        protocol: Protocol,
        role: Role,
        header: [u8; 4],
        header_len: usize,
    },
}

/// Inference state of one connection the kernel forwards uninferred.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawInference {
    /// `ebpf_common::turn` state; `None` before the first message.
    turn: Option<u8>,
    attempts: u8,
    /// A lone header's bytes in memory order (`pending_len` of them), as `ConnState`.
    pending: u32,
    pending_len: u8,
    gave_up: bool,
}

impl RawInference {
    /// Whether the connection was given up on.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Infers from one message, as the kernel would have; `enabled` are the protocols switched
    /// on in the configuration.
    pub fn on_message(&mut self, data: &DataEvent<'_>, enabled: &[Protocol]) -> Inference {
        if self.gave_up {
            return Inference::GaveUp;
        }
        // A stream socket that predates the receiver: nothing is inferred before its
        // conversation turns (bytes moved by sendfile turn it too, as in the kernel).
        let state = self
            .turn
            .unwrap_or(if super::predates_receiver(data.conn) && !data.datagram {
                turn::WAIT
            } else {
                turn::OPEN
            });
        let state = turn::after(state, data.direction == Direction::Egress);
        self.turn = Some(state);
        if state != turn::OPEN {
            return Inference::Unknown;
        }
        // Bytes moved by sendfile/splice (reported by length only): the kernel never infers
        // from those.
        if data.bytes.is_empty() {
            return Inference::Unknown;
        }
        let total = u64::from(data.len);
        let bytes = data.bytes;
        let datagram = data.datagram;
        // A lone header of at most 4 bytes is kept for the next message (appended to what is
        // kept if it fits, else it starts a new header), unless it is the whole payload a kept
        // 4-byte header announced.
        let (pending, pending_len) = (self.pending, self.pending_len);
        self.pending = 0;
        self.pending_len = 0;
        let announced = pending_len == 4 && infer::glues(pending, pending_len, total).is_some();
        if total <= 4 && bytes.len() as u64 >= total && !datagram && !announced {
            let have = if u64::from(pending_len) + total <= 4 {
                u32::from(pending_len)
            } else {
                0
            };
            let mut word = pending.to_le_bytes();
            word[have as usize..have as usize + total as usize]
                .copy_from_slice(&bytes[..total as usize]);
            self.pending = u32::from_le_bytes(word) & low_bytes(have + total as u32);
            self.pending_len = (have + total as u32) as u8;
            return Inference::Unknown;
        }
        // The payload a kept header announced: inferred on header + payload.
        let glued = if datagram {
            None
        } else {
            infer::glues(pending, pending_len, total)
        };
        let glued_len = if glued.is_some() {
            usize::from(pending_len)
        } else {
            0
        };
        let mut head = [0u8; INFER_BYTES];
        let header = pending.to_le_bytes();
        head[..glued_len].copy_from_slice(&header[..glued_len]);
        let take = bytes.len().min(INFER_BYTES - glued_len);
        head[glued_len..glued_len + take].copy_from_slice(&bytes[..take]);
        let msg = Message {
            head: &head,
            seen: glued_len + take,
            total: total + glued_len as u64,
            direction: match data.direction {
                Direction::Egress => direction::EGRESS,
                Direction::Ingress => direction::INGRESS,
            },
            sock_type: if datagram { sock::DGRAM } else { sock::STREAM },
            role_hint: match data.role {
                Some(Role::Client) => role::CLIENT,
                Some(Role::Server) => role::SERVER,
                None => role::UNKNOWN,
            },
        };
        let found = infer::infer(&msg)
            .filter(|f| glued.is_none_or(|g| g == f.protocol))
            .and_then(|f| {
                let protocol = protocol_of(f.protocol)?;
                let role = match f.role {
                    role::CLIENT => Role::Client,
                    role::SERVER => Role::Server,
                    _ => return None,
                };
                enabled.contains(&protocol).then_some((protocol, role))
            });
        if let Some((protocol, role)) = found {
            return Inference::Inferred {
                protocol,
                role,
                header: if glued_len > 0 { header } else { [0; 4] },
                header_len: glued_len,
            };
        }
        if total < INFER_MIN_BYTES {
            return Inference::Unknown;
        }
        self.attempts += 1;
        if self.attempts >= INFER_MAX_ATTEMPTS {
            self.gave_up = true;
            return Inference::GaveUp;
        }
        Inference::Unknown
    }
}

/// A mask of the `n` (0..=4) low bytes of a u32.
fn low_bytes(n: u32) -> u32 {
    1u64.wrapping_shl(8 * n).wrapping_sub(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnId;

    fn event(direction: Direction, role: Option<Role>, bytes: &[u8]) -> DataEvent<'_> {
        DataEvent {
            conn: ConnId {
                pid: 1,
                fd: 3,
                generation: 1,
            },
            ts_ns: 1,
            protocol: None,
            role,
            direction,
            pos: 0,
            len: bytes.len() as u32,
            bytes,
            datagram: false,
            peer: None,
        }
    }

    #[test]
    fn a_socket_that_predates_the_receiver_is_inferred_only_once_its_conversation_turns() {
        // Attached while the client was writing a large body made of requests: the rest of
        // the body looks like requests, but only the response (the turn) starts a message.
        let mut r = RawInference::default();
        let seeded = |mut e: DataEvent<'static>| {
            e.conn.generation |= ebpf_common::SEEDED_GENERATION_BIT;
            e
        };
        let fake = b"GET /fake HTTP/1.1\r\nHost: f\r\n\r\nGET /fake HTTP/1.1\r\n";
        for _ in 0..3 {
            let e = seeded(event(Direction::Egress, Some(Role::Client), fake));
            assert_eq!(r.on_message(&e, Protocol::ALL), Inference::Unknown);
        }
        let e = seeded(event(
            Direction::Ingress,
            Some(Role::Client),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ));
        assert!(matches!(
            r.on_message(&e, Protocol::ALL),
            Inference::Inferred {
                protocol: Protocol::Http1,
                role: Role::Client,
                ..
            }
        ));
        // Waiting is not an attempt: a long one-way stream is never given up on for it.
        let mut r = RawInference::default();
        for _ in 0..(2 * INFER_MAX_ATTEMPTS) {
            let e = seeded(event(Direction::Ingress, None, b"\x00\x01garbage bytes"));
            assert_eq!(r.on_message(&e, Protocol::ALL), Inference::Unknown);
        }
        assert!(!r.gave_up());
        // A socket seen from connect/accept is inferred from its first message.
        let mut r = RawInference::default();
        let e = event(Direction::Egress, Some(Role::Client), fake);
        assert!(matches!(
            r.on_message(&e, Protocol::ALL),
            Inference::Inferred {
                protocol: Protocol::Http1,
                ..
            }
        ));
    }

    #[test]
    fn a_one_byte_payload_glues_to_the_header_that_announced_it() {
        // MariaDB reads a COM_PING's 4-byte header, then its 1-byte payload.
        let mut r = RawInference::default();
        let header = [0x01, 0x00, 0x00, 0x00];
        let e = event(Direction::Ingress, Some(Role::Server), &header);
        assert_eq!(r.on_message(&e, Protocol::ALL), Inference::Unknown);
        let e = event(Direction::Ingress, Some(Role::Server), &[0x0e]);
        assert_eq!(
            r.on_message(&e, Protocol::ALL),
            Inference::Inferred {
                protocol: Protocol::Mysql,
                role: Role::Server,
                header,
                header_len: 4,
            }
        );
    }

    #[test]
    fn a_lone_mysql_header_glues_to_its_payload() {
        // MariaDB reads a COM_QUERY's 4-byte header, then its payload.
        let mut r = RawInference::default();
        let header = [0x09, 0x00, 0x00, 0x00];
        let e = event(Direction::Ingress, Some(Role::Server), &header);
        assert_eq!(r.on_message(&e, Protocol::ALL), Inference::Unknown);
        let e = event(Direction::Ingress, Some(Role::Server), b"\x03SELECT 1");
        assert_eq!(
            r.on_message(&e, Protocol::ALL),
            Inference::Inferred {
                protocol: Protocol::Mysql,
                role: Role::Server,
                header,
                header_len: 4,
            }
        );
    }

    #[test]
    fn switched_off_protocols_are_given_up_after_the_attempts() {
        let mut r = RawInference::default();
        let e = event(
            Direction::Egress,
            Some(Role::Client),
            b"GET / HTTP/1.1\r\n\r\n",
        );
        let on = [Protocol::Mysql];
        for _ in 1..INFER_MAX_ATTEMPTS {
            assert_eq!(r.on_message(&e, &on), Inference::Unknown);
        }
        assert_eq!(r.on_message(&e, &on), Inference::GaveUp);
        assert!(r.gave_up());
        // Short messages and length-only events (sendfile) do not count as attempts; nothing
        // revives a given-up connection.
        let mut r = RawInference::default();
        let short = event(Direction::Egress, None, b"ab\r\n");
        let sendfile = DataEvent {
            len: 4096,
            ..event(Direction::Egress, None, b"")
        };
        for _ in 0..100 {
            assert_eq!(r.on_message(&sendfile, &on), Inference::Unknown);
            assert_eq!(r.on_message(&short, &on), Inference::Unknown);
        }
        assert_eq!(
            r.on_message(&e, Protocol::ALL),
            Inference::Inferred {
                protocol: Protocol::Http1,
                role: Role::Client,
                header: [0; 4],
                header_len: 0,
            }
        );
    }
}
