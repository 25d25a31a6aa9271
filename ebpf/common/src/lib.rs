//! The kernel ↔ user ABI of ebpf-receiver, written exactly once.
//!
//! Every struct that crosses the kernel boundary is `#[repr(C)]` with explicit padding and a
//! size assertion, so the BPF object (built for `bpfel-unknown-none` by a pinned nightly) and the
//! receiver (built on stable) agree byte for byte. Nothing outside `receiver/src/bpf/` sees these
//! types: it decodes them into borrowed views.
#![cfg_attr(not(test), no_std)]

use core::mem::size_of;

pub mod infer;

/// Largest number of payload bytes captured from one syscall. The kernel copies into a per-CPU
/// scratch buffer of `2 * MAX_CAPTURE` bytes with masked offsets (verifier-friendly), so this
/// must be a power of two.
pub const MAX_CAPTURE: usize = 16384;
/// Most iovecs read from one readv/writev/sendmsg/recvmsg: nginx writes a response in up to 64
/// (a proxied chunked body is a head, a size line, one iovec per upstream chunk, CRLF and the
/// last chunk), so fewer would leave the end of the message uncaptured.
pub const MAX_IOVECS: usize = 64;
/// Bytes the inference functions look at.
pub const INFER_BYTES: usize = 16;
/// Messages (syscalls with data) inspected on a connection before the kernel gives up on it.
/// Generous because a client's handshake (greeting, login, auth switch, OK) comes before its
/// first command, and clients that read the 4-byte packet header and the payload separately
/// double that; an attempt costs one check, and nothing reaches user space before inference.
pub const INFER_MAX_ATTEMPTS: u8 = 16;
/// Messages shorter than this are not inspected and do not count as attempts (a bare MySQL
/// packet header read on its own says nothing).
pub const INFER_MIN_BYTES: u64 = 5;
/// Generations the kernel assigns (connect/accept) never have this bit; generations user space
/// assigns to sockets that predate it (seeding) always do.
pub const SEEDED_GENERATION_BIT: u32 = 0x8000_0000;

/// `ConnState::turn`: whether inference may look at a message yet. A stream socket that
/// predates the receiver may be in the middle of a message (a large response being read, a
/// large request being written), and its first bytes, whatever they look like, are no message
/// start: a body made of requests would be inferred and framed as requests. In request/response
/// protocols a message starts where the conversation turns, so inference waits for the first
/// message in the other direction than the ones seen so far. Sockets seen from connect/accept
/// (and datagrams, which are whole messages) are inspected at once.
pub mod turn {
    /// Inspect every message.
    pub const OPEN: u8 = 0;
    /// Predates the receiver; nothing seen yet.
    pub const WAIT: u8 = 1;
    /// Predates the receiver; the messages seen so far were sent.
    pub const WAIT_EGRESS: u8 = 2;
    /// Predates the receiver; the messages seen so far were received.
    pub const WAIT_INGRESS: u8 = 3;

    /// The state after a message in direction `egress`: inference may look at that message
    /// when the result is [`OPEN`].
    #[inline(always)]
    pub const fn after(state: u8, egress: bool) -> u8 {
        match state {
            OPEN => OPEN,
            WAIT_EGRESS if !egress => OPEN,
            WAIT_INGRESS if egress => OPEN,
            _ if egress => WAIT_EGRESS,
            _ => WAIT_INGRESS,
        }
    }
}

/// Slot of (pid, fd) in the tracked-fd filter (`FD_FILTER`), before masking to the filter's
/// size: every syscall on an fd first reads this one array slot, and only a non-zero count
/// (some tracked socket hashes there) costs a `CONNS` lookup. Kernel and user space (seeding,
/// purging) compute it with this one function.
#[inline(always)]
pub const fn fd_slot(pid: u32, fd: u32) -> u32 {
    let key = ((pid as u64) << 32) | fd as u64;
    // Fibonacci hashing: the high half of the product mixes every bit of the key.
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// Closed set of protocols the kernel can infer. `0` is "not inferred yet". User space names
/// them in its one protocol declaration (`receiver/src/model.rs`), which checks at compile time
/// that every id there is one of these.
pub mod proto {
    pub const UNKNOWN: u8 = 0;
    pub const MYSQL: u8 = 1;
    pub const HTTP1: u8 = 2;
    pub const POSTGRES: u8 = 3;
    pub const REDIS: u8 = 4;
    pub const DNS: u8 = 5;
    /// One past the largest id: sizes the per-protocol counters.
    pub const COUNT: u8 = 6;
    /// Not a protocol: `ebpf.kernel_inference` is false (the diagnostic "traditional
    /// pipeline", kept for the benchmark comparison), so the kernel did not infer the
    /// connection and forwards every message's bytes for user space to infer with the same
    /// [`infer`](crate::infer::infer). Set on the first message with bytes, announced by an
    /// OPEN like an inferred protocol, never given up.
    pub const RAW: u8 = 0xfe;
    /// Not a protocol: the kernel looked at the first messages of the connection, matched no
    /// supported protocol and will never inspect it again.
    pub const GAVE_UP: u8 = 0xff;
}

/// Syscalls the probes handle: the values of the `SYSCALL_KIND` array (syscall number → kind,
/// `NONE` for every other syscall), which the loader fills from the host's syscall table.
pub mod syscall {
    pub const NONE: u8 = 0;
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const READV: u8 = 3;
    pub const WRITEV: u8 = 4;
    pub const SENDTO: u8 = 5;
    pub const RECVFROM: u8 = 6;
    pub const SENDMSG: u8 = 7;
    pub const RECVMSG: u8 = 8;
    pub const SENDMMSG: u8 = 9;
    pub const RECVMMSG: u8 = 10;
    pub const SENDFILE: u8 = 11;
    pub const SPLICE: u8 = 12;
    pub const SOCKET: u8 = 13;
    pub const CONNECT: u8 = 14;
    /// accept and accept4.
    pub const ACCEPT: u8 = 15;
    pub const CLOSE: u8 = 16;
    pub const CLONE: u8 = 17;
    pub const CLONE3: u8 = 18;
    pub const FORK: u8 = 19;
    /// One past the largest kind.
    pub const COUNT: u8 = 20;
    /// Entries of the `SYSCALL_KIND` array: syscall numbers at or above it are none of ours.
    pub const TABLE_SLOTS: u32 = 512;
}

/// Socket types the kernel distinguishes (`ConnState::sock_type`).
pub mod sock {
    /// Not known (a socket registered by user space, or created before the receiver).
    pub const UNKNOWN: u8 = 0;
    /// SOCK_STREAM: one byte stream per direction.
    pub const STREAM: u8 = 1;
    /// SOCK_DGRAM: every syscall carries whole messages, boundaries matter.
    pub const DGRAM: u8 = 2;
}

/// `DataEventHeader::flags`.
pub mod data_flag {
    /// A [`PeerTrailer`](super::PeerTrailer) sits between the header and the payload: the
    /// peer address of this one datagram (unconnected UDP sockets name it per call).
    pub const PEER: u8 = 1;
    /// The event carries whole messages of a datagram socket: one event is one message.
    pub const DATAGRAM: u8 = 2;
}

/// Which side of the exchange the traced process is on, as far as the kernel could tell from
/// the syscall that created the socket or from the first inferred message.
pub mod role {
    pub const UNKNOWN: u8 = 0;
    pub const CLIENT: u8 = 1;
    pub const SERVER: u8 = 2;
}

/// Direction of bytes relative to the traced process.
pub mod direction {
    /// write/send family.
    pub const EGRESS: u8 = 0;
    /// read/recv family.
    pub const INGRESS: u8 = 1;
}

/// Kinds of control events.
pub mod control {
    /// A connection's protocol was inferred: the first event user space sees for it.
    pub const OPEN: u8 = 1;
    /// An inferred connection was closed.
    pub const CLOSE: u8 = 2;
}

/// Indices of the per-CPU `STATS` array. Every place in the kernel that sees, sends or loses
/// data bumps one of these; user space sums over CPUs and exports them.
pub mod stat {
    /// Control events written to the control ring.
    pub const CONTROL_EVENTS: u32 = 0;
    /// Data events written to the data ring.
    pub const DATA_EVENTS: u32 = 1;
    /// Payload bytes written to the data ring.
    pub const DATA_BYTES: u32 = 2;
    /// Control events lost because the control ring was full.
    pub const DROP_CONTROL_RING_FULL: u32 = 3;
    /// Data events lost because the data ring was full.
    pub const DROP_DATA_RING_FULL: u32 = 4;
    /// Syscalls whose payload was longer than the capture cap (bytes past the cap are lost).
    pub const DROP_CAPTURE_TRUNCATED: u32 = 5;
    /// Connections not tracked because the connection map was full.
    pub const DROP_CONN_MAP_FULL: u32 = 6;
    /// Data events suppressed because user space disabled the connection.
    pub const DROP_DISABLED: u32 = 7;
    /// Syscalls whose arguments could not be stashed (per-thread map full).
    pub const DROP_ARGS_MAP_FULL: u32 = 8;
    /// Payload bytes that could not be read from user memory.
    pub const DROP_READ_FAILED: u32 = 9;
    /// Connections given up on: no supported protocol in the first messages.
    pub const INFER_GAVE_UP: u32 = 10;
    /// Bytes sent or received without passing through a buffer we can read (`sendfile`,
    /// `splice`): reported as length-only data events.
    pub const UNCAPTURED_BYTES: u32 = 11;
    /// Messages of a `sendmmsg`/`recvmmsg` call beyond the ones the kernel reports.
    pub const DROP_MMSG_OVERFLOW: u32 = 12;
    /// Processes started by a traced process under a pid filter that could not be added to
    /// the pid map (full): they are not traced.
    pub const DROP_PIDS_MAP_FULL: u32 = 13;
    /// `INFER_BASE + proto::X`: connections whose protocol was inferred as X.
    pub const INFER_BASE: u32 = 16;
    /// Number of entries.
    pub const COUNT: u32 = INFER_BASE + super::proto::COUNT as u32;
}

/// Key of the connection map: one socket of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Thread-group id (the process id user space sees).
    pub pid: u32,
    pub fd: u32,
}
const _: () = assert!(size_of::<ConnKey>() == 8);

/// Value of the connection map. Created on connect/accept (or seeded by user space for sockets
/// that predate the receiver), removed on close.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnState {
    /// Bytes sent so far since the protocol was inferred (position of the next egress byte).
    pub send_pos: u64,
    /// Bytes received so far since the protocol was inferred.
    pub recv_pos: u64,
    /// Distinguishes successive sockets that reuse the same (pid, fd).
    pub generation: u32,
    /// `proto::*`; `UNKNOWN` until inferred.
    pub protocol: u8,
    /// `role::*` hint from connect (client) or accept (server).
    pub role: u8,
    /// Messages seen without inferring a protocol; the kernel gives up after a few.
    pub infer_attempts: u8,
    /// 1 when the peer address below is filled.
    pub has_peer: u8,
    /// `AF_INET`, `AF_INET6` or `AF_UNIX` from the syscall's own sockaddr, 0 if unknown.
    pub family: u16,
    /// Peer port in host byte order (TCP only).
    pub peer_port: u16,
    /// For accepted sockets, the listening socket's fd: user space resolves the local address
    /// (or Unix path) from it, since listeners outlive short connections. `NO_FD` otherwise.
    pub listen_fd: u32,
    /// Peer IPv4 (first 4 bytes) or IPv6 address.
    pub peer_addr: [u8; 16],
    /// The bytes of a lone header read before the protocol was inferred, in memory order
    /// (`pending_len` of them): servers such as MariaDB read a packet's 4-byte header and its
    /// payload with separate syscalls, dnsmasq reads DNS's 2-byte length a byte at a time, so
    /// a connection is inferred from header + payload (the protocol's header-glue hook decides
    /// whether the pair belongs together).
    pub pending_header: u32,
    /// `sock::*`.
    pub sock_type: u8,
    /// Valid bytes in `pending_header` (0..=4).
    pub pending_len: u8,
    /// `turn::*`: whether inference may look at the next message yet.
    pub turn: u8,
    pub _pad1: u8,
    /// The process holding `listen_fd`: the accepting process, also for the copy a forked
    /// child inherits (dnsmasq and PostgreSQL accept, fork, and serve in the child, which may
    /// be gone before user space resolves anything). 0 when `listen_fd` is `NO_FD`.
    pub listen_pid: u32,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<ConnState>() == 64);

/// `listen_fd` value of sockets that were not accepted.
pub const NO_FD: u32 = u32::MAX;

/// Key of the disabled-connections map, written by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DisabledKey {
    pub pid: u32,
    pub fd: u32,
    pub generation: u32,
    pub _pad0: u32,
}
const _: () = assert!(size_of::<DisabledKey>() == 16);

/// Control-ring record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ControlEvent {
    /// `bpf_ktime_get_boot_ns()` at the syscall.
    pub ts_ns: u64,
    pub pid: u32,
    pub fd: u32,
    pub generation: u32,
    /// `control::*`.
    pub kind: u8,
    /// `proto::*`.
    pub protocol: u8,
    /// `role::*`: from connect/accept, or from the first inferred message.
    pub role: u8,
    /// 1 when the peer address is filled.
    pub has_peer: u8,
    pub family: u16,
    pub peer_port: u16,
    /// See [`ConnState::listen_fd`].
    pub listen_fd: u32,
    pub peer_addr: [u8; 16],
    /// `bpf_get_current_comm()` of the process at the event: names short-lived processes that
    /// exit before user space reads `/proc`.
    pub comm: [u8; 16],
    /// See [`ConnState::listen_pid`].
    pub listen_pid: u32,
    /// `sock::*` when the event was written: `DGRAM` once a datagram was inferred.
    pub sock_type: u8,
    pub _pad0: [u8; 3],
}
const _: () = assert!(size_of::<ControlEvent>() == 72);

/// Header of a data-ring record; `cap_len` payload bytes follow it directly.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEventHeader {
    /// Boot-time ns: syscall entry for egress, syscall exit for ingress.
    pub ts_ns: u64,
    /// Position of the first byte of this syscall in its direction's stream.
    pub pos: u64,
    pub pid: u32,
    pub fd: u32,
    pub generation: u32,
    /// Bytes the syscall transferred.
    pub len: u32,
    /// Bytes captured (≤ `len`, ≤ `MAX_CAPTURE`).
    pub cap_len: u32,
    /// `direction::*`.
    pub direction: u8,
    /// `proto::*`.
    pub protocol: u8,
    /// `role::*` as known to the kernel, so a data event is enough to start tracking.
    pub role: u8,
    /// `data_flag::*`.
    pub flags: u8,
}
const _: () = assert!(size_of::<DataEventHeader>() == 40);

/// The peer of one datagram, after a [`DataEventHeader`] with `data_flag::PEER`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PeerTrailer {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad0: u32,
    /// IPv4 (first 4 bytes) or IPv6 address.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<PeerTrailer>() == 24);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, with explicit padding and no invalid bit
    // patterns, which is what aya::Pod requires.
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::ConnState {}
    unsafe impl aya::Pod for super::DisabledKey {}
}
