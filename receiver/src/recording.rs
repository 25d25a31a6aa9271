//! Event recordings: what the capture task handed the tracker, replayable without a kernel.
//!
//! `ebpf-receiver --record-events FILE` (or `EBPF_RECEIVER_RECORD_EVENTS=FILE`) writes every
//! decoded ring item in the order the tracker saw it, the socket tuple the tracker resolved for
//! each new connection, and the batch and sweep boundaries, until the file reaches its byte cap
//! (`--record-max-bytes`, default 1 MiB). The replay benchmark (`cargo xtask bench replay`,
//! `receiver/benches/replay.rs`) feeds such a file through tracker → parsers → spans → OTLP
//! request encoding. A diagnostic: the file holds **raw captured payloads** (passwords
//! included) and is created mode 0600; never record production traffic you may not keep.
//!
//! The format is ours and versioned, independent of the kernel ABI (decoded events, not ring
//! bytes), little-endian:
//!
//! ```text
//! file   = "EBPFREC1" u8:n_protocols { u8:len name }* item*
//! item   = 1 OPEN  conn u64:ts u8:proto u8:role u8:family addr:peer u8:has_listen u32:pid u32:fd
//!                   u8:datagram [u8;16]:comm
//!        | 2 CLOSE conn u64:ts
//!        | 3 DATA  conn u64:ts u8:proto u8:role u8:direction u64:pos u32:len u8:datagram addr:peer
//!                   u32:n [u8;n]:captured bytes
//!        | 4 TUPLE conn u8:transport addr:local addr:peer u16:path_len(0xffff = none) path
//!        | 5 BATCH                      (end of one drain: closes apply, records are emitted)
//!        | 6 SWEEP u64:boot_now_ns      (the once-a-second housekeeping)
//! conn   = u32:pid u32:fd u32:generation
//! addr   = 0 | 4 [u8;4] u16:port | 6 [u8;16] u16:port
//! role   = 0 unknown | 1 client | 2 server;  family = 0 unknown | 1 inet | 2 inet6 | 3 unix
//! direction = 0 egress | 1 ingress;  transport = 0 unknown | 1 tcp | 2 udp | 3 unix
//! proto  = index into the header's protocol names (so reordering `Protocol` keeps old files)
//! ```

use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::bpf::{CloseEvent, DataEvent, KernelEvent, OpenEvent, SocketFamily};
use crate::model::{ConnId, ConnMeta, Direction, Protocol, Role, Transport};
use crate::tracker::socket::SocketTuple;

const MAGIC: &[u8; 8] = b"EBPFREC1";
const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const DATA: u8 = 3;
/// Protocol byte of an event of a connection the kernel did not infer.
const RAW_PROTOCOL: u8 = 0xff;

fn protocol_byte(p: Option<Protocol>) -> u8 {
    p.map_or(RAW_PROTOCOL, |p| p.index() as u8)
}
const TUPLE: u8 = 4;
const BATCH: u8 = 5;
const SWEEP: u8 = 6;
const NO_PATH: u16 = u16::MAX;

/// Default byte cap of a recording.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;

/// Writes a recording; stops (for good) at its byte cap. Used by the capture task only.
pub struct Recorder {
    out: io::BufWriter<std::fs::File>,
    written: u64,
    max_bytes: u64,
    full: bool,
    buf: Vec<u8>,
    /// Connections whose tuple was written (or found unknown) already.
    tupled: std::collections::HashSet<ConnId>,
}

impl Recorder {
    /// Creates `path` (mode 0600, truncated) and writes the header.
    pub fn create(path: &Path, max_bytes: u64) -> io::Result<Recorder> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        let mut r = Recorder {
            out: io::BufWriter::with_capacity(64 * 1024, file),
            written: 0,
            max_bytes,
            full: false,
            buf: Vec::with_capacity(256),
            tupled: std::collections::HashSet::new(),
        };
        r.buf.extend_from_slice(MAGIC);
        r.buf.push(Protocol::ALL.len() as u8);
        for p in Protocol::ALL {
            r.buf.push(p.as_str().len() as u8);
            r.buf.extend_from_slice(p.as_str().as_bytes());
        }
        r.commit()?;
        Ok(r)
    }

    /// Whether the cap was reached (nothing more is written).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// One decoded ring item, in the order the tracker receives it.
    pub fn event(&mut self, ev: &KernelEvent<'_>) -> io::Result<()> {
        if self.full {
            return Ok(());
        }
        let b = &mut self.buf;
        match ev {
            KernelEvent::Open(o) => {
                b.push(OPEN);
                conn(b, o.conn);
                b.extend_from_slice(&o.ts_ns.to_le_bytes());
                b.push(protocol_byte(o.protocol));
                b.push(role(o.role));
                b.push(match o.family {
                    None => 0,
                    Some(SocketFamily::Inet) => 1,
                    Some(SocketFamily::Inet6) => 2,
                    Some(SocketFamily::Unix) => 3,
                });
                addr(b, o.peer);
                let (has, pid, fd) = o.listen_fd.map_or((0, 0, 0), |(p, f)| (1, p, f));
                b.push(has);
                b.extend_from_slice(&pid.to_le_bytes());
                b.extend_from_slice(&fd.to_le_bytes());
                b.push(u8::from(o.datagram));
                b.extend_from_slice(&o.comm);
            }
            KernelEvent::Close(c) => {
                b.push(CLOSE);
                conn(b, c.conn);
                b.extend_from_slice(&c.ts_ns.to_le_bytes());
            }
            KernelEvent::Data(d) => {
                b.push(DATA);
                conn(b, d.conn);
                b.extend_from_slice(&d.ts_ns.to_le_bytes());
                b.push(protocol_byte(d.protocol));
                b.push(role(d.role));
                b.push(match d.direction {
                    Direction::Egress => 0,
                    Direction::Ingress => 1,
                });
                b.extend_from_slice(&d.pos.to_le_bytes());
                b.extend_from_slice(&d.len.to_le_bytes());
                b.push(u8::from(d.datagram));
                addr(b, d.peer);
                b.extend_from_slice(&(d.bytes.len() as u32).to_le_bytes());
                b.extend_from_slice(d.bytes);
            }
        }
        self.commit()
    }

    /// The tuple the tracker holds for `id`, written once per connection (call after the event
    /// that may have created it).
    pub fn tuple(&mut self, id: ConnId, meta: Option<&ConnMeta>) -> io::Result<()> {
        let Some(meta) = meta else { return Ok(()) };
        if self.full || !self.tupled.insert(id) {
            return Ok(());
        }
        let b = &mut self.buf;
        b.push(TUPLE);
        conn(b, id);
        b.push(match meta.transport {
            None => 0,
            Some(Transport::Tcp) => 1,
            Some(Transport::Udp) => 2,
            Some(Transport::Unix) => 3,
        });
        addr(b, meta.local);
        addr(b, meta.peer);
        match meta.unix_path.as_deref() {
            Some(p) if p.len() < usize::from(NO_PATH) => {
                b.extend_from_slice(&(p.len() as u16).to_le_bytes());
                b.extend_from_slice(p.as_bytes());
            }
            _ => b.extend_from_slice(&NO_PATH.to_le_bytes()),
        }
        self.commit()
    }

    /// The end of one drain batch.
    pub fn end_batch(&mut self) -> io::Result<()> {
        if self.full {
            return Ok(());
        }
        self.buf.push(BATCH);
        self.commit()
    }

    /// A housekeeping sweep at kernel boot time `now_ns`.
    pub fn sweep(&mut self, now_ns: u64) -> io::Result<()> {
        if self.full {
            return Ok(());
        }
        self.buf.push(SWEEP);
        self.buf.extend_from_slice(&now_ns.to_le_bytes());
        self.commit()
    }

    /// Flushes buffered items to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the item in `buf` unless it would pass the cap (then the recording ends, after a
    /// last BATCH so a replay applies the closes it holds).
    fn commit(&mut self) -> io::Result<()> {
        let n = self.buf.len() as u64;
        if self.written + n + 1 > self.max_bytes && self.written > 0 {
            self.full = true;
            self.buf.clear();
            self.out.write_all(&[BATCH])?;
            return self.out.flush();
        }
        self.out.write_all(&self.buf)?;
        self.written += n;
        self.buf.clear();
        Ok(())
    }
}

fn conn(b: &mut Vec<u8>, c: ConnId) {
    b.extend_from_slice(&c.pid.to_le_bytes());
    b.extend_from_slice(&c.fd.to_le_bytes());
    b.extend_from_slice(&c.generation.to_le_bytes());
}

fn role(r: Option<Role>) -> u8 {
    match r {
        None => 0,
        Some(Role::Client) => 1,
        Some(Role::Server) => 2,
    }
}

fn addr(b: &mut Vec<u8>, a: Option<SocketAddr>) {
    match a {
        None => b.push(0),
        Some(SocketAddr::V4(v4)) => {
            b.push(4);
            b.extend_from_slice(&v4.ip().octets());
            b.extend_from_slice(&v4.port().to_le_bytes());
        }
        Some(SocketAddr::V6(v6)) => {
            b.push(6);
            b.extend_from_slice(&v6.ip().octets());
            b.extend_from_slice(&v6.port().to_le_bytes());
        }
    }
}

/// One item of a recording, borrowing its bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Item<'a> {
    Event(KernelEvent<'a>),
    Tuple(ConnId, SocketTuple),
    EndBatch,
    Sweep(u64),
}

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("not a recording (bad magic)")]
    Magic,
    #[error("truncated or malformed item at byte {0}")]
    Malformed(usize),
    #[error("unknown protocol `{0}` in the header")]
    Protocol(String),
}

/// Reads a recording held in memory.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    protocols: Vec<Protocol>,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Reader<'a>, RecordingError> {
        if bytes.get(..8) != Some(MAGIC.as_slice()) {
            return Err(RecordingError::Magic);
        }
        let mut r = Reader {
            bytes,
            at: 8,
            protocols: Vec::new(),
        };
        let n = r.u8().ok_or(RecordingError::Malformed(8))?;
        for _ in 0..n {
            let len = r.u8().ok_or(RecordingError::Malformed(r.at))?;
            let name = r
                .take(usize::from(len))
                .ok_or(RecordingError::Malformed(r.at))?;
            let name = String::from_utf8_lossy(name);
            let p = Protocol::ALL
                .iter()
                .find(|p| p.as_str() == name)
                .ok_or_else(|| RecordingError::Protocol(name.into_owned()))?;
            r.protocols.push(*p);
        }
        Ok(r)
    }

    /// Every item; the first malformed one ends the iteration with an error.
    pub fn items(mut self) -> Result<Vec<Item<'a>>, RecordingError> {
        let mut out = Vec::new();
        while self.at < self.bytes.len() {
            let start = self.at;
            out.push(self.item().ok_or(RecordingError::Malformed(start))?);
        }
        Ok(out)
    }

    fn item(&mut self) -> Option<Item<'a>> {
        Some(match self.u8()? {
            OPEN => {
                let conn = self.conn()?;
                let ts_ns = self.u64()?;
                let protocol = self.protocol()?;
                let role = self.role()?;
                let family = match self.u8()? {
                    0 => None,
                    1 => Some(SocketFamily::Inet),
                    2 => Some(SocketFamily::Inet6),
                    3 => Some(SocketFamily::Unix),
                    _ => return None,
                };
                let peer = self.addr()?;
                let has = self.u8()?;
                let (pid, fd) = (self.u32()?, self.u32()?);
                let datagram = self.u8()? != 0;
                let comm: [u8; 16] = self.take(16)?.try_into().ok()?;
                Item::Event(KernelEvent::Open(OpenEvent {
                    conn,
                    ts_ns,
                    protocol,
                    role,
                    family,
                    peer,
                    listen_fd: (has != 0).then_some((pid, fd)),
                    datagram,
                    comm,
                }))
            }
            CLOSE => Item::Event(KernelEvent::Close(CloseEvent {
                conn: self.conn()?,
                ts_ns: self.u64()?,
            })),
            DATA => {
                let conn = self.conn()?;
                let ts_ns = self.u64()?;
                let protocol = self.protocol()?;
                let role = self.role()?;
                let direction = match self.u8()? {
                    0 => Direction::Egress,
                    1 => Direction::Ingress,
                    _ => return None,
                };
                let pos = self.u64()?;
                let len = self.u32()?;
                let datagram = self.u8()? != 0;
                let peer = self.addr()?;
                let n = self.u32()? as usize;
                let bytes = self.take(n)?;
                Item::Event(KernelEvent::Data(DataEvent {
                    conn,
                    ts_ns,
                    protocol,
                    role,
                    direction,
                    pos,
                    len,
                    bytes,
                    datagram,
                    peer,
                }))
            }
            TUPLE => {
                let conn = self.conn()?;
                let transport = match self.u8()? {
                    0 => None,
                    1 => Some(Transport::Tcp),
                    2 => Some(Transport::Udp),
                    3 => Some(Transport::Unix),
                    _ => return None,
                };
                let local = self.addr()?;
                let peer = self.addr()?;
                let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
                let unix_path = if len == NO_PATH {
                    None
                } else {
                    Some(String::from_utf8_lossy(self.take(usize::from(len))?).into_owned())
                };
                Item::Tuple(
                    conn,
                    SocketTuple {
                        transport,
                        local,
                        peer,
                        unix_path,
                    },
                )
            }
            BATCH => Item::EndBatch,
            SWEEP => Item::Sweep(self.u64()?),
            _ => return None,
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn conn(&mut self) -> Option<ConnId> {
        Some(ConnId {
            pid: self.u32()?,
            fd: self.u32()?,
            generation: self.u32()?,
        })
    }

    /// `Some(None)`: a connection not inferred in the kernel (`ebpf.kernel_inference: false`).
    fn protocol(&mut self) -> Option<Option<Protocol>> {
        match self.u8()? {
            RAW_PROTOCOL => Some(None),
            i => self.protocols.get(usize::from(i)).copied().map(Some),
        }
    }

    fn role(&mut self) -> Option<Option<Role>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(Role::Client)),
            2 => Some(Some(Role::Server)),
            _ => None,
        }
    }

    fn addr(&mut self) -> Option<Option<SocketAddr>> {
        match self.u8()? {
            0 => Some(None),
            4 => {
                let ip: [u8; 4] = self.take(4)?.try_into().ok()?;
                let port = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
                Some(Some(SocketAddr::new(IpAddr::from(ip), port)))
            }
            6 => {
                let ip: [u8; 16] = self.take(16)?.try_into().ok()?;
                let port = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
                Some(Some(SocketAddr::new(IpAddr::from(ip), port)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_cap() {
        let dir = std::env::temp_dir().join(format!("rec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.bin");
        let c = ConnId {
            pid: 7,
            fd: 9,
            generation: 3,
        };
        let open = KernelEvent::Open(OpenEvent {
            conn: c,
            ts_ns: 11,
            protocol: Some(Protocol::Redis),
            role: Some(Role::Server),
            family: Some(SocketFamily::Inet6),
            peer: Some("[::1]:6379".parse().unwrap()),
            listen_fd: Some((7, 4)),
            datagram: false,
            comm: *b"redis-server\0\0\0\0",
        });
        let data = KernelEvent::Data(DataEvent {
            conn: c,
            ts_ns: 12,
            protocol: Some(Protocol::Redis),
            role: None,
            direction: Direction::Ingress,
            pos: 5,
            len: 100,
            bytes: b"*1\r\n$4\r\nPING\r\n",
            datagram: true,
            peer: Some("10.1.2.3:53".parse().unwrap()),
        });
        let close = KernelEvent::Close(CloseEvent { conn: c, ts_ns: 13 });
        let meta = ConnMeta {
            transport: Some(Transport::Unix),
            unix_path: Some("/run/x.sock".into()),
            ..ConnMeta::default()
        };
        let mut r = Recorder::create(&path, DEFAULT_MAX_BYTES).unwrap();
        r.event(&open).unwrap();
        r.tuple(c, Some(&meta)).unwrap();
        r.tuple(c, Some(&meta)).unwrap();
        r.event(&data).unwrap();
        r.end_batch().unwrap();
        r.event(&close).unwrap();
        r.sweep(99).unwrap();
        r.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let items = Reader::new(&bytes).unwrap().items().unwrap();
        let tuple = SocketTuple {
            transport: Some(Transport::Unix),
            local: None,
            peer: None,
            unix_path: Some("/run/x.sock".into()),
        };
        assert_eq!(
            items,
            vec![
                Item::Event(open),
                Item::Tuple(c, tuple),
                Item::Event(data),
                Item::EndBatch,
                Item::Event(close),
                Item::Sweep(99)
            ]
        );

        // A cap ends the recording with a BATCH and writes nothing after it.
        let mut r = Recorder::create(&path, 150).unwrap();
        for _ in 0..10 {
            r.event(&data).unwrap();
        }
        assert!(r.is_full());
        r.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() <= 151, "{}", bytes.len());
        let items = Reader::new(&bytes).unwrap().items().unwrap();
        assert_eq!(items.last(), Some(&Item::EndBatch));
        assert!(items.len() >= 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Reader::new(b"nope").is_err());
        let mut b = MAGIC.to_vec();
        b.push(0);
        b.extend_from_slice(&[3, 1, 2]);
        assert!(Reader::new(&b).unwrap().items().is_err());
    }
}
