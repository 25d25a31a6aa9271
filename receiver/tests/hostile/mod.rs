//! The machinery of `hostile_bytes.rs`: a seeded generator, the real captures of each protocol,
//! the mutations, and the runner that feeds one case to a fresh parser and checks it.

pub mod seeds;

use std::cell::Cell;
use std::fmt::Write as _;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};

use ebpf_common::MAX_CAPTURE;
use ebpf_receiver::model::{Direction, Protocol, Role, Transport};
use ebpf_receiver::protocol::chaos;
use ebpf_receiver::protocol::{Chunk, ConnParser, ParseStats, ParserLimits};

// ---- heap accounting ----------------------------------------------------------------------------

/// A counting allocator: live and peak heap bytes of the current thread. Every case runs on one
/// thread, so its delta is the heap its parser (and the span checks) used.
pub struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn account(delta: i64) {
    let _ = LIVE.try_with(|l| {
        let v = l.get().wrapping_add(delta);
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
}

// SAFETY: every call forwards to `System` unchanged; the bookkeeping only touches
// const-initialised thread-locals without destructors (no allocation, no reentrancy).
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded as is.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        account(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            account(new as i64 - layout.size() as i64);
        }
        p
    }
}

/// Starts a measurement: the peak is reset to the current live bytes, which are returned.
fn heap_mark() -> i64 {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

/// Peak heap bytes above `mark` since [`heap_mark`].
fn heap_peak_since(mark: i64) -> usize {
    usize::try_from(PEAK.with(Cell::get) - mark).unwrap_or(0)
}

// ---- randomness -------------------------------------------------------------------------------

/// SplitMix64: seeded, so every case is reproducible from (seed, protocol, class, index).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of one case.
    pub fn for_case(seed: u64, protocol: Protocol, class: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ (protocol.index() as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        r.0 ^=
            class.wrapping_mul(0x9FB2_1C65_1E98_DF25) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    /// Log-uniform in `1..=max`: small sizes as often as large ones.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.max(1).leading_zeros();
        let b = self.below(bits as usize + 1);
        let top = (1usize << b).min(max.max(1));
        1 + self.below(top)
    }

    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

// ---- captures -----------------------------------------------------------------------------------

/// One message (syscall) of a capture.
#[derive(Clone, Debug)]
pub struct Message {
    /// The client sent it.
    pub from_client: bool,
    pub bytes: Vec<u8>,
}

/// The messages of one connection (or one UDP socket) of a capture.
#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    pub datagram: bool,
    pub messages: Vec<Message>,
}

fn testdata_dir(protocol: Protocol) -> PathBuf {
    let folder = match protocol {
        Protocol::Mysql => "mysql",
        Protocol::Postgres => "postgres",
        Protocol::Redis => "redis",
        Protocol::Http1 => "http1",
        Protocol::Dns => "dns",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/protocol")
        .join(folder)
        .join("testdata")
}

/// Every session of every capture (`<proto>/testdata/*.bin`) of `protocol`: the stream
/// captures are `[dir][ts u64][len u32][bytes]` records of one connection; the DNS capture adds
/// a transport byte and a flow id after the direction (one session per flow).
pub fn sessions(protocol: Protocol) -> Vec<Session> {
    let dir = testdata_dir(protocol);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let data = std::fs::read(&f).expect("capture readable");
        let stem = f
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let mut flows: Vec<((u8, u32), Session)> = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let dir = data[at];
            let (transport, flow, head) = if protocol == Protocol::Dns {
                let flow = u32::from_le_bytes(data[at + 2..at + 6].try_into().expect("4 bytes"));
                (data[at + 1], flow, 18)
            } else {
                (b'T', 0, 13)
            };
            let n = u32::from_le_bytes(data[at + head - 4..at + head].try_into().expect("4 bytes"))
                as usize;
            let bytes = data[at + head..at + head + n].to_vec();
            at += head + n;
            let key = (transport, flow);
            let idx = match flows.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    flows.push((
                        key,
                        Session {
                            name: format!("{stem}#{}{flow}", transport as char),
                            datagram: transport == b'U',
                            messages: Vec::new(),
                        },
                    ));
                    flows.len() - 1
                }
            };
            flows[idx].1.messages.push(Message {
                from_client: dir == b'C',
                bytes,
            });
        }
        out.extend(flows.into_iter().map(|(_, s)| s));
    }
    assert!(!out.is_empty(), "no captures in {}", dir.display());
    out
}

// ---- cases --------------------------------------------------------------------------------------

/// One captured syscall as the tracker hands it to the parser.
#[derive(Clone, Debug)]
pub struct Step {
    pub direction: Direction,
    pub pos: u64,
    pub bytes: Vec<u8>,
    /// Bytes the syscall moved (≥ `bytes.len()`: the rest was not captured).
    pub len: u32,
}

/// One input: a connection's role and mode and its syscalls.
#[derive(Clone, Debug)]
pub struct Case {
    /// Where it came from: `random`, or the session a mutated stream started from.
    pub origin: String,
    pub role: Role,
    pub datagram: bool,
    pub steps: Vec<Step>,
}

impl Case {
    pub fn bytes(&self) -> usize {
        self.steps.iter().map(|s| s.bytes.len()).sum()
    }
}

/// Bytes that mean something to each protocol, for random streams that reach past the first
/// check of a framer.
fn alphabet(protocol: Protocol) -> &'static [&'static [u8]] {
    match protocol {
        Protocol::Mysql => &[
            b"\x00",
            b"\x01",
            b"\x00\x00\x00",
            b"\xff\xff\xff",
            b"\x01\x00\x00\x00",
            b"\x09\x00\x00\x00\x03SELECT 1",
            b"\x03",
            b"\x16",
            b"\x17",
            b"\x19",
            b"\x0e",
            b"\x0a",
            b"\xfe",
            b"\xfb",
            b"\xfc",
            b"\xfd",
            b"\xff",
            b"#42000",
            b"USE db",
            b"'",
            b"\\",
            b"mysql_native_password\x00",
            b"\x00\x00\x00\x02",
            b"\x03def",
            b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00",
            b"\x05\x00\x00\x05\xfe\x00\x00\x02\x00",
        ],
        Protocol::Postgres => &[
            b"Q",
            b"P",
            b"B",
            b"E",
            b"S",
            b"D",
            b"T",
            b"C",
            b"Z",
            b"R",
            b"p",
            b"X",
            b"H",
            b"F",
            b"\x00\x00\x00\x04",
            b"\x00\x00\x00\x05",
            b"\x7f\xff\xff\xff",
            b"\xff\xff\xff\xff",
            b"\x00\x03\x00\x00",
            b"\x04\xd2\x16\x2f",
            b"\x00",
            b"SELECT 1\x00",
            b"I",
            b"user\x00",
            b"database\x00",
            b"SSELECT 1\x00",
            b"C42P01\x00",
            b"\x00\x01",
            b"\xff\xff",
            b"$1",
            b"'",
            b"$$",
            b"\x00\x00\x00\x0cZ\x00\x00\x00\x05I",
        ],
        Protocol::Redis => &[
            b"*",
            b"$",
            b"+",
            b"-",
            b":",
            b"%",
            b"~",
            b">",
            b"_",
            b",",
            b"#",
            b"!",
            b"=",
            b"(",
            b"|",
            b"\r\n",
            b"\r",
            b"\n",
            b"0",
            b"1",
            b"2",
            b"-1",
            b"2147483647",
            b"9223372036854775807",
            b"GET",
            b"SET",
            b"MULTI",
            b"EXEC",
            b"SUBSCRIBE",
            b"CLIENT",
            b"SETINFO",
            b"ERR",
            b"OK",
            b"QUEUED",
            b"PING",
            b"HELLO",
            b"AUTH",
            b"SELECT",
            b" ",
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            b"$3\r\nSET\r\n",
        ],
        Protocol::Http1 => &[
            b"GET ",
            b"POST ",
            b"HEAD ",
            b"FOO ",
            b"CONNECT ",
            b"/",
            b"/a?token=x&b=",
            b" HTTP/1.1\r\n",
            b" HTTP/1.0\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 100 Continue\r\n",
            b"HTTP/1.1 204 \r\n",
            b"HTTP/1.1 101 Switching\r\n",
            b"Content-Length: ",
            b"Transfer-Encoding: chunked\r\n",
            b"Host: ",
            b"User-Agent: ",
            b"Connection: close\r\n",
            b"\r\n",
            b"\r\n\r\n",
            b"0",
            b"1",
            b"ff",
            b"18446744073709551616",
            b"-1",
            b":",
            b" ",
            b"\xff",
            b"\x00",
            b"%",
            b"=",
            b"&",
            b"a.b:80",
            b"\xc3\xa9",
            b"\xe2\x82",
        ],
        Protocol::Dns => &[
            b"\x00\x00",
            b"\x00\x01",
            b"\x81\x80",
            b"\x01\x00",
            b"\x00\x1c",
            b"\xc0\x0c",
            b"\xc0",
            b"\x03www",
            b"\x07example",
            b"\x03com\x00",
            b"\x00",
            b"\x3f",
            b"\xff",
            b"\x00\x29",
            b"\x10\x00",
            b"\x00\x04\x7f\x00\x00\x01",
            b"\xff\xff",
            b"\x00\x0c",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00",
        ],
    }
}

/// Random bytes, uniform or from the protocol's alphabet.
fn random_bytes(rng: &mut Rng, protocol: Protocol, n: usize, soup: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    while out.len() < n {
        if soup && rng.chance(3, 4) {
            if let Some(tok) = rng.pick(alphabet(protocol)) {
                out.extend_from_slice(tok);
            }
        } else {
            out.push(rng.byte());
        }
    }
    out.truncate(n);
    out
}

/// Positions of both directions, as the kernel numbers them.
#[derive(Default)]
struct Positions {
    egress: u64,
    ingress: u64,
}

impl Positions {
    fn of(&mut self, d: Direction) -> &mut u64 {
        match d {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        }
    }
}

/// One syscall of `bytes` as the kernel reports it: at most `MAX_CAPTURE` bytes copied, the rest
/// reported by length.
fn syscall(direction: Direction, pos: u64, bytes: &[u8]) -> Step {
    Step {
        direction,
        pos,
        bytes: bytes[..bytes.len().min(MAX_CAPTURE)].to_vec(),
        len: bytes.len() as u32,
    }
}

/// Turns one direction's bytes into steps the way the kernel could report them: cut at random
/// points, with losses (a position jump), truncated captures (bytes reported, not copied),
/// length-only chunks (sendfile), and duplicates (a retried read reported twice); never more
/// than `MAX_CAPTURE` bytes copied from one syscall.
fn emit(
    rng: &mut Rng,
    steps: &mut Vec<Step>,
    pos: &mut Positions,
    direction: Direction,
    bytes: &[u8],
    datagram: bool,
) {
    if datagram {
        let at = *pos.of(direction);
        let mut step = syscall(direction, at, bytes);
        if rng.chance(1, 20) {
            step.bytes.truncate(rng.below(bytes.len() + 1));
        }
        *pos.of(direction) += u64::from(step.len);
        steps.push(step);
        return;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if rng.chance(1, 3) {
            rest.len()
        } else {
            rng.size(4096).min(rest.len())
        };
        let (piece, after) = rest.split_at(n);
        rest = after;
        let at = *pos.of(direction);
        let roll = rng.below(100);
        let step = match roll {
            // Lost: the kernel never reported these bytes.
            0..=2 => None,
            // Captured only in part.
            3..=5 => Some(Step {
                direction,
                pos: at,
                bytes: piece[..rng.below(piece.len() + 1)].to_vec(),
                len: piece.len() as u32,
            }),
            // Moved by sendfile/splice: length only.
            6 => Some(Step {
                direction,
                pos: at,
                bytes: Vec::new(),
                len: piece.len() as u32,
            }),
            _ => Some(syscall(direction, at, piece)),
        };
        *pos.of(direction) += piece.len() as u64;
        if let Some(s) = step {
            // A duplicate: the same syscall reported again, or an overlapping retry.
            if rng.chance(1, 30) {
                let mut dup = s.clone();
                if rng.chance(1, 2) && !dup.bytes.is_empty() {
                    let back = rng.below(dup.bytes.len());
                    dup.pos = dup.pos.saturating_sub(back as u64);
                }
                steps.push(s);
                steps.push(dup);
            } else {
                steps.push(s);
            }
        }
    }
}

/// A random stream: up to 64 KiB of random bytes (uniform or protocol-flavoured) in random
/// chunks of 1–4096 bytes in both directions, with losses, truncations and duplicates.
pub fn random_case(rng: &mut Rng, protocol: Protocol) -> Case {
    let role = if rng.chance(1, 2) {
        Role::Client
    } else {
        Role::Server
    };
    let datagram = protocol == Protocol::Dns && rng.chance(1, 2);
    let total = if rng.chance(1, 32) {
        0
    } else {
        rng.size(64 * 1024)
    };
    let soup = rng.chance(1, 2);
    let mut steps = Vec::new();
    let mut pos = Positions::default();
    let mut made = 0;
    let mut direction = Direction::Egress;
    while made < total {
        let n = if datagram {
            rng.size(1024)
        } else {
            rng.size(4096)
        }
        .min(total - made);
        made += n;
        let bytes = random_bytes(rng, protocol, n, soup);
        if rng.chance(1, 2) {
            direction = match direction {
                Direction::Egress => Direction::Ingress,
                Direction::Ingress => Direction::Egress,
            };
        }
        emit(rng, &mut steps, &mut pos, direction, &bytes, datagram);
    }
    Case {
        origin: "random".into(),
        role,
        datagram,
        steps,
    }
}

/// A session replayed `rounds` times on one connection, one syscall per message, nothing
/// lost: the valid traffic a long-lived connection carries.
pub fn replay_case(session: &Session, role: Role, rounds: usize) -> Case {
    let mut steps = Vec::new();
    let mut pos = Positions::default();
    for _ in 0..rounds {
        for m in &session.messages {
            let direction = if m.from_client == (role == Role::Client) {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            let at = pos.of(direction);
            steps.push(syscall(direction, *at, &m.bytes));
            *at += m.bytes.len() as u64;
        }
    }
    Case {
        origin: format!("{} × {rounds}", session.name),
        role,
        datagram: session.datagram,
        steps,
    }
}

// ---- length fields ------------------------------------------------------------------------------

/// A length (or count) field in a message, and how it is written.
#[derive(Clone, Copy, Debug)]
enum Field {
    /// Little-endian integer of `width` bytes at `at`.
    Le { at: usize, width: usize },
    /// Big-endian integer of `width` bytes at `at`.
    Be { at: usize, width: usize },
    /// ASCII decimal digits (and sign) in `at..end`.
    Dec { at: usize, end: usize },
    /// ASCII hex digits in `at..end`.
    Hex { at: usize, end: usize },
    /// A MySQL length-encoded integer's first byte.
    LenEnc { at: usize },
    /// A DNS label length byte (or compression pointer) at `at` of the message at `msg`.
    Label { at: usize, msg: usize },
}

fn be(b: &[u8], at: usize, width: usize) -> Option<u64> {
    let s = b.get(at..at + width)?;
    Some(s.iter().fold(0u64, |v, &x| v << 8 | u64::from(x)))
}

fn le(b: &[u8], at: usize, width: usize) -> Option<u64> {
    let s = b.get(at..at + width)?;
    Some(s.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
}

/// The length fields of one message, found by walking it as its protocol frames it (a message
/// that does not start at a frame boundary gives fields at wrong places: still a mutation).
fn fields(protocol: Protocol, msg: &Message, first_client: bool, datagram: bool) -> Vec<Field> {
    let b = &msg.bytes;
    let mut out = Vec::new();
    match protocol {
        Protocol::Mysql => {
            let mut o = 0;
            while let Some(len) = le(b, o, 3) {
                out.push(Field::Le { at: o, width: 3 });
                let payload = o + 4;
                if b.len() > payload {
                    out.push(Field::LenEnc { at: payload });
                }
                // COM_STMT_EXECUTE / CLOSE / RESET / SEND_LONG_DATA: statement id; an OK
                // to COM_STMT_PREPARE: id, columns, parameters.
                match b.get(payload) {
                    Some(0x17..=0x1a) => out.push(Field::Le {
                        at: payload + 1,
                        width: 4,
                    }),
                    Some(0x00) if len == 12 => {
                        out.push(Field::Le {
                            at: payload + 1,
                            width: 4,
                        });
                        out.push(Field::Le {
                            at: payload + 5,
                            width: 2,
                        });
                        out.push(Field::Le {
                            at: payload + 7,
                            width: 2,
                        });
                    }
                    _ => {}
                }
                o = payload + len as usize;
            }
        }
        Protocol::Postgres => {
            let mut o = 0;
            let startup = first_client
                && matches!(
                    b.get(4..8),
                    Some([0, 3, 0, 0] | [4, 0xd2, 0x16, 0x2e..=0x30])
                );
            if startup && let Some(len) = be(b, 0, 4) {
                out.push(Field::Be { at: 0, width: 4 });
                o = len as usize;
            }
            while let Some(len) = be(b, o + 1, 4) {
                out.push(Field::Be {
                    at: o + 1,
                    width: 4,
                });
                let body = o + 5;
                let cstr_end = |from: usize| {
                    b.get(from..)
                        .and_then(|r| r.iter().position(|&x| x == 0))
                        .map(|p| from + p + 1)
                };
                match b.get(o) {
                    // Bind: portal, statement, format codes, parameters (length + bytes).
                    Some(b'B') => {
                        if let Some(p) = cstr_end(body).and_then(cstr_end) {
                            out.push(Field::Be { at: p, width: 2 });
                            let nf = be(b, p, 2).unwrap_or(0) as usize;
                            let np_at = p + 2 + 2 * nf;
                            out.push(Field::Be {
                                at: np_at,
                                width: 2,
                            });
                            let mut q = np_at + 2;
                            for _ in 0..be(b, np_at, 2).unwrap_or(0).min(64) {
                                let Some(l) = be(b, q, 4) else { break };
                                out.push(Field::Be { at: q, width: 4 });
                                q += 4 + if l == 0xffff_ffff { 0 } else { l as usize };
                            }
                        }
                    }
                    // Parse: name, query, parameter types.
                    Some(b'P') => {
                        if let Some(p) = cstr_end(body).and_then(cstr_end) {
                            out.push(Field::Be { at: p, width: 2 });
                        }
                    }
                    // DataRow / RowDescription: column count, then (DataRow) lengths.
                    Some(b'D') => {
                        out.push(Field::Be { at: body, width: 2 });
                        let mut q = body + 2;
                        for _ in 0..be(b, body, 2).unwrap_or(0).min(64) {
                            let Some(l) = be(b, q, 4) else { break };
                            out.push(Field::Be { at: q, width: 4 });
                            q += 4 + if l == 0xffff_ffff { 0 } else { l as usize };
                        }
                    }
                    Some(b'T') => out.push(Field::Be { at: body, width: 2 }),
                    _ => {}
                }
                if len < 4 {
                    break;
                }
                o += 1 + len as usize;
            }
        }
        Protocol::Redis => {
            let mut line = 0;
            while line < b.len() {
                if matches!(
                    b[line],
                    b'*' | b'$' | b'%' | b'~' | b'>' | b'=' | b'!' | b'|'
                ) {
                    let end = b[line + 1..]
                        .iter()
                        .position(|&x| x == b'\r')
                        .map_or(b.len(), |p| line + 1 + p);
                    if end > line + 1 && end - line <= 24 {
                        out.push(Field::Dec { at: line + 1, end });
                    }
                }
                match b[line..].iter().position(|&x| x == b'\n') {
                    Some(p) => line += p + 1,
                    None => break,
                }
            }
        }
        Protocol::Http1 => {
            let lower = b.to_ascii_lowercase();
            let needle = b"content-length:";
            let mut from = 0;
            while let Some(p) = lower[from..]
                .windows(needle.len())
                .position(|w| w == needle)
            {
                let mut at = from + p + needle.len();
                while b.get(at) == Some(&b' ') {
                    at += 1;
                }
                let end = b[at..]
                    .iter()
                    .position(|&x| x == b'\r')
                    .map_or(b.len(), |q| at + q);
                out.push(Field::Dec { at, end });
                from = end;
            }
            let chunked = lower.windows(7).any(|w| w == b"chunked");
            if chunked && let Some(h) = b.windows(4).position(|w| w == b"\r\n\r\n") {
                let mut o = h + 4;
                for _ in 0..64 {
                    let Some(end) = b
                        .get(o..)
                        .and_then(|r| r.iter().position(|&x| x == b'\r'))
                        .map(|q| o + q)
                    else {
                        break;
                    };
                    out.push(Field::Hex { at: o, end });
                    let size = std::str::from_utf8(&b[o..end]).ok().and_then(|s| {
                        usize::from_str_radix(s.split(';').next().unwrap_or(""), 16).ok()
                    });
                    let Some(size) = size.filter(|&s| s > 0) else {
                        break;
                    };
                    o = end.saturating_add(4).saturating_add(size);
                }
            }
        }
        Protocol::Dns => {
            let mut starts = Vec::new();
            if datagram {
                starts.push(0);
            } else {
                let mut o = 0;
                while let Some(len) = be(b, o, 2) {
                    out.push(Field::Be { at: o, width: 2 });
                    starts.push(o + 2);
                    o += 2 + len as usize;
                }
            }
            for m in starts {
                for c in 0..4 {
                    if b.len() >= m + 6 + 2 * c {
                        out.push(Field::Be {
                            at: m + 4 + 2 * c,
                            width: 2,
                        });
                    }
                }
                // The question's labels, then each answer's name, type, class, TTL, RDLENGTH.
                let mut p = m + 12;
                let mut names = 0;
                while p < b.len() && names < 8 {
                    let l = b[p];
                    out.push(Field::Label { at: p, msg: m });
                    if l == 0 {
                        p += 1;
                    } else if l & 0xc0 == 0xc0 {
                        p += 2;
                    } else {
                        p += 1 + usize::from(l);
                        continue;
                    }
                    names += 1;
                    if names == 1 {
                        p += 4;
                    } else {
                        out.push(Field::Be {
                            at: p + 8,
                            width: 2,
                        });
                        p += 10 + be(b, p + 8, 2).unwrap_or(0) as usize;
                    }
                }
            }
        }
    }
    out.retain(|f| match *f {
        Field::Le { at, width } | Field::Be { at, width } => at + width <= b.len(),
        Field::Dec { end, .. } | Field::Hex { end, .. } => end <= b.len(),
        Field::LenEnc { at } | Field::Label { at, .. } => at < b.len(),
    });
    out
}

const DECIMALS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"-2",
    b"2147483647",
    b"2147483648",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"",
    b"+5",
    b" 5",
    b"0x10",
    b"00000000000000000001",
];
const HEXES: &[&[u8]] = &[
    b"0",
    b"1",
    b"ffffffff",
    b"7fffffffffffffff",
    b"ffffffffffffffff",
    b"10000000000000000",
    b"",
    b"-1",
    b"g",
    b"0;ext=1",
    b"FFFFFFFFFFFFFFFFFFFF",
];

/// Forces one field to an edge value: 0, 1, all ones, the signed maximum, the sign bit, one
/// more or less than it was, or random; text fields to overflowing or malformed numbers; DNS
/// labels to compression pointers that loop, point outside the message or forward.
fn force(rng: &mut Rng, b: &mut Vec<u8>, field: Field) {
    let int_value = |rng: &mut Rng, width: usize, old: u64| -> u64 {
        let max = if width >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        match rng.below(8) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => max >> 1,
            4 => (max >> 1) + 1,
            5 => old.wrapping_add(1) & max,
            6 => old.wrapping_sub(1) & max,
            _ => rng.next() & max,
        }
    };
    match field {
        Field::Le { at, width } => {
            let v = int_value(rng, width, le(b, at, width).unwrap_or(0));
            for i in 0..width {
                b[at + i] = (v >> (8 * i)) as u8;
            }
        }
        Field::Be { at, width } => {
            let v = int_value(rng, width, be(b, at, width).unwrap_or(0));
            for i in 0..width {
                b[at + i] = (v >> (8 * (width - 1 - i))) as u8;
            }
        }
        Field::Dec { at, end } => {
            let v = rng.pick(DECIMALS).copied().unwrap_or(b"0");
            b.splice(at..end, v.iter().copied());
        }
        Field::Hex { at, end } => {
            let v = rng.pick(HEXES).copied().unwrap_or(b"0");
            b.splice(at..end, v.iter().copied());
        }
        Field::LenEnc { at } => {
            b[at] = *rng
                .pick(&[0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x00])
                .unwrap_or(&0xfe);
        }
        Field::Label { at, msg } => {
            let own = (at - msg) as u16;
            let ptr: u16 = match rng.below(6) {
                0 => own,                   // points at itself: a loop
                1 => 12,                    // the question's first label
                2 => 0x3fff,                // past any message
                3 => own.saturating_add(2), // forward
                4 => own.saturating_sub(1),
                _ => rng.next() as u16 & 0x3fff,
            };
            match rng.below(3) {
                0 => {
                    b[at] = 0xc0 | (ptr >> 8) as u8;
                    if let Some(x) = b.get_mut(at + 1) {
                        *x = ptr as u8;
                    }
                }
                1 => b[at] = *rng.pick(&[63u8, 64, 0x80, 0xff, 0]).unwrap_or(&63),
                _ => b[at] = 0x40 | (rng.byte() & 0x3f),
            }
        }
    }
}

// ---- mutated streams ----------------------------------------------------------------------------

/// A mutated valid stream: a window of a real session (from its first message half the time,
/// cut anywhere: every prefix), then 1–8 mutations (bytes set to 0/1/0x7f/0x80/0xff or random,
/// length fields forced, messages truncated, bytes inserted or removed, messages duplicated,
/// reordered, dropped, or spliced in from another session), then random chunking with gaps.
pub fn mutated_case(rng: &mut Rng, protocol: Protocol, pool: &[Session]) -> Case {
    let session = rng.pick(pool).expect("a session");
    let role = if rng.chance(1, 2) {
        Role::Client
    } else {
        Role::Server
    };
    let n = session.messages.len();
    let start = if rng.chance(1, 2) { 0 } else { rng.below(n) };
    let end = start + 1 + rng.below(n - start);
    let mut msgs: Vec<Message> = Vec::new();
    let mut total = 0;
    for m in &session.messages[start..end] {
        if total > 64 * 1024 {
            break;
        }
        total += m.bytes.len();
        msgs.push(m.clone());
    }
    let mutations = 1 + rng.below(8);
    for _ in 0..mutations {
        if msgs.is_empty() {
            break;
        }
        let i = rng.below(msgs.len());
        let first_client = i == 0 && start == 0 && msgs[i].from_client;
        match rng.below(12) {
            // A byte set to an edge value, near the message's start half the time.
            0..=2 => {
                let b = &mut msgs[i].bytes;
                if !b.is_empty() {
                    let at = if rng.chance(1, 2) {
                        rng.below(b.len().min(16))
                    } else {
                        rng.below(b.len())
                    };
                    b[at] = *rng.pick(&[0u8, 1, 0x7f, 0x80, 0xff]).unwrap_or(&0);
                    if rng.chance(1, 4) {
                        b[at] = rng.byte();
                    }
                }
            }
            // A length field forced.
            3..=5 => {
                let fs = fields(protocol, &msgs[i], first_client, session.datagram);
                if let Some(&f) = rng.pick(&fs) {
                    force(rng, &mut msgs[i].bytes, f);
                }
            }
            6 => {
                let cut = rng.below(msgs[i].bytes.len() + 1);
                msgs[i].bytes.truncate(cut);
            }
            7 => {
                let at = rng.below(msgs[i].bytes.len() + 1);
                let n = rng.size(16);
                let extra = random_bytes(rng, protocol, n, true);
                msgs[i].bytes.splice(at..at, extra);
            }
            8 => {
                let len = msgs[i].bytes.len();
                let a = rng.below(len + 1);
                let z = (a + rng.size(64)).min(len);
                msgs[i].bytes.drain(a..z);
            }
            9 => {
                let copy = msgs[i].clone();
                msgs.insert(i + 1, copy);
            }
            10 => {
                if i + 1 < msgs.len() {
                    msgs.swap(i, i + 1);
                } else {
                    msgs.remove(i);
                }
            }
            _ => {
                if let Some(other) = rng.pick(pool)
                    && let Some(m) = rng.pick(&other.messages)
                {
                    msgs.insert(i, m.clone());
                }
            }
        }
    }
    // Consecutive messages of one direction are sometimes one syscall.
    let mut steps = Vec::new();
    let mut pos = Positions::default();
    let mut i = 0;
    while i < msgs.len() {
        let from_client = msgs[i].from_client;
        let mut bytes = msgs[i].bytes.clone();
        i += 1;
        while !session.datagram
            && i < msgs.len()
            && msgs[i].from_client == from_client
            && rng.chance(1, 3)
        {
            bytes.extend_from_slice(&msgs[i].bytes);
            i += 1;
        }
        let direction = if from_client == (role == Role::Client) {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        emit(
            rng,
            &mut steps,
            &mut pos,
            direction,
            &bytes,
            session.datagram,
        );
    }
    Case {
        origin: session.name.clone(),
        role,
        datagram: session.datagram,
        steps,
    }
}

// ---- running a case -----------------------------------------------------------------------------

/// What one run of a case produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Hash of every record (its `Debug` form), in order: the determinism check.
    pub digest: u64,
    pub records: u64,
    pub stats: ParseStatsEq,
    /// Largest `buffered_bytes` seen after a step.
    pub max_buffered: usize,
    /// Peak heap bytes of the parser and the span checks above the start of the run.
    pub peak_heap: usize,
    /// Schema violations (the first few).
    pub violations: Vec<String>,
}

/// `ParseStats` with the fields compared for determinism.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParseStatsEq(pub [u64; 8]);

impl From<&ParseStats> for ParseStatsEq {
    fn from(s: &ParseStats) -> Self {
        ParseStatsEq([
            s.frames,
            s.invalid,
            s.resyncs,
            s.bytes_lost,
            s.unmatched_requests,
            s.unmatched_responses,
            s.records,
            s.buffer_overflow_bytes,
        ])
    }
}

/// `fmt::Write` into a hasher: a record's `Debug` form hashed without allocating it.
struct HashWriter(std::collections::hash_map::DefaultHasher);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// Feeds `case` to a fresh parser of `protocol`: after every step the buffered bytes are read
/// and the step's records become spans checked against the schema (then dropped, so the heap
/// measured is the parser's); at the end the connection closes.
pub fn run(protocol: Protocol, case: &Case, limits: ParserLimits) -> Outcome {
    let meta = chaos::conn_meta(
        case.role,
        if case.datagram {
            Transport::Udp
        } else {
            Transport::Tcp
        },
    );
    let mark = heap_mark();
    let mut parser = ConnParser::new(protocol, case.role, limits);
    let mut out = Vec::new();
    let mut stats = ParseStats::default();
    let mut o = Outcome::default();
    let mut h = HashWriter(std::collections::hash_map::DefaultHasher::new());
    let mut check = |out: &mut Vec<ebpf_receiver::record::Record>, o: &mut Outcome| {
        for r in out.drain(..) {
            o.records += 1;
            let _ = write!(h, "{r:?}");
            if r.protocol != protocol {
                o.violations.push(format!(
                    "a {:?} record from the {protocol:?} parser",
                    r.protocol
                ));
            }
            if let Err(e) = chaos::check_span(&meta, &r, &limits)
                && o.violations.len() < 4
            {
                o.violations.push(e);
            }
        }
    };
    for (i, s) in case.steps.iter().enumerate() {
        parser.on_data(
            Chunk {
                direction: s.direction,
                pos: s.pos,
                ts_ns: 1_000 * (i as u64 + 1),
                bytes: &s.bytes,
                len: s.len,
                datagram: case.datagram,
                peer: None,
            },
            &mut out,
            &mut stats,
        );
        o.max_buffered = o.max_buffered.max(parser.buffered_bytes());
        check(&mut out, &mut o);
    }
    parser.expire(u64::MAX, &mut out, &mut stats);
    parser.close(&mut out, &mut stats);
    check(&mut out, &mut o);
    if stats.records != o.records {
        o.violations.push(format!(
            "{} records counted, {} produced",
            stats.records, o.records
        ));
    }
    drop(parser);
    o.peak_heap = heap_peak_since(mark);
    o.digest = h.0.finish();
    o.stats = ParseStatsEq::from(&stats);
    o
}
