//! The read/write family: read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg,
//! sendmmsg, recvmmsg; and sendfile/splice, whose bytes never pass through a buffer we can read.
//!
//! sys_enter reads one slot of the tracked-fd filter and stops for every fd that is not a
//! tracked socket (the common case: one array read, no hash lookup); for tracked ones it stashes
//! the buffer or iovec pointer in its thread's slot of the stash table, and sys_exit reads its
//! thread's set of that table (again one array read when nothing is stashed). sys_exit, with
//! the byte count, infers the protocol of a connection not inferred yet, or forwards the bytes
//! of an inferred one to the `DATA` ring.
//! With `ebpf.kernel_inference: false` (a diagnostic) nothing is inferred: every connection is
//! forwarded as `proto::RAW` from its first message on, for user space to infer.
//!
//! The payload is copied into a per-CPU scratch buffer after the header, at an offset masked to
//! `MAX_CAPTURE - 1` and with a length clamped to `MAX_CAPTURE`: the verifier on this kernel
//! rejects a variable-length copy at a variable offset into a ring reservation even with checks,
//! and accepts this. Then one `RingBuf::output` of header + payload (+ peer trailer).
//!
//! Datagram sockets: every syscall (every message of a sendmmsg/recvmmsg) is one message and
//! one event flagged `DATAGRAM`; when the call names the peer (unconnected UDP) a `PeerTrailer`
//! follows the payload. sendfile/splice: a length-only event (no bytes), so stream positions
//! stay exact and the last byte of a response has its true timestamp.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use ebpf_common::{
    ConnKey, ConnState, DataEventHeader, DisabledKey, INFER_BYTES, INFER_MAX_ATTEMPTS,
    INFER_MIN_BYTES, MAX_CAPTURE, MAX_IOVECS, PeerTrailer, data_flag, direction, proto, sock, stat,
};

use crate::{
    infer::{self, Message},
    maps::{
        self, CONNS, DATA, DISABLED, DISABLED_ANY, SyscallArgs, current, kind, stash_args,
        take_args, traced,
    },
    stats::{add, bump},
    syscalls::{AF_INET, AF_INET6, arg, emit_control, now_ns, ret},
};

const HDR: usize = size_of::<DataEventHeader>();
const TRAILER: usize = size_of::<PeerTrailer>();
/// recv flag: data is left in the socket and will be read again.
const MSG_PEEK: u64 = 2;
/// Messages of one sendmmsg/recvmmsg reported (glibc's resolver sends two, A and AAAA).
const MAX_MMSG: u32 = 4;
/// Most iovecs read per message of a sendmmsg/recvmmsg (datagrams: a resolver's query is one or
/// two); the verifier walks `MAX_MMSG` × this, so it stays small.
const MAX_MMSG_IOVECS: usize = 8;
/// `struct mmsghdr`: a 56-byte `struct msghdr` and the message length, padded to 64.
const MMSGHDR_BYTES: u64 = 64;

macro_rules! data_programs {
    ($($enter:ident, $exit:ident => $kind:expr;)*) => {$(
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            enter(&ctx, $kind);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            exit(&ctx, $kind);
            0
        }
    )*};
}

data_programs! {
    sys_enter_read, sys_exit_read => kind::READ;
    sys_enter_write, sys_exit_write => kind::WRITE;
    sys_enter_readv, sys_exit_readv => kind::READV;
    sys_enter_writev, sys_exit_writev => kind::WRITEV;
    sys_enter_sendto, sys_exit_sendto => kind::SENDTO;
    sys_enter_recvfrom, sys_exit_recvfrom => kind::RECVFROM;
    sys_enter_sendmsg, sys_exit_sendmsg => kind::SENDMSG;
    sys_enter_recvmsg, sys_exit_recvmsg => kind::RECVMSG;
}

#[tracepoint]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, kind::SENDMMSG);
    0
}

#[tracepoint]
pub fn sys_exit_sendmmsg(ctx: TracePointContext) -> u32 {
    exit_mmsg(&ctx, kind::SENDMMSG);
    0
}

#[tracepoint]
pub fn sys_enter_recvmmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, kind::RECVMMSG);
    0
}

#[tracepoint]
pub fn sys_exit_recvmmsg(ctx: TracePointContext) -> u32 {
    exit_mmsg(&ctx, kind::RECVMMSG);
    0
}

#[tracepoint]
pub fn sys_enter_sendfile64(ctx: TracePointContext) -> u32 {
    // sendfile(out_fd, in_fd, offset, count): the socket is `out_fd`.
    enter_uncaptured(arg(&ctx, 0) as u32, kind::SENDFILE);
    0
}

#[tracepoint]
pub fn sys_exit_sendfile64(ctx: TracePointContext) -> u32 {
    exit_uncaptured(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_splice(ctx: TracePointContext) -> u32 {
    // splice(fd_in, off_in, fd_out, off_out, len, flags): a socket on either side.
    if !enter_uncaptured(arg(&ctx, 2) as u32, kind::SPLICE_OUT) {
        enter_uncaptured(arg(&ctx, 0) as u32, kind::SPLICE_IN);
    }
    0
}

#[tracepoint]
pub fn sys_exit_splice(ctx: TracePointContext) -> u32 {
    exit_uncaptured(&ctx);
    0
}

#[inline(always)]
fn is_egress(k: u8) -> bool {
    matches!(
        k,
        kind::WRITE
            | kind::WRITEV
            | kind::SENDTO
            | kind::SENDMSG
            | kind::SENDMMSG
            | kind::SENDFILE
            | kind::SPLICE_OUT
    )
}

/// The live `CONNS` value of a tracked socket of a traced process that inference has not
/// given up on.
#[inline(always)]
fn tracked(tgid: u32, fd: u32) -> Option<*mut ConnState> {
    // One array read for every fd that is not a tracked socket.
    if !maps::maybe_tracked(tgid, fd) {
        return None;
    }
    let conn = CONNS.get_ptr_mut(&ConnKey { pid: tgid, fd })?;
    // SAFETY: a live CONNS value; one byte read.
    if unsafe { (*conn).protocol } == proto::GAVE_UP {
        return None;
    }
    Some(conn)
}

#[inline(always)]
fn enter(ctx: &TracePointContext, k: u8) {
    // Only tracked sockets: one array read for every other fd. The CONNS lookup waits for
    // sys_exit, which needs the entry anyway: a filter false positive (another (pid, fd) in
    // the same slot) only costs a stash.
    let (pid_tgid, tgid) = current();
    let fd = arg(ctx, 0) as u32;
    if !maps::maybe_tracked(tgid, fd) {
        return;
    }
    // The receiver and filtered pids.
    if !traced(tgid) {
        return;
    }
    // Where the bytes are: a flat buffer, an iovec array, a msghdr's iovec array or an
    // mmsghdr array; and where the datagram's peer address is, if the call names one.
    let (ptr, iovcnt, addr) = match k {
        kind::READV | kind::WRITEV => (arg(ctx, 1), arg(ctx, 2) as u32, 0),
        kind::SENDMSG | kind::RECVMSG => {
            // Peeked bytes are read again later: skip them so positions stay exact.
            if k == kind::RECVMSG && arg(ctx, 2) & MSG_PEEK != 0 {
                return;
            }
            // struct user_msghdr { name, namelen, iov, iovlen, .. }: iov at 16, iovlen at 24.
            // SAFETY: user pointer read through the checked helper.
            let Ok(msg) = (unsafe { bpf_probe_read_user(arg(ctx, 1) as *const [u64; 4]) }) else {
                bump(stat::DROP_READ_FAILED);
                return;
            };
            (msg[2], msg[3] as u32, msg[0])
        }
        kind::SENDMMSG | kind::RECVMMSG => {
            if k == kind::RECVMMSG && arg(ctx, 3) & MSG_PEEK != 0 {
                return;
            }
            // The mmsghdrs are read at exit, where their `msg_len` is filled in.
            (arg(ctx, 1), arg(ctx, 2) as u32, 0)
        }
        _ => {
            if k == kind::RECVFROM && arg(ctx, 3) & MSG_PEEK != 0 {
                return;
            }
            // sendto(fd, buf, len, flags, dest_addr, addrlen) / recvfrom(…, src_addr, addrlen).
            let addr = if matches!(k, kind::SENDTO | kind::RECVFROM) {
                arg(ctx, 4)
            } else {
                0
            };
            (arg(ctx, 1), 0, addr)
        }
    };
    stash_args(
        pid_tgid,
        &SyscallArgs {
            addr,
            ts_ns: now_ns(),
            iovcnt,
            ..SyscallArgs::new(k, fd, ptr)
        },
    );
}

#[inline(always)]
fn exit(ctx: &TracePointContext, k: u8) {
    // The stash is the filter: it exists only for tracked sockets of traced pids.
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return;
    };
    if args.kind != k {
        return;
    }
    let r = ret(ctx);
    if r <= 0 {
        return;
    }
    let vectored = matches!(
        k,
        kind::READV | kind::WRITEV | kind::SENDMSG | kind::RECVMSG
    );
    message(
        tgid,
        &args,
        is_egress(k),
        Src {
            ptr: args.ptr,
            iovcnt: if vectored { args.iovcnt } else { 0 },
            vectored,
            addr: args.addr,
            mmsg: false,
        },
        r as u64,
    );
}

/// sendmmsg/recvmmsg: one message per mmsghdr, up to `MAX_MMSG`, each its own event.
#[inline(always)]
fn exit_mmsg(ctx: &TracePointContext, k: u8) {
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return;
    };
    if args.kind != k {
        return;
    }
    // Number of messages transferred.
    let r = ret(ctx);
    if r <= 0 {
        return;
    }
    let n = r as u32;
    if n > MAX_MMSG {
        add(stat::DROP_MMSG_OVERFLOW, u64::from(n - MAX_MMSG));
    }
    for i in 0..MAX_MMSG {
        if i >= n {
            break;
        }
        // struct mmsghdr { struct msghdr { name, namelen, iov, iovlen, control, controllen,
        // flags } msg_hdr; unsigned int msg_len; }: iov at 16, iovlen at 24, msg_len at 56.
        // SAFETY: user pointer read through the checked helper.
        let Ok(m) = (unsafe {
            bpf_probe_read_user((args.ptr + MMSGHDR_BYTES * u64::from(i)) as *const [u64; 8])
        }) else {
            bump(stat::DROP_READ_FAILED);
            return;
        };
        let len = m[7] & 0xffff_ffff;
        if len == 0 {
            continue;
        }
        message(
            tgid,
            &args,
            is_egress(k),
            Src {
                ptr: m[2],
                iovcnt: m[3] as u32,
                vectored: true,
                addr: m[0],
                mmsg: true,
            },
            len,
        );
    }
}

/// Where one message's bytes are.
struct Src {
    /// Flat buffer, or iovec array when `vectored`.
    ptr: u64,
    iovcnt: u32,
    vectored: bool,
    /// The peer's sockaddr named by the call, 0 when none.
    addr: u64,
    /// Part of a sendmmsg/recvmmsg: certainly a datagram.
    mmsg: bool,
}

/// One message (or stream chunk) of `total` bytes on the socket `args.fd`: infer the protocol
/// of a connection not inferred yet, or forward the bytes of an inferred one.
#[inline(always)]
fn message(tgid: u32, args: &SyscallArgs, egress: bool, src: Src, total: u64) {
    let key = ConnKey {
        pid: tgid,
        fd: args.fd,
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY (all `*conn` accesses below): a live CONNS value of this (pid, fd); only this
    // process's threads write it, and the stream positions are updated atomically.
    let protocol = unsafe { (*conn).protocol };
    if protocol == proto::GAVE_UP {
        return;
    }
    // SAFETY: as above.
    let (generation, sock_type) = unsafe { ((*conn).generation, (*conn).sock_type) };
    let datagram = src.mmsg || sock_type == sock::DGRAM;

    // `ebpf.kernel_inference: false` (the diagnostic traditional pipeline): no inference here.
    // The connection is forwarded raw from its first message with bytes on, announced by an
    // OPEN like an inferred one, and never given up: user space infers it.
    if protocol == proto::UNKNOWN && !maps::kernel_inference() {
        // SAFETY: as above.
        unsafe {
            (*conn).protocol = proto::RAW;
            if datagram {
                (*conn).sock_type = sock::DGRAM;
            }
        }
        // SAFETY: as above; read-only borrow for the duration of the call.
        emit_control(ebpf_common::control::OPEN, &key, unsafe { &*conn });
    }
    // Read again rather than carried over: one verifier state whichever way the branch went.
    // SAFETY: as above.
    let mut protocol = unsafe { (*conn).protocol };

    // Known connection: advance the position whatever happens next, so user space sees a gap
    // for bytes it does not get; then honour a disable request from user space.
    let mut pos = 0;
    if protocol != proto::UNKNOWN {
        pos = advance(conn, egress, total);
        if is_disabled(tgid, args.fd, generation) {
            bump(stat::DROP_DISABLED);
            return;
        }
    }

    // Copy the payload (at most the capture cap) into the scratch after the header.
    let Some(scratch) = maps::scratch() else {
        return;
    };
    // SAFETY: this CPU's scratch slot of SCRATCH_BYTES bytes, ours for this run (programs do
    // not migrate between CPUs while running).
    let buf = unsafe { (*scratch).buf.as_mut_ptr() };
    let cap = if total > u64::from(maps::max_capture_bytes()) {
        maps::max_capture_bytes()
    } else {
        total as u32
    };
    // Before inference a flat buffer is read only as far as inference looks: most messages on
    // a tracked socket of another protocol are then never copied whole. (Vectored messages are
    // copied whole: their first bytes may span several iovecs.)
    let first = if protocol == proto::UNKNOWN && !src.vectored && cap > INFER_BYTES as u32 {
        INFER_BYTES as u32
    } else {
        cap
    };
    let (copied, read_ok) = if src.vectored && src.mmsg {
        copy_iovecs::<MAX_MMSG_IOVECS>(buf, src.ptr, src.iovcnt, cap)
    } else if src.vectored {
        copy_iovecs::<MAX_IOVECS>(buf, src.ptr, src.iovcnt, cap)
    } else if copy_chunk(buf, 0, src.ptr, first) {
        (first, true)
    } else {
        (0, false)
    };
    let (mut copied, mut read_ok) = forget_paths(buf, copied, read_ok);

    // Unknown connection: infer from the first bytes; no match → count, maybe give up, and
    // nothing reaches user space.
    if protocol == proto::UNKNOWN {
        // A stream socket that predates the receiver may be in the middle of a message: no
        // inference before the conversation turns (`ebpf_common::turn`).
        // SAFETY (all `*conn` accesses here): as above.
        let turn = unsafe { (*conn).turn };
        if turn != ebpf_common::turn::OPEN && !datagram {
            let next = ebpf_common::turn::after(turn, egress);
            unsafe { (*conn).turn = next };
            if next != ebpf_common::turn::OPEN {
                return;
            }
        }
        // SAFETY: the scratch holds at least HDR + INFER_BYTES bytes; unaligned read.
        let head = unsafe { core::ptr::read_unaligned(buf.add(HDR) as *const [u64; 2]) };
        // A lone header of at most 4 bytes is kept for the next message (header-glue hooks),
        // also when it is read in pieces (dnsmasq reads DNS's 2-byte length a byte at a time).
        // SAFETY (all `*conn` accesses here): as above.
        let (pending, pending_len) = unsafe { ((*conn).pending_header, (*conn).pending_len) };
        unsafe {
            (*conn).pending_header = 0;
            (*conn).pending_len = 0;
        }
        // ... unless it is the whole payload a kept 4-byte header announced (MariaDB reads a
        // COM_PING's header, then its 1-byte payload).
        let announced = pending_len == 4 && infer::glues(pending, pending_len, total).is_some();
        if total <= 4 && u64::from(copied) >= total && !datagram && !announced {
            // Appended to what is kept if it fits, else it starts a new header.
            let have = if u64::from(pending_len) + total <= 4 {
                u64::from(pending_len)
            } else {
                0
            };
            let kept = u64::from(pending) & low_bytes(have);
            let new = (head[0] & low_bytes(total)).wrapping_shl(8 * have as u32);
            unsafe {
                (*conn).pending_header = (kept | new) as u32;
                (*conn).pending_len = (have + total) as u8;
            }
            return;
        }
        // The payload that a kept header announced: infer on header + payload.
        let glued = if datagram {
            None
        } else {
            infer::glues(pending, pending_len, total)
        };
        // The protocol that announced this message (0: none) and the kept bytes in front of
        // its first bytes (2 or 4, 0 when nothing is glued), forgotten so that every outcome of
        // the glue hooks reaches inference in one verifier state.
        let (glued, glued_len) = forget_glue(
            buf,
            glued.unwrap_or(proto::UNKNOWN),
            if glued.is_some() { pending_len } else { 0 },
        );
        let glued_len = u64::from(glued_len);
        let shift = 8 * glued_len as u32;
        let lo = (u64::from(pending) & low_bytes(glued_len)) | head[0].wrapping_shl(shift);
        // `>> (63 - shift) >> 1` rather than `>> (64 - shift)`: 0 (not `head[0]`) when shift is 0.
        let hi = (head[0].wrapping_shr(63 - shift) >> 1) | head[1].wrapping_shl(shift);
        let head = [lo, hi];
        let seen = if (copied as usize) + (glued_len as usize) < INFER_BYTES {
            copied as usize + glued_len as usize
        } else {
            INFER_BYTES
        };
        let msg_total = total + glued_len;
        // SAFETY: [u64; 2] and [u8; INFER_BYTES] have the same size; bytes in memory order.
        let head: [u8; INFER_BYTES] = unsafe { core::mem::transmute(head) };
        let msg = Message {
            head: &head,
            seen,
            total: msg_total,
            direction: if egress {
                direction::EGRESS
            } else {
                direction::INGRESS
            },
            sock_type: if datagram { sock::DGRAM } else { sock_type },
            // SAFETY: as above.
            role_hint: unsafe { (*conn).role },
        };
        let found = match infer::infer(&msg) {
            // A glued header only counts for the protocol that announced it.
            Some(found) if glued == proto::UNKNOWN || glued == found.protocol => found,
            _ => {
                if total < INFER_MIN_BYTES {
                    return;
                }
                // SAFETY: as above.
                unsafe {
                    (*conn).infer_attempts += 1;
                    if (*conn).infer_attempts >= INFER_MAX_ATTEMPTS {
                        // Never inspected again: forgotten, so its syscalls cost what any
                        // other fd's do.
                        maps::conn_remove(&key);
                        bump(stat::INFER_GAVE_UP);
                    }
                }
                return;
            }
        };
        // SAFETY: as above.
        unsafe {
            (*conn).protocol = found.protocol;
            (*conn).role = found.role;
            if datagram {
                (*conn).sock_type = sock::DGRAM;
            }
        }
        protocol = found.protocol;
        // SAFETY: as above; read-only borrow for the duration of the call.
        emit_control(ebpf_common::control::OPEN, &key, unsafe { &*conn });
        bump(stat::INFER_BASE + u32::from(found.protocol & 0x0f));
        if glued_len != 0 {
            // The header read earlier is part of the stream: send it first, at position 0.
            let at = advance(conn, egress, glued_len);
            emit_header(
                &key,
                generation,
                egress,
                (at, args.ts_ns),
                (pending, glued_len as u32),
                &found,
            );
        }
        pos = advance(conn, egress, total);
        // User space may have disabled a seeded connection before it was ever inferred.
        if is_disabled(tgid, args.fd, generation) {
            bump(stat::DROP_DISABLED);
            return;
        }
        // Inferred from the head alone: now copy what the data event carries.
        if first < cap {
            let ok = copy_chunk(buf, 0, src.ptr, cap);
            (copied, read_ok) = forget_paths(buf, if ok { cap } else { 0 }, ok);
        }
    }

    if !read_ok {
        bump(stat::DROP_READ_FAILED);
    }
    if total > u64::from(cap) {
        bump(stat::DROP_CAPTURE_TRUNCATED);
    }

    // The datagram's own peer, after the payload.
    let mut flags = if datagram { data_flag::DATAGRAM } else { 0 };
    let mut len = HDR + (copied as usize & (2 * MAX_CAPTURE - 1));
    if datagram && src.addr != 0 && write_peer(buf, len, src.addr) {
        flags |= data_flag::PEER;
        len += TRAILER;
    }

    // Header in front of the payload, then one output.
    let header = DataEventHeader {
        ts_ns: if egress { args.ts_ns } else { now_ns() },
        pos,
        pid: tgid,
        fd: args.fd,
        generation,
        len: if total > u64::from(u32::MAX) {
            u32::MAX
        } else {
            total as u32
        },
        cap_len: copied,
        direction: if egress {
            direction::EGRESS
        } else {
            direction::INGRESS
        },
        protocol,
        // SAFETY: as above.
        role: unsafe { (*conn).role },
        flags,
    };
    // SAFETY: the scratch starts with room for the header; unaligned write.
    unsafe { core::ptr::write_unaligned(buf as *mut DataEventHeader, header) };
    output(scratch, len, copied);
}

/// Outputs the first `len` bytes of the scratch (an assembled event) to the data ring.
#[inline(always)]
fn output(scratch: *mut maps::Scratch, len: usize, payload: u32) {
    // SAFETY: the scratch value, SCRATCH_BYTES long; `get` bounds-checks `len`.
    let Some(record) = (unsafe { (*scratch).buf.get(..len) }) else {
        return;
    };
    let flags = maps::ring_flags(&DATA, len as u64);
    match DATA.output::<[u8]>(record, flags) {
        Ok(()) => {
            bump(stat::DATA_EVENTS);
            add(stat::DATA_BYTES, u64::from(payload));
        }
        Err(_) => bump(stat::DROP_DATA_RING_FULL),
    }
}

/// Reads the sockaddr at user `addr` into a peer trailer at scratch offset `at`; false when it
/// is not an IPv4/IPv6 address or cannot be read.
#[inline(always)]
fn write_peer(buf: *mut u8, at: usize, addr: u64) -> bool {
    // struct sockaddr_in6 { u16 family; be16 port; u32 flowinfo; u8 addr[16]; u32 scope };
    // struct sockaddr_in { u16 family; be16 port; u8 addr[4]; u8 zero[8] } (16 bytes).
    // SAFETY: user pointer read through the checked helper.
    let Ok(raw) = (unsafe { bpf_probe_read_user(addr as *const [u8; 16]) }) else {
        return false;
    };
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    // The address as two 8-byte words in memory order (no array zeroing: LLVM would emit a
    // memset, which the BPF backend does not expand).
    let ip: [u64; 2] = match family {
        AF_INET => [
            u64::from(u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]])),
            core::hint::black_box(0),
        ],
        // SAFETY: as above; the address sits at offset 8 of a sockaddr_in6.
        AF_INET6 => match unsafe { bpf_probe_read_user((addr + 8) as *const [u64; 2]) } {
            Ok(v6) => v6,
            Err(_) => return false,
        },
        _ => return false,
    };
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    // SAFETY: `at` = HDR + a payload length masked to 2·MAX_CAPTURE - 1, and the scratch has
    // TRAILER bytes beyond HDR + 2·MAX_CAPTURE; unaligned writes of the trailer's fields.
    unsafe {
        let t = buf.add(at) as *mut PeerTrailer;
        (&raw mut (*t).family).write_unaligned(family);
        (&raw mut (*t).port).write_unaligned(port);
        (&raw mut (*t)._pad0).write_unaligned(0);
        let words = (&raw mut (*t).addr).cast::<u64>();
        words.write_unaligned(ip[0]);
        words.add(1).write_unaligned(ip[1]);
    }
    true
}

/// sendfile/splice enter: stash `fd` if it is a tracked socket whose protocol is known (bytes
/// before inference are not counted in positions). True when stashed.
#[inline(always)]
fn enter_uncaptured(fd: u32, k: u8) -> bool {
    let (pid_tgid, tgid) = current();
    let Some(conn) = tracked(tgid, fd) else {
        return false;
    };
    if !traced(tgid) {
        return false;
    }
    // SAFETY: a live CONNS value; one byte read.
    if unsafe { (*conn).protocol } == proto::UNKNOWN {
        // Bytes no inference will see, but they still turn the conversation of a socket that
        // predates the receiver (`ebpf_common::turn`): nginx sends a body with sendfile.
        // SAFETY: as above; a one-byte read and write of this process's entry.
        let turn = unsafe { (*conn).turn };
        if turn != ebpf_common::turn::OPEN {
            unsafe { (*conn).turn = ebpf_common::turn::after(turn, is_egress(k)) };
        }
        return false;
    }
    stash_args(
        pid_tgid,
        &SyscallArgs {
            ts_ns: now_ns(),
            ..SyscallArgs::new(k, fd, 0)
        },
    );
    true
}

/// sendfile/splice exit: advance the stream position by the bytes moved and report them as a
/// length-only data event (`cap_len` 0), stamped like any other event of that direction.
#[inline(always)]
fn exit_uncaptured(ctx: &TracePointContext) {
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return;
    };
    if !matches!(
        args.kind,
        kind::SENDFILE | kind::SPLICE_IN | kind::SPLICE_OUT
    ) {
        return;
    }
    let r = ret(ctx);
    if r <= 0 {
        return;
    }
    let total = r as u64;
    let Some(conn) = CONNS.get_ptr_mut(&ConnKey {
        pid: tgid,
        fd: args.fd,
    }) else {
        return;
    };
    // SAFETY: a live CONNS value, as in `message`.
    let (protocol, generation, role) =
        unsafe { ((*conn).protocol, (*conn).generation, (*conn).role) };
    if protocol == proto::UNKNOWN || protocol == proto::GAVE_UP {
        return;
    }
    let egress = is_egress(args.kind);
    let pos = advance(conn, egress, total);
    add(stat::UNCAPTURED_BYTES, total);
    if is_disabled(tgid, args.fd, generation) {
        bump(stat::DROP_DISABLED);
        return;
    }
    let header = DataEventHeader {
        ts_ns: if egress { args.ts_ns } else { now_ns() },
        pos,
        pid: tgid,
        fd: args.fd,
        generation,
        len: if total > u64::from(u32::MAX) {
            u32::MAX
        } else {
            total as u32
        },
        cap_len: 0,
        direction: if egress {
            direction::EGRESS
        } else {
            direction::INGRESS
        },
        protocol,
        role,
        flags: 0,
    };
    let flags = maps::ring_flags(&DATA, HDR as u64);
    match DATA.output::<DataEventHeader>(&header, flags) {
        Ok(()) => bump(stat::DATA_EVENTS),
        Err(_) => bump(stat::DROP_DATA_RING_FULL),
    }
}

/// A data event carrying only a header of at most 4 bytes kept from an earlier syscall.
#[repr(C)]
struct HeaderEvent {
    header: DataEventHeader,
    /// The header's bytes in memory order; the first `cap_len` are valid.
    bytes: u32,
    _pad0: u32,
}

/// `at`: (stream position, syscall entry time); `header`: (bytes in memory order, count).
#[inline(always)]
fn emit_header(
    key: &ConnKey,
    generation: u32,
    egress: bool,
    at: (u64, u64),
    header: (u32, u32),
    found: &infer::Inferred,
) {
    let (pos, enter_ts) = at;
    let (bytes, len) = header;
    let len = if len > 4 { 4 } else { len };
    let event = HeaderEvent {
        header: DataEventHeader {
            ts_ns: if egress { enter_ts } else { now_ns() },
            pos,
            pid: key.pid,
            fd: key.fd,
            generation,
            len,
            cap_len: len,
            direction: if egress {
                direction::EGRESS
            } else {
                direction::INGRESS
            },
            protocol: found.protocol,
            role: found.role,
            flags: 0,
        },
        bytes,
        _pad0: 0,
    };
    let flags = maps::ring_flags(&DATA, size_of::<HeaderEvent>() as u64);
    match DATA.output::<HeaderEvent>(&event, flags) {
        Ok(()) => {
            bump(stat::DATA_EVENTS);
            add(stat::DATA_BYTES, u64::from(len));
        }
        Err(_) => bump(stat::DROP_DATA_RING_FULL),
    }
}

/// A mask of the `n` (0..=4) low bytes of a u64.
#[inline(always)]
fn low_bytes(n: u64) -> u64 {
    1u64.wrapping_shl(8 * n as u32).wrapping_sub(1) & 0xffff_ffff
}

/// Whether user space disabled capture for this connection.
#[inline(always)]
fn is_disabled(pid: u32, fd: u32, generation: u32) -> bool {
    // One array read while nothing is disabled (the common case).
    if DISABLED_ANY.get(0).is_none_or(|v| *v == 0) {
        return false;
    }
    let key = DisabledKey {
        pid,
        fd,
        generation,
        _pad0: 0,
    };
    DISABLED.get_ptr(&key).is_some()
}

/// Round-trips the capture result through the scratch (the header area, overwritten later).
/// A value loaded from map memory is an unknown scalar to the verifier, so every path out of
/// the iovec loop reaches the rest of the program in the same state and is pruned, instead of
/// being verified once per path (95k instructions for readv/recvmsg without this).
#[inline(always)]
fn forget_paths(buf: *mut u8, copied: u32, ok: bool) -> (u32, bool) {
    // SAFETY: the first 8 bytes of the scratch slot (header area), aligned to 8.
    unsafe {
        let slot = buf as *mut u32;
        core::ptr::write_volatile(slot, copied);
        core::ptr::write_volatile(slot.add(1), u32::from(ok));
        let copied = core::ptr::read_volatile(slot);
        let ok = core::ptr::read_volatile(slot.add(1)) != 0;
        (copied & (2 * MAX_CAPTURE as u32 - 1), ok)
    }
}

/// Round-trips the glue outcome (protocol, header length ≤ 4) through the scratch (header
/// area, overwritten later), like [`forget_paths`]: the three outcomes (none, MySQL, DNS) then
/// reach inference as one verifier state instead of three.
#[inline(always)]
fn forget_glue(buf: *mut u8, protocol: u8, len: u8) -> (u8, u8) {
    // SAFETY: bytes 8 and 9 of the scratch slot (header area).
    unsafe {
        let slot = buf.add(8);
        core::ptr::write_volatile(slot, protocol);
        core::ptr::write_volatile(slot.add(1), len);
        (
            core::ptr::read_volatile(slot),
            core::ptr::read_volatile(slot.add(1)) & 7,
        )
    }
}

/// Position of this syscall's first byte in its direction's stream; advances it by `n`.
#[inline(always)]
fn advance(conn: *mut ConnState, egress: bool, n: u64) -> u64 {
    // SAFETY: field addresses of a live map value.
    let field = unsafe {
        if egress {
            &raw mut (*conn).send_pos
        } else {
            &raw mut (*conn).recv_pos
        }
    };
    maps::advance(field, n)
}

/// Copies `n` (≤ MAX_CAPTURE) bytes from user `src` to payload offset `off` (< MAX_CAPTURE).
#[inline(always)]
fn copy_chunk(buf: *mut u8, off: u32, src: u64, n: u32) -> bool {
    let off = off as usize & (MAX_CAPTURE - 1);
    let n = if n as usize > MAX_CAPTURE {
        MAX_CAPTURE
    } else {
        n as usize
    };
    // SAFETY: HDR + off + n ≤ HDR + 2·MAX_CAPTURE < SCRATCH_BYTES; user memory is read by the
    // checked helper.
    let r = unsafe {
        generated::bpf_probe_read_user(
            buf.add(HDR + off) as *mut c_void,
            n as u32,
            src as *const c_void,
        )
    };
    r == 0
}

/// Copies the first `cap` bytes spread over up to `N` iovecs, concatenated.
/// Returns (bytes copied, whether every read succeeded).
#[inline(always)]
fn copy_iovecs<const N: usize>(buf: *mut u8, iov: u64, iovcnt: u32, cap: u32) -> (u32, bool) {
    let mut off: u32 = 0;
    // One continuing path per iteration (no `continue`/early break on a full capture: a
    // zero-length probe read is allowed and cheap), so the verifier walks N iterations, not
    // 2^N path combinations.
    for i in 0..N {
        if i as u32 >= iovcnt {
            break;
        }
        // struct iovec { void *base; size_t len; }
        // SAFETY: user pointer read through the checked helper.
        let Ok(v) = (unsafe { bpf_probe_read_user((iov + 16 * i as u64) as *const [u64; 2]) })
        else {
            return (off, false);
        };
        let room = u64::from(cap.saturating_sub(off));
        let n = if v[1] < room {
            v[1] as u32
        } else {
            room as u32
        };
        if !copy_chunk(buf, off, v[0], n) {
            return (off, false);
        }
        // Through memory: the two ways `n` was chosen reach the next iteration in the same
        // state, so the verifier walks one path per iovec instead of doubling them.
        off = forget_u32(buf, off + n);
    }
    (off, true)
}

/// `v`, but unknown to the verifier (a round trip through the scratch's header area, word 2;
/// `forget_paths` uses words 0 and 1), bounded by the scratch.
#[inline(always)]
fn forget_u32(buf: *mut u8, v: u32) -> u32 {
    // SAFETY: bytes 8..12 of the scratch slot (header area), aligned to 4.
    unsafe {
        let slot = (buf as *mut u32).add(2);
        core::ptr::write_volatile(slot, v);
        core::ptr::read_volatile(slot) & (2 * MAX_CAPTURE as u32 - 1)
    }
}
