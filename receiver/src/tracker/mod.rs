//! The connection tracker: user-space state of every inferred connection.
//!
//! It owns the connection table (bounded, least-recently-active eviction, idle sweep), resolves
//! each connection's socket tuple and process once, feeds each captured syscall to the
//! connection's [`ConnParser`], and turns the parser's records into [`ConnRecord`]s with
//! wall-clock times. It is single-writer state: only the capture task touches it, so there are
//! no locks.
//!
//! Ordering: the kernel writes a connection's OPEN before its data and its CLOSE after its
//! data, but on two rings. `RingReader::drain` already holds CLOSEs back until the data ring is
//! empty; the tracker still applies closes only at [`Tracker::end_batch`], so a close never
//! loses data delivered in the same batch whatever order the events came in. A data event for
//! an unknown connection starts tracking it (data events carry protocol and role). Requests past
//! `request_timeout` are given up in [`Tracker::sweep`], once a second, not per event.
//!
//! With `ebpf.kernel_inference: false` (a diagnostic for the benchmark) the kernel forwards
//! connections uninferred: the tracker runs the kernel's inference on each of their messages
//! ([`RawInference`], a few bytes per connection in a table as bounded as the connection
//! table), discards (counted) what comes before inference and everything after giving up, and
//! once a connection is inferred feeds the parser exactly what the kernel would have sent:
//! positions counted from the inferring message, a glued header first.

pub mod clock;
pub mod process;
pub mod socket;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::bpf::{DataEvent, Inference, KernelEvent, OpenEvent, RawInference, SocketFamily};
use crate::model::{
    ConnId, ConnMeta, Direction, PROTOCOL_COUNT, ProcessMeta, Protocol, Role, Transport,
};
use crate::protocol::{Chunk, ConnParser, ParseStats, ParserLimits};
use crate::record::{ConnRecord, Record};
use crate::telemetry;

pub use clock::WallClock;

/// A connection is switched off in the kernel when it produced this many invalid positions or
/// unpairable responses (with no request framed) without a single record: it is not the
/// protocol the kernel inferred.
const DISABLE_AFTER_INVALID: u64 = 32;

/// The connection table's hasher. Connection ids are three small integers the kernel hands
/// out (no attacker picks them), so a multiply-rotate mix is enough, at a fraction of SipHash's
/// cost on the per-event lookup.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Final avalanche (the SplitMix64 finaliser) so the table's top bits vary too.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Bounds and timeouts of the tracker.
#[derive(Clone, Debug)]
pub struct TrackerSettings {
    pub max_connections: usize,
    pub idle_timeout_ns: u64,
    pub request_timeout_ns: u64,
    pub limits: ParserLimits,
    /// `/proc`, or a fixture directory in tests.
    pub proc_root: PathBuf,
    /// Resolve socket tuples and process metadata from `/proc` (off in pure unit tests).
    pub resolve: bool,
    /// Protocols switched on (`protocols.*`): the only ones user-space inference reports.
    pub enabled_protocols: Vec<Protocol>,
    /// Cap of the unparsed bytes buffered by all connections together
    /// (`tracker.max_total_buffer_bytes`): past it, the connection whose bytes took the total
    /// over drops its buffered bytes (counted as buffer overflow) and resynchronises.
    pub max_total_buffer_bytes: usize,
}

struct Conn {
    protocol: Protocol,
    parser: Option<ConnParser>,
    meta: ConnMeta,
    last_ns: u64,
    stats: ParseStats,
    /// Unparsed bytes its parser buffers, as last counted in `Tracker::buffered`.
    buffered: usize,
    disabled: bool,
    /// Inferred in user space: the kernel's stream positions where the kernel would have
    /// started counting, per direction (egress, ingress).
    raw_base: Option<[u64; 2]>,
}

/// A connection the kernel forwards uninferred, not inferred (or given up on) yet.
struct RawConn {
    inference: RawInference,
    /// The kernel's OPEN, applied once the connection is inferred.
    open: Option<OpenEvent>,
    /// End of the bytes seen so far per direction (egress, ingress), in kernel positions.
    ends: [u64; 2],
    last_ns: u64,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

/// A connection silent this long gives its empty buffers back to the allocator (10,000 idle
/// keep-alive connections then hold their state, not their buffers' high-water marks).
const RELEASE_AFTER_NS: u64 = 2_000_000_000;

/// See the module documentation.
pub struct Tracker {
    settings: TrackerSettings,
    conns: HashMap<ConnId, Conn, IdHash>,
    /// `ebpf.kernel_inference: false`: connections not inferred yet or given up on.
    raw: HashMap<ConnId, RawConn, IdHash>,
    processes: HashMap<u32, Arc<ProcessMeta>>,
    clock: WallClock,
    pending_closes: Vec<ConnId>,
    to_disable: Vec<ConnId>,
    to_enable: Vec<ConnId>,
    records: Vec<Record>,
    /// Parser counters of the current batch, per protocol (`Protocol::index`).
    batch_stats: [ParseStats; PROTOCOL_COUNT],
    /// Tuples of sockets that predate the receiver, read from `/proc` when they were registered
    /// with the kernel: such a socket may be closed before its first inferred message reaches
    /// us. Bounded by the registration limit; forgotten at the first idle sweep.
    preloaded: HashMap<(u32, u32), socket::SocketTuple>,
    started_ns: u64,
    /// Unparsed bytes buffered by every connection's parser (the sum of `Conn::buffered`).
    buffered: usize,
}

impl Tracker {
    pub fn new(settings: TrackerSettings, clock: WallClock) -> Tracker {
        Tracker {
            settings,
            conns: HashMap::default(),
            raw: HashMap::default(),
            processes: HashMap::new(),
            clock,
            pending_closes: Vec::new(),
            to_disable: Vec::new(),
            to_enable: Vec::new(),
            records: Vec::new(),
            batch_stats: Default::default(),
            preloaded: HashMap::new(),
            started_ns: clock::boot_now_ns(),
            buffered: 0,
        }
    }

    fn stats_of(&mut self, p: Protocol) -> &mut ParseStats {
        stats_of(&mut self.batch_stats, p)
    }

    /// Remembers the tuple of a socket that existed before the receiver started.
    pub fn preload(&mut self, pid: u32, fd: u32, tuple: socket::SocketTuple) {
        self.preloaded.insert((pid, fd), tuple);
    }

    /// Connections currently tracked.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// What the tracker knows of connection `id` (the event recorder writes its tuple).
    pub fn conn_meta(&self, id: ConnId) -> Option<&ConnMeta> {
        self.conns.get(&id).map(|c| &c.meta)
    }

    /// Applies one kernel event; finished exchanges are appended to `out`.
    pub fn on_event(&mut self, ev: &KernelEvent<'_>, out: &mut Vec<ConnRecord>) {
        match ev {
            KernelEvent::Open(open) => self.on_open(open),
            KernelEvent::Close(close) => self.pending_closes.push(close.conn),
            KernelEvent::Data(data) => self.on_data(data, out),
        }
    }

    fn on_open(&mut self, open: &OpenEvent) {
        let Some(protocol) = open.protocol else {
            // Forwarded uninferred: applied once user space infers it.
            raw_conn(
                &mut self.raw,
                self.settings.max_connections,
                open.conn,
                open.ts_ns,
            )
            .open = Some(*open);
            return;
        };
        if !self.ensure_conn(open.conn, protocol, open.role, open.ts_ns, true) {
            return;
        }
        let kernel_transport = match open.family {
            Some(SocketFamily::Unix) => Some(Transport::Unix),
            Some(SocketFamily::Inet | SocketFamily::Inet6) if open.datagram => Some(Transport::Udp),
            Some(SocketFamily::Inet | SocketFamily::Inet6) => Some(Transport::Tcp),
            None => None,
        };
        if let Some(c) = self.conns.get_mut(&open.conn) {
            forget_if_contradicted(&mut c.meta, kernel_transport, open.peer);
        }
        // A short-lived process may be gone before we read /proc: name it from the kernel.
        if let Some(comm) = open.comm() {
            self.name_process(open.conn.pid, comm);
        }
        // Accepted sockets of short connections may be closed before we resolve them; the
        // listening socket they came from is long-lived and carries the same local address.
        // It belongs to the process that accepted: the parent of a forked child serving the
        // connection (dnsmasq over TCP), which outlives the child.
        let listener = match (self.settings.resolve, open.listen_fd) {
            (true, Some((pid, fd))) => self.conns.get(&open.conn).and_then(|c| {
                let unresolved = c.meta.local.is_none() && c.meta.unix_path.is_none();
                unresolved
                    .then(|| socket::resolve(&self.settings.proc_root, pid, fd))
                    .flatten()
            }),
            _ => None,
        };
        let Some(c) = self.conns.get_mut(&open.conn) else {
            return;
        };
        if let Some(l) = listener {
            c.meta.transport = c.meta.transport.or(l.transport);
            c.meta.local = l.local;
            c.meta.unix_path = l.unix_path;
        }
        if c.meta.peer.is_none() {
            c.meta.peer = open.peer;
        }
        if c.meta.transport.is_none() {
            c.meta.transport = kernel_transport;
        }
        if c.meta.process.executable_name.is_empty()
            && let Some(p) = self.processes.get(&open.conn.pid)
        {
            c.meta.process = p.clone();
        }
    }

    /// Fills in the executable name of a process whose `/proc` entry was already gone.
    fn name_process(&mut self, pid: u32, comm: String) {
        if let Some(p) = self.processes.get_mut(&pid)
            && p.executable_name.is_empty()
        {
            *p = Arc::new(ProcessMeta {
                executable_name: comm,
                ..(**p).clone()
            });
        }
    }

    fn on_data(&mut self, data: &DataEvent<'_>, out: &mut Vec<ConnRecord>) {
        let Some(protocol) = data.protocol else {
            self.on_raw_data(data, out);
            return;
        };
        let first_byte = data.pos == 0;
        if !self.ensure_conn(data.conn, protocol, data.role, data.ts_ns, first_byte) {
            return;
        }
        self.feed(data.conn, Self::chunk(data, data.pos), out);
    }

    /// The chunk of a data event at stream position `pos`.
    fn chunk<'a>(data: &DataEvent<'a>, pos: u64) -> Chunk<'a> {
        Chunk {
            direction: data.direction,
            pos,
            ts_ns: data.ts_ns,
            bytes: data.bytes,
            len: data.len,
            // The kernel's flag, not the resolved tuple: a tuple read after the fd was
            // reused can describe another socket.
            datagram: data.datagram,
            peer: data.peer,
        }
    }

    /// A message of a connection the kernel forwards uninferred: to the parser once inferred
    /// here, rebased to the positions the kernel would have sent; otherwise one more message
    /// to infer from, and discarded.
    fn on_raw_data(&mut self, data: &DataEvent<'_>, out: &mut Vec<ConnRecord>) {
        let d = dir_index(data.direction);
        if let Some(base) = self.conns.get(&data.conn).and_then(|c| c.raw_base) {
            let pos = data.pos.saturating_sub(base[d]);
            self.feed(data.conn, Self::chunk(data, pos), out);
            return;
        }
        let raw = raw_conn(
            &mut self.raw,
            self.settings.max_connections,
            data.conn,
            data.ts_ns,
        );
        let given_up_before = raw.inference.gave_up();
        let outcome = raw
            .inference
            .on_message(data, &self.settings.enabled_protocols);
        raw.ends[d] = raw.ends[d].max(data.pos + u64::from(data.len));
        let (protocol, role, header, header_len) = match outcome {
            Inference::Inferred {
                protocol,
                role,
                header,
                header_len,
            } => (protocol, role, header, header_len),
            Inference::Unknown | Inference::GaveUp => {
                let m = telemetry::metrics();
                if outcome == Inference::GaveUp && !given_up_before {
                    m.user_infer_gave_up.fetch_add(1, Ordering::Relaxed);
                }
                m.user_infer_discarded_events
                    .fetch_add(1, Ordering::Relaxed);
                m.user_infer_discarded_bytes
                    .fetch_add(data.bytes.len() as u64, Ordering::Relaxed);
                return;
            }
        };
        let Some(raw) = self.raw.remove(&data.conn) else {
            return;
        };
        telemetry::metrics()
            .protocol(protocol)
            .user_inferences
            .fetch_add(1, Ordering::Relaxed);
        // Where the kernel would have started counting: at the glued header in this
        // direction, after everything seen so far in the other.
        let mut base = raw.ends;
        base[d] = data.pos.saturating_sub(header_len as u64);
        // The OPEN the kernel would have sent, or the data event's facts if it was lost.
        let open = raw.open.map(|o| OpenEvent {
            protocol: Some(protocol),
            role: Some(role),
            ..o
        });
        match open {
            Some(open) => self.on_open(&open),
            None => {
                let at_start = base[d] == 0;
                self.ensure_conn(data.conn, protocol, Some(role), data.ts_ns, at_start);
            }
        }
        let Some(conn) = self.conns.get_mut(&data.conn) else {
            return;
        };
        conn.raw_base = Some(base);
        if header_len > 0 {
            let head = Chunk {
                pos: 0,
                bytes: &header[..header_len],
                len: header_len as u32,
                datagram: false,
                peer: None,
                ..Self::chunk(data, 0)
            };
            self.feed(data.conn, head, out);
        }
        self.feed(data.conn, Self::chunk(data, header_len as u64), out);
    }

    /// Feeds one chunk to the parser of tracked connection `id`.
    fn feed(&mut self, id: ConnId, chunk: Chunk<'_>, out: &mut Vec<ConnRecord>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.last_ns = conn.last_ns.max(chunk.ts_ns);
        if conn.meta.transport != Some(Transport::Unix) {
            let t = if chunk.datagram {
                Transport::Udp
            } else {
                Transport::Tcp
            };
            forget_if_contradicted(&mut conn.meta, Some(t), None);
        }
        let Some(parser) = conn.parser.as_mut() else {
            return;
        };
        let mut stats = ParseStats::default();
        self.records.clear();
        parser.on_data(chunk, &mut self.records, &mut stats);
        // The global cap: the connection that takes the total over it gives its bytes up.
        let mut now = parser.buffered_bytes();
        if self.buffered - conn.buffered + now > self.settings.max_total_buffer_bytes {
            parser.discard_buffered(&mut stats);
            now = 0;
        }
        self.buffered = self.buffered - conn.buffered + now;
        conn.buffered = now;
        conn.stats.add(&stats);
        // Responses nobody asked for count as evidence only while no request was framed
        // either: requests dropped unpaired after lost bytes (a pipelining client past a
        // full ring) mean the protocol is right and the pairing waits to resynchronise.
        let unpairable = if conn.stats.unmatched_requests == 0 {
            conn.stats.unmatched_responses
        } else {
            0
        };
        if !conn.disabled
            && conn.stats.records == 0
            && conn.stats.invalid + unpairable >= DISABLE_AFTER_INVALID
        {
            conn.disabled = true;
            self.buffered -= std::mem::take(&mut conn.buffered);
            conn.parser = None;
            self.to_disable.push(id);
            telemetry::metrics()
                .connections_disabled
                .fetch_add(1, Ordering::Relaxed);
        }
        let protocol = conn.protocol;
        emit(&self.clock, &conn.meta, &mut self.records, out);
        self.stats_of(protocol).add(&stats);
    }

    /// Makes sure connection `id` is tracked, resolving its tuple and process when new. False
    /// when the role is still unknown: without it requests and responses cannot be told apart.
    /// `at_start`: the event is the connection's OPEN or its first byte, so a new entry (not
    /// one forgotten and seen again) of a socket that does not predate the receiver has been
    /// seen from its start.
    fn ensure_conn(
        &mut self,
        id: ConnId,
        protocol: Protocol,
        role: Option<Role>,
        ts_ns: u64,
        at_start: bool,
    ) -> bool {
        if !self.conns.contains_key(&id) {
            let Some(role) = role else { return false };
            if self.conns.len() >= self.settings.max_connections {
                self.evict_oldest();
            }
            let process = self.process(id.pid);
            let mut meta = ConnMeta {
                role: Some(role),
                process,
                ..ConnMeta::default()
            };
            let preloaded = self.preloaded.remove(&(id.pid, id.fd));
            let resolved = || socket::resolve(&self.settings.proc_root, id.pid, id.fd);
            if let Some(t) = preloaded.or_else(|| self.settings.resolve.then(resolved).flatten()) {
                meta.transport = t.transport;
                meta.local = t.local;
                meta.peer = t.peer;
                meta.unix_path = t.unix_path;
            }
            let mut parser = ConnParser::new(protocol, role, self.settings.limits);
            if at_start && !crate::bpf::predates_receiver(id) {
                parser.seen_from_start();
            }
            let parser = Some(parser);
            let conn = Conn {
                protocol,
                parser,
                meta,
                last_ns: ts_ns,
                stats: ParseStats::default(),
                buffered: 0,
                disabled: false,
                raw_base: None,
            };
            self.conns.insert(id, conn);
            telemetry::metrics()
                .connections_tracked
                .store(self.conns.len() as u64, Ordering::Relaxed);
        }
        true
    }

    fn process(&mut self, pid: u32) -> Arc<ProcessMeta> {
        let resolve = self.settings.resolve;
        let root = &self.settings.proc_root;
        self.processes
            .entry(pid)
            .or_insert_with(|| {
                Arc::new(if resolve {
                    process::read_process(root, pid)
                } else {
                    ProcessMeta {
                        pid,
                        ..ProcessMeta::default()
                    }
                })
            })
            .clone()
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_ns)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.remove(id, None);
            telemetry::metrics()
                .connections_evicted
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets a connection: frames waiting for their last byte end at the close, pending
    /// requests are flushed as unmatched.
    fn remove(&mut self, id: ConnId, out: Option<&mut Vec<ConnRecord>>) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        self.buffered -= conn.buffered;
        if let Some(parser) = conn.parser.as_mut() {
            let mut stats = ParseStats::default();
            self.records.clear();
            parser.close(&mut self.records, &mut stats);
            if let Some(out) = out {
                emit(&self.clock, &conn.meta, &mut self.records, out);
            }
            self.records.clear();
            self.stats_of(conn.protocol).add(&stats);
        }
        if conn.disabled {
            self.to_enable.push(id);
        }
        telemetry::metrics()
            .connections_tracked
            .store(self.conns.len() as u64, Ordering::Relaxed);
    }

    /// Forgets every connection of processes that exited (their sockets were closed by the
    /// exit, which makes no close event): as at a close, frames waiting for their last byte
    /// end and pending requests are counted as unmatched. Without this their state would stay
    /// until the idle timeout, minutes of it on a host that runs many short-lived clients.
    pub fn forget_processes(&mut self, pids: &[u32], out: &mut Vec<ConnRecord>) {
        if pids.is_empty() {
            return;
        }
        let gone: Vec<ConnId> = self
            .conns
            .keys()
            .filter(|id| pids.contains(&id.pid))
            .copied()
            .collect();
        for id in gone {
            self.remove(id, Some(&mut *out));
        }
        self.raw.retain(|id, _| !pids.contains(&id.pid));
        self.end_batch(out);
    }

    /// Ends a drain batch: applies closes and publishes parser counters.
    pub fn end_batch(&mut self, out: &mut Vec<ConnRecord>) {
        telemetry::metrics()
            .buffered_bytes
            .store(self.buffered as u64, Ordering::Relaxed);
        let closes = std::mem::take(&mut self.pending_closes);
        for id in &closes {
            self.remove(*id, Some(&mut *out));
            self.raw.remove(id);
        }
        self.pending_closes = closes;
        self.pending_closes.clear();
        for (protocol, s) in Protocol::ALL.iter().zip(self.batch_stats.iter_mut()) {
            if *s == ParseStats::default() {
                continue;
            }
            let s = std::mem::take(s);
            let m = telemetry::metrics().protocol(*protocol);
            m.frames.fetch_add(s.frames, Ordering::Relaxed);
            m.frames_invalid.fetch_add(s.invalid, Ordering::Relaxed);
            m.resyncs.fetch_add(s.resyncs, Ordering::Relaxed);
            m.bytes_lost.fetch_add(s.bytes_lost, Ordering::Relaxed);
            m.unmatched_requests
                .fetch_add(s.unmatched_requests, Ordering::Relaxed);
            m.unmatched_responses
                .fetch_add(s.unmatched_responses, Ordering::Relaxed);
            m.buffer_overflow_bytes
                .fetch_add(s.buffer_overflow_bytes, Ordering::Relaxed);
        }
    }

    /// Periodic housekeeping at kernel boot time `now_ns`: re-anchor the wall clock, give up
    /// on requests past the timeout, forget idle connections and processes no connection uses.
    pub fn sweep(&mut self, now_ns: u64, out: &mut Vec<ConnRecord>) {
        if !self.clock.anchor() {
            tracing::debug!("cannot read the clocks: the previous wall-clock offset is kept");
        }
        let deadline = now_ns.saturating_sub(self.settings.request_timeout_ns);
        let idle_before = now_ns.saturating_sub(self.settings.idle_timeout_ns);
        let quiet_before = now_ns.saturating_sub(RELEASE_AFTER_NS);
        let mut idle = Vec::new();
        for (id, conn) in self.conns.iter_mut() {
            if conn.last_ns < idle_before {
                idle.push(*id);
                continue;
            }
            let Some(parser) = conn.parser.as_mut() else {
                continue;
            };
            let mut stats = ParseStats::default();
            self.records.clear();
            parser.expire(deadline, &mut self.records, &mut stats);
            emit(&self.clock, &conn.meta, &mut self.records, out);
            stats_of(&mut self.batch_stats, conn.protocol).add(&stats);
            if conn.last_ns < quiet_before {
                parser.release_idle();
            }
        }
        for id in idle {
            self.remove(id, Some(&mut *out));
        }
        self.raw.retain(|_, c| c.last_ns >= idle_before);
        self.processes.retain(|_, p| Arc::strong_count(p) > 1);
        if now_ns.saturating_sub(self.started_ns) > self.settings.idle_timeout_ns {
            self.preloaded = HashMap::new();
        }
        self.end_batch(out);
    }

    /// Connections user space wants the kernel to stop capturing.
    pub fn take_disable_requests(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.to_disable)
    }

    /// Disabled connections that are gone, so their kernel entries can be cleared.
    pub fn take_enable_requests(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.to_enable)
    }
}

fn stats_of(stats: &mut [ParseStats; PROTOCOL_COUNT], p: Protocol) -> &mut ParseStats {
    // `index()` is dense in `0..PROTOCOL_COUNT`, the array's length.
    &mut stats[p.index().min(PROTOCOL_COUNT - 1)]
}

/// The raw-connection entry of `id` in `raw`, created if new (evicting the least recently
/// active one when the table holds `max` entries).
fn raw_conn(
    raw: &mut HashMap<ConnId, RawConn, IdHash>,
    max: usize,
    id: ConnId,
    ts_ns: u64,
) -> &mut RawConn {
    if !raw.contains_key(&id) && raw.len() >= max {
        let oldest = raw.iter().min_by_key(|(_, c)| c.last_ns).map(|(id, _)| *id);
        if let Some(old) = oldest {
            raw.remove(&old);
            telemetry::metrics()
                .connections_evicted
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    let c = raw.entry(id).or_insert(RawConn {
        inference: RawInference::default(),
        open: None,
        ends: [0; 2],
        last_ns: ts_ns,
    });
    c.last_ns = c.last_ns.max(ts_ns);
    c
}

/// A tuple is resolved from `(pid, fd)` after the kernel's events, by which time the fd may
/// have been closed and reused (glibc closes its UDP socket and opens a TCP one at the same fd
/// within microseconds). When it contradicts what the kernel saw for this very connection
/// (the transport of its messages, the peer named by connect/accept) it describes another
/// socket: forget it, so the fields are absent rather than wrong.
fn forget_if_contradicted(
    meta: &mut ConnMeta,
    transport: Option<Transport>,
    peer: Option<std::net::SocketAddr>,
) {
    let other_transport = matches!((meta.transport, transport), (Some(a), Some(b)) if a != b);
    let other_peer = match (meta.peer, peer) {
        (Some(a), Some(b)) => {
            a.ip().to_canonical() != b.ip().to_canonical() || a.port() != b.port()
        }
        _ => false,
    };
    if other_transport || other_peer {
        meta.transport = transport;
        meta.local = None;
        meta.peer = peer;
        meta.unix_path = None;
    }
}

/// Moves a connection's finished records to `out`, in wall-clock time; an end before the start
/// (clock skew between syscalls on different CPUs) is clamped to the start. A record that
/// names its own peer (a datagram of an unconnected UDP socket) overrides the socket's.
fn emit(clock: &WallClock, meta: &ConnMeta, records: &mut Vec<Record>, out: &mut Vec<ConnRecord>) {
    for rec in records.drain(..) {
        let mut conn = meta.clone();
        if rec.peer.is_some() {
            conn.peer = rec.peer;
        }
        out.push(ConnRecord {
            conn,
            protocol: rec.protocol,
            start_unix_ns: clock.to_unix_ns(rec.start_ns),
            end_unix_ns: clock.to_unix_ns(rec.end_ns.max(rec.start_ns)),
            incomplete: rec.incomplete,
            exchange: rec.exchange,
        });
    }
}

#[cfg(test)]
mod tests;
