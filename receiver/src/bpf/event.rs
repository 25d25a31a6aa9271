//! Decoded, borrowed views of ring-buffer items. The rest of the receiver sees only these,
//! never the `ebpf_common` ABI structs.

use std::net::SocketAddr;

use crate::model::{ConnId, Direction, Protocol, Role};

macro_rules! kernel_ids {
    ($($variant:ident $name:ident $kernel:ident $framer:path, $stitcher:path;)*) => {
        /// The kernel's `ebpf_common::proto` id of a protocol.
        pub const fn kernel_id(p: Protocol) -> u8 {
            match p {
                $(Protocol::$variant => ebpf_common::proto::$kernel,)*
            }
        }

        /// Decodes the kernel's protocol id; `None` for "unknown", "gave up", "raw" or garbage.
        pub fn protocol_of(id: u8) -> Option<Protocol> {
            match id {
                $(ebpf_common::proto::$kernel => Some(Protocol::$variant),)*
                _ => None,
            }
        }

        /// Decodes an event's protocol id: `Some(None)` for a connection the kernel forwards
        /// uninferred (`proto::RAW`), `None` for anything that is not a protocol.
        pub fn event_protocol(id: u8) -> Option<Option<Protocol>> {
            if id == ebpf_common::proto::RAW {
                return Some(None);
            }
            protocol_of(id).map(Some)
        }
    };
}

crate::for_each_protocol!(kernel_ids);

// Every kernel id fits the per-protocol counters (`stat::INFER_BASE + id`).
const _: () = {
    let mut i = 0;
    while i < Protocol::ALL.len() {
        assert!(kernel_id(Protocol::ALL[i]) < ebpf_common::proto::COUNT);
        i += 1;
    }
};

/// Address family the kernel saw in the socket's connect/accept/socket arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketFamily {
    Inet,
    Inet6,
    Unix,
}

/// A connection whose protocol the kernel inferred (control stream), or that it forwards
/// uninferred (`ebpf.kernel_inference: false`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    pub conn: ConnId,
    pub ts_ns: u64,
    /// `None`: the kernel did not infer the connection (`ebpf.kernel_inference: false`) and
    /// forwards all of its bytes; user space infers it.
    pub protocol: Option<Protocol>,
    /// `None` when the kernel could not tell.
    pub role: Option<Role>,
    pub family: Option<SocketFamily>,
    /// Peer address from connect's or accept's own arguments, when present (TCP).
    pub peer: Option<SocketAddr>,
    /// For accepted sockets, the listening socket as (pid, fd): the process that accepted,
    /// which is the parent when a forked child inherited the socket.
    pub listen_fd: Option<(u32, u32)>,
    /// The kernel inferred the protocol from a datagram (a UDP socket).
    pub datagram: bool,
    /// The kernel's task name (`comm`, NUL-padded) of the process at the event.
    pub comm: [u8; 16],
}

impl OpenEvent {
    /// `comm` as text, `None` when empty.
    pub fn comm(&self) -> Option<String> {
        let end = self
            .comm
            .iter()
            .position(|c| *c == 0)
            .unwrap_or(self.comm.len());
        let name = String::from_utf8_lossy(self.comm.get(..end).unwrap_or_default());
        (!name.is_empty()).then(|| name.into_owned())
    }
}

/// An inferred connection was closed (control stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    pub conn: ConnId,
    pub ts_ns: u64,
}

/// Bytes of one syscall (or one datagram) on an inferred connection (data stream), or on one
/// the kernel forwards uninferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataEvent<'a> {
    pub conn: ConnId,
    pub ts_ns: u64,
    /// `None`: not inferred by the kernel (`ebpf.kernel_inference: false`); positions then
    /// count from the connection's first message, not from its inference.
    pub protocol: Option<Protocol>,
    /// The kernel's role; before inference, only what connect/accept said.
    pub role: Option<Role>,
    pub direction: Direction,
    /// Stream position of the first byte.
    pub pos: u64,
    /// Bytes the syscall transferred; `bytes.len()` ≤ `len` were captured (none for sendfile
    /// and splice).
    pub len: u32,
    pub bytes: &'a [u8],
    /// One whole message of a datagram socket.
    pub datagram: bool,
    /// The datagram's peer when the syscall named it (unconnected UDP).
    pub peer: Option<SocketAddr>,
}

/// One decoded ring item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelEvent<'a> {
    Open(OpenEvent),
    Close(CloseEvent),
    Data(DataEvent<'a>),
}
