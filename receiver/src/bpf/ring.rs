//! Ring readers: the control ring (open/close) and the data ring (bytes), decoded into
//! borrowed [`KernelEvent`]s.
//!
//! Wakeups: the kernel writes without waking user space unless a ring is more than a quarter
//! full, so [`RingReader::wait`] returns on readiness *or* after the poll interval, and the
//! caller drains on both.
//!
//! Ordering: the kernel writes an OPEN before the first data event of a connection, and a
//! connection's data before its CLOSE, but in two rings. [`RingReader::drain`] reads the control
//! ring first (so OPENs come before the data they announce, except for an OPEN written after the
//! control ring was read: data events carry protocol and role for that case), and holds CLOSEs
//! back until the data ring has been drained empty, so a connection's data always comes before
//! its CLOSE.

use std::{io, mem::size_of, net::SocketAddr, ptr, time::Duration};

use aya::maps::{Map, MapData, RingBuf};
use ebpf_common::{
    ControlEvent, DataEventHeader, PeerTrailer, control, data_flag, direction, role,
};
use tokio::io::{Interest, unix::AsyncFd};

use super::event::event_protocol;
use super::{CloseEvent, DataEvent, KernelEvent, LoadError, OpenEvent, SocketFamily};
use crate::model::{ConnId, Direction, Role};

/// CLOSEs held back at most; past this they are delivered even if the data ring never ran
/// empty (a permanently busy ring must not grow this without bound).
const MAX_PENDING_CLOSES: usize = 4096;

/// A ring, registered with the tokio reactor on first `wait` (registration needs a runtime).
enum Ring {
    Plain(RingBuf<MapData>),
    Async(AsyncFd<RingBuf<MapData>>),
    /// Only transiently, while switching from `Plain` to `Async`.
    Gone,
}

impl Ring {
    fn get(&mut self) -> Option<&mut RingBuf<MapData>> {
        match self {
            Ring::Plain(r) => Some(r),
            Ring::Async(a) => Some(a.get_mut()),
            Ring::Gone => None,
        }
    }

    fn register(&mut self) -> io::Result<()> {
        if !matches!(self, Ring::Plain(_)) {
            return Ok(());
        }
        let Ring::Plain(ring) = std::mem::replace(self, Ring::Gone) else {
            return Ok(());
        };
        // SAFETY: the ring's fd is owned by the RingBuf moved into the AsyncFd: it stays open
        // and refers to the same map for the AsyncFd's whole life.
        match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
            Ok(fd) => {
                *self = Ring::Async(fd);
                Ok(())
            }
            Err(e) => {
                let (ring, err) = e.into_parts();
                *self = Ring::Plain(ring);
                Err(err)
            }
        }
    }
}

/// Reader of both rings, for the capture task.
pub struct RingReader {
    control: Ring,
    data: Ring,
    pending_closes: Vec<CloseEvent>,
    malformed: u64,
    /// The last `wait` returned because a ring signalled: the items drained until the next
    /// `wait` count as that wakeup's.
    woken: bool,
}

impl RingReader {
    pub(super) fn new(control: Map, data: Map) -> Result<RingReader, LoadError> {
        let control = RingBuf::try_from(control).map_err(|source| LoadError::Map {
            map: "CONTROL",
            source,
        })?;
        let data = RingBuf::try_from(data).map_err(|source| LoadError::Map {
            map: "DATA",
            source,
        })?;
        Ok(RingReader {
            control: Ring::Plain(control),
            data: Ring::Plain(data),
            pending_closes: Vec::with_capacity(64),
            malformed: 0,
            woken: false,
        })
    }

    /// Waits until either ring is readable or `poll` elapses (tokio AsyncFd on the ring fds).
    /// Wakeups by a ring signal are counted in `ebpf_receiver_ring_wakeups_total`.
    pub async fn wait(&mut self, poll: Duration) -> io::Result<()> {
        self.woken = false;
        self.control.register()?;
        self.data.register()?;
        let (Ring::Async(control), Ring::Async(data)) = (&self.control, &self.data) else {
            tokio::time::sleep(poll).await;
            return Ok(());
        };
        let woken = tokio::select! {
            ready = control.readable() => { ready?.clear_ready(); true }
            ready = data.readable() => { ready?.clear_ready(); true }
            () = tokio::time::sleep(poll) => false,
        };
        if woken {
            self.woken = true;
            crate::telemetry::metrics()
                .ring_wakeups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Drains the control ring first, then the data ring, at most `max_items` items in total,
    /// calling `f` with each decoded event; returns the number of ring items consumed. Items
    /// that fail to decode are counted in [`RingReader::malformed`] and skipped.
    pub fn drain(&mut self, max_items: usize, mut f: impl FnMut(KernelEvent<'_>)) -> usize {
        let mut n = 0;
        let (mut control_bytes, mut data_bytes) = (0u64, 0u64);
        if let Some(ring) = self.control.get() {
            while n < max_items {
                let Some(item) = ring.next() else { break };
                n += 1;
                control_bytes += item.len() as u64;
                match decode_control(&item) {
                    Some(KernelEvent::Close(close)) => self.pending_closes.push(close),
                    Some(event) => f(event),
                    None => self.malformed += 1,
                }
            }
        }
        let mut data_empty = false;
        if let Some(ring) = self.data.get() {
            loop {
                if n >= max_items {
                    break;
                }
                let Some(item) = ring.next() else {
                    data_empty = true;
                    break;
                };
                n += 1;
                data_bytes += item.len() as u64;
                match decode_data(&item) {
                    Some(event) => f(KernelEvent::Data(event)),
                    None => self.malformed += 1,
                }
            }
        }
        if data_empty || self.pending_closes.len() > MAX_PENDING_CLOSES {
            for close in self.pending_closes.drain(..) {
                f(KernelEvent::Close(close));
            }
        }
        if n > 0 {
            use std::sync::atomic::Ordering::Relaxed;
            let m = crate::telemetry::metrics();
            m.ring_control_bytes.fetch_add(control_bytes, Relaxed);
            m.ring_data_bytes.fetch_add(data_bytes, Relaxed);
            if self.woken {
                m.ring_wakeup_items.fetch_add(n as u64, Relaxed);
            }
        }
        n
    }

    /// Ring items that failed to decode so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

fn conn_role(value: u8) -> Option<Role> {
    match value {
        role::CLIENT => Some(Role::Client),
        role::SERVER => Some(Role::Server),
        _ => None,
    }
}

const AF_UNIX: u16 = libc::AF_UNIX as u16;
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Decodes a control-ring item; `None` if malformed.
pub(super) fn decode_control(bytes: &[u8]) -> Option<KernelEvent<'static>> {
    if bytes.len() < size_of::<ControlEvent>() {
        return None;
    }
    // SAFETY: length checked above; ControlEvent is #[repr(C)] plain integers (every bit
    // pattern is valid) and read_unaligned does not need the ring's alignment.
    let ev: ControlEvent = unsafe { ptr::read_unaligned(bytes.as_ptr().cast()) };
    let conn = ConnId {
        pid: ev.pid,
        fd: ev.fd,
        generation: ev.generation,
    };
    match ev.kind {
        control::OPEN => {
            let family = match ev.family {
                AF_INET => Some(SocketFamily::Inet),
                AF_INET6 => Some(SocketFamily::Inet6),
                AF_UNIX => Some(SocketFamily::Unix),
                _ => None,
            };
            let peer = match (ev.has_peer, family) {
                (1, Some(SocketFamily::Inet)) => {
                    let [a, b, c, d, ..] = ev.peer_addr;
                    Some(SocketAddr::from(([a, b, c, d], ev.peer_port)))
                }
                (1, Some(SocketFamily::Inet6)) => {
                    Some(SocketAddr::from((ev.peer_addr, ev.peer_port)))
                }
                _ => None,
            };
            Some(KernelEvent::Open(OpenEvent {
                conn,
                ts_ns: ev.ts_ns,
                protocol: event_protocol(ev.protocol)?,
                role: conn_role(ev.role),
                family,
                peer,
                listen_fd: (ev.listen_fd != ebpf_common::NO_FD)
                    .then_some((ev.listen_pid, ev.listen_fd)),
                datagram: ev.sock_type == ebpf_common::sock::DGRAM,
                comm: ev.comm,
            }))
        }
        control::CLOSE => Some(KernelEvent::Close(CloseEvent {
            conn,
            ts_ns: ev.ts_ns,
        })),
        _ => None,
    }
}

/// Decodes a data-ring item (header + captured bytes, borrowed, + the datagram's peer); `None`
/// if malformed.
pub(super) fn decode_data(bytes: &[u8]) -> Option<DataEvent<'_>> {
    const HDR: usize = size_of::<DataEventHeader>();
    const TRAILER: usize = size_of::<PeerTrailer>();
    let head = bytes.get(..HDR)?;
    // SAFETY: `head` is exactly HDR bytes; DataEventHeader is #[repr(C)] plain integers and
    // read_unaligned does not need alignment.
    let h: DataEventHeader = unsafe { ptr::read_unaligned(head.as_ptr().cast()) };
    if h.cap_len > h.len {
        return None;
    }
    let payload_end = HDR.checked_add(h.cap_len as usize)?;
    let payload = bytes.get(HDR..payload_end)?;
    let peer = if h.flags & data_flag::PEER != 0 {
        let raw = bytes.get(payload_end..payload_end.checked_add(TRAILER)?)?;
        // SAFETY: `raw` is exactly TRAILER bytes; PeerTrailer is #[repr(C)] plain integers.
        let t: PeerTrailer = unsafe { ptr::read_unaligned(raw.as_ptr().cast()) };
        match t.family {
            AF_INET => {
                let [a, b, c, d, ..] = t.addr;
                Some(SocketAddr::from(([a, b, c, d], t.port)))
            }
            AF_INET6 => {
                let ip = std::net::IpAddr::from(t.addr).to_canonical();
                Some(SocketAddr::new(ip, t.port))
            }
            _ => return None,
        }
    } else {
        None
    };
    let direction = match h.direction {
        direction::EGRESS => Direction::Egress,
        direction::INGRESS => Direction::Ingress,
        _ => return None,
    };
    Some(DataEvent {
        conn: ConnId {
            pid: h.pid,
            fd: h.fd,
            generation: h.generation,
        },
        ts_ns: h.ts_ns,
        protocol: event_protocol(h.protocol)?,
        role: conn_role(h.role),
        direction,
        pos: h.pos,
        len: h.len,
        bytes: payload,
        datagram: h.flags & data_flag::DATAGRAM != 0,
        peer,
    })
}
