//! Connection lifecycle: socket (UDP), connect, accept, accept4 create `CONNS` entries; a
//! forked child gets a copy of its parent's; close removes them.
//!
//! Syscall tracepoint records (see `/sys/kernel/tracing/events/syscalls/*/format`): 8 bytes of
//! common fields, `__syscall_nr` at 8, then the arguments at 16 + 8·i (sys_enter) or the return
//! value at 16 (sys_exit).

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_comm, bpf_ktime_get_boot_ns},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use ebpf_common::{ConnKey, ConnState, ControlEvent, NO_FD, control, proto, role, sock, stat};

use crate::{
    maps::{
        self, CONNS, CONTROL, EXCLUDE_PORTS, SyscallArgs, current, kind, stash_args, take_args,
        traced,
    },
    stats::bump,
};

const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `SOCK_DGRAM`, in the low bits of socket(2)'s `type` (above them: SOCK_NONBLOCK, …).
const SOCK_DGRAM: u64 = 2;
const SOCK_TYPE_MASK: u64 = 0xf;
const EINPROGRESS: i64 = 115;

/// Argument `i` of a sys_enter record.
#[inline(always)]
pub fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    // SAFETY: syscall tracepoint records carry 6 u64 arguments from offset 16; the verifier
    // bounds-checks context reads against the record size.
    unsafe { *(ctx.as_ptr() as *const u64).add(2 + i) }
}

/// Return value of a sys_exit record.
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: `long ret` sits at offset 16 of every sys_exit record.
    unsafe { *(ctx.as_ptr() as *const i64).add(2) }
}

/// Boot-time nanoseconds (counts suspend, like CLOCK_BOOTTIME in user space).
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

// ---- connect ----

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    stash_lifecycle(&ctx, kind::CONNECT);
    0
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    // The stash is the filter: it exists only if sys_enter passed it.
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return 0;
    };
    if args.kind != kind::CONNECT {
        return 0;
    }
    // Connected, or a non-blocking connect under way.
    let r = ret(&ctx);
    if r != 0 && r != -EINPROGRESS {
        return 0;
    }
    // Peer from connect's own sockaddr; only socket families we can parse.
    let Some(peer) = read_peer(args.ptr) else {
        return 0;
    };
    if peer.family == 0 {
        return 0;
    }
    // Never the Collector's OTLP port (or any other excluded port).
    if peer.family != AF_UNIX && EXCLUDE_PORTS.get_ptr(&peer.port).is_some() {
        return 0;
    }
    create_conn(tgid, args.fd, role::CLIENT, &peer, NO_FD, sock::UNKNOWN);
    0
}

// ---- socket ----

/// UDP sockets are watched from their creation: an unconnected one (a DNS server's, or a
/// client's that names the peer in every sendto) never calls connect or accept. Stream
/// sockets wait for connect/accept, which tell the role.
#[tracepoint]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    // socket(domain, type, protocol): stash only INET/INET6 datagram sockets.
    let domain = arg(&ctx, 0) as u16;
    if (domain != AF_INET && domain != AF_INET6) || arg(&ctx, 1) & SOCK_TYPE_MASK != SOCK_DGRAM {
        return 0;
    }
    let (pid_tgid, tgid) = current();
    if !traced(tgid) {
        return 0;
    }
    stash_args(
        pid_tgid,
        &SyscallArgs::new(kind::SOCKET, 0, u64::from(domain)),
    );
    0
}

#[tracepoint]
pub fn sys_exit_socket(ctx: TracePointContext) -> u32 {
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return 0;
    };
    if args.kind != kind::SOCKET {
        return 0;
    }
    // The new socket's fd.
    let r = ret(&ctx);
    if r < 0 {
        return 0;
    }
    let peer = Peer {
        family: args.ptr as u16,
        ..Peer::default()
    };
    create_conn(tgid, r as u32, role::UNKNOWN, &peer, NO_FD, sock::DGRAM);
    0
}

// ---- accept / accept4 ----

#[tracepoint]
pub fn sys_enter_accept(ctx: TracePointContext) -> u32 {
    stash_lifecycle(&ctx, kind::ACCEPT);
    0
}

#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    exit_accept(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_accept4(ctx: TracePointContext) -> u32 {
    stash_lifecycle(&ctx, kind::ACCEPT);
    0
}

#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    exit_accept(&ctx);
    0
}

#[inline(always)]
fn exit_accept(ctx: &TracePointContext) {
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return;
    };
    if args.kind != kind::ACCEPT {
        return;
    }
    // The new socket's fd.
    let r = ret(ctx);
    if r < 0 {
        return;
    }
    // Peer from accept's address argument when the caller passed one (family 0 otherwise:
    // accept only returns stream sockets, so the entry is still worth having).
    let peer = if args.ptr == 0 {
        Peer::default()
    } else {
        match read_peer(args.ptr) {
            Some(p) => p,
            None => Peer::default(),
        }
    };
    // `args.fd` is the listening socket; accept only returns stream sockets.
    create_conn(tgid, r as u32, role::SERVER, &peer, args.fd, sock::STREAM);
}

// ---- fork ----

/// clone(2) flags of children that need no copy of the parent's entries: a thread shares the
/// parent's tgid (so its entries), a vfork-style or memory-sharing child execs at once.
const CLONE_VM: u64 = 0x0000_0100;
const CLONE_VFORK: u64 = 0x0000_4000;
const CLONE_THREAD: u64 = 0x0001_0000;
const NO_INHERIT: u64 = CLONE_VM | CLONE_VFORK | CLONE_THREAD;
/// A forked child inherits the parent's entries for fds below this. Servers that accept and
/// then fork (dnsmasq for TCP, PostgreSQL) hold the accepted socket at a low fd; the bound
/// keeps a fork at one loop of map lookups.
const MAX_INHERITED_FDS: u32 = 128;

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    // clone(flags, stack, parent_tid, child_tid, tls) on x86_64 and arm64.
    stash_fork(arg(&ctx, 0));
    0
}

#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    // clone3(struct clone_args *args, size): `flags` is the first u64 of the struct.
    // SAFETY: user pointer read through the checked helper.
    if let Ok(flags) = unsafe { bpf_probe_read_user(arg(&ctx, 0) as *const u64) } {
        stash_fork(flags);
    }
    0
}

#[tracepoint]
pub fn sys_enter_fork(_ctx: TracePointContext) -> u32 {
    stash_fork(0);
    0
}

/// vfork(2) itself (Python's `subprocess` uses it; `posix_spawn` goes through clone): the
/// child copies no entries, but under a pid filter it is traced like its parent.
#[tracepoint]
pub fn sys_enter_vfork(_ctx: TracePointContext) -> u32 {
    stash_fork(CLONE_VM | CLONE_VFORK);
    0
}

/// Marks the current thread as starting a process (not a thread): the `sched_process_fork`
/// event inside the same syscall then copies the parent's entries (`fd` 1; not for a vfork or
/// memory-sharing child, which execs at once) and, under a pid filter that names the parent,
/// adds the child to the traced pids (a server starting its workers, a shell its commands).
#[inline(always)]
fn stash_fork(flags: u64) {
    if flags & CLONE_THREAD != 0 {
        return;
    }
    let (pid_tgid, tgid) = current();
    if !traced(tgid) {
        return;
    }
    let copy = flags & NO_INHERIT == 0;
    if !copy && !maps::pid_included(tgid) {
        return;
    }
    stash_args(pid_tgid, &SyscallArgs::new(kind::FORK, u32::from(copy), 0));
}

/// `sched/sched_process_fork`, in the parent, after the child is created and before it first
/// runs: the child inherits a copy of each of the parent's entries (fresh generation, stream
/// positions from 0), so a socket the parent accepted and handed to the child is watched in
/// the child even though the parent closes its copy right after the fork. Without this a
/// child's reads race the copy (a `sys_exit_clone` in the parent runs after the child may
/// already have read).
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let (pid_tgid, tgid) = current();
    let Some(args) = take_args(pid_tgid) else {
        return 0;
    };
    if args.kind != kind::FORK {
        return 0;
    }
    // `child_pid` sits at an offset that depends on the kernel's record layout; the loader
    // reads it from the tracepoint's format file.
    let at = (ctx.as_ptr() as u64).wrapping_add(u64::from(maps::fork_child_pid_offset()));
    // SAFETY: a kernel read through the checked helper, inside the tracepoint record.
    let Ok(child) = (unsafe { bpf_probe_read_kernel(at as *const i32) }) else {
        bump(stat::DROP_READ_FAILED);
        return 0;
    };
    if child <= 0 {
        return 0;
    }
    let child = child as u32;
    if maps::pid_included(tgid) && !maps::include_pid(child) {
        bump(stat::DROP_PIDS_MAP_FULL);
    }
    if args.fd == 0 || !traced(child) {
        return 0;
    }
    inherit(tgid, child);
    0
}

#[inline(always)]
fn inherit(parent: u32, child: u32) {
    // One block of generations for the whole copy: fd `i` gets `first + i` (one atomic
    // operation per fork instead of one per socket, and a simpler loop for the verifier).
    let first = maps::next_generations(MAX_INHERITED_FDS);
    for fd in 0..MAX_INHERITED_FDS {
        if !maps::maybe_tracked(parent, fd) {
            continue;
        }
        let Some(entry) = CONNS.get_ptr(&ConnKey { pid: parent, fd }) else {
            continue;
        };
        // SAFETY: copied out of the live map value.
        let mut state = unsafe { *entry };
        if state.protocol == proto::GAVE_UP {
            continue;
        }
        state.generation = maps::generation_in_block(first, fd);
        state.send_pos = core::hint::black_box(0);
        state.recv_pos = core::hint::black_box(0);
        // Never overwrite what the child already has (it cannot have run yet).
        if !maps::conn_insert(&ConnKey { pid: child, fd }, &state, false) {
            bump(stat::DROP_CONN_MAP_FULL);
        }
    }
}

// ---- close ----

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    // One array read for every fd that is not a tracked socket.
    let (_, tgid) = current();
    let key = ConnKey {
        pid: tgid,
        fd: arg(&ctx, 0) as u32,
    };
    if !maps::maybe_tracked(key.pid, key.fd) {
        return 0;
    }
    let Some(state) = CONNS.get_ptr(&key) else {
        return 0;
    };
    // SAFETY: copied out of the live map value before the entry is deleted.
    let state = unsafe { *state };
    if is_inferred(state.protocol) {
        emit_control(control::CLOSE, &key, &state);
    }
    maps::conn_remove(&key);
    0
}

// ---- shared ----

/// Whether the connection's protocol is a real one (user space has seen its OPEN).
#[inline(always)]
pub fn is_inferred(protocol: u8) -> bool {
    protocol != proto::UNKNOWN && protocol != proto::GAVE_UP
}

#[inline(always)]
fn stash_lifecycle(ctx: &TracePointContext, k: u8) {
    let (pid_tgid, tgid) = current();
    if !traced(tgid) {
        return;
    }
    stash_args(
        pid_tgid,
        &SyscallArgs::new(k, arg(ctx, 0) as u32, arg(ctx, 1)),
    );
}

/// Peer address parsed from a user sockaddr. Aligned so zeroing it is plain stores (BPF has
/// no memset).
#[derive(Default)]
#[repr(C, align(8))]
struct Peer {
    family: u16,
    port: u16,
    has_addr: u8,
    addr: [u8; 16],
}

/// Reads a sockaddr: family first (a sockaddr_un may be 3 bytes), then the rest by family.
/// `None` when unreadable; family 0 when not INET/INET6/UNIX.
#[inline(always)]
fn read_peer(ptr: u64) -> Option<Peer> {
    // SAFETY: user pointer read through the checked helper.
    let family = unsafe { bpf_probe_read_user(ptr as *const u16) }.ok()?;
    let mut peer = Peer::default();
    match family {
        AF_INET => {
            // struct sockaddr_in { u16 family; be16 port; u8 addr[4]; u8 zero[8]; }
            // SAFETY: as above.
            let raw = unsafe { bpf_probe_read_user(ptr as *const [u8; 8]) }.ok()?;
            peer.family = AF_INET;
            peer.port = u16::from_be_bytes([raw[2], raw[3]]);
            peer.addr[..4].copy_from_slice(&raw[4..8]);
            peer.has_addr = 1;
        }
        AF_INET6 => {
            // struct sockaddr_in6 { u16 family; be16 port; u32 flowinfo; u8 addr[16]; u32 scope; }
            // SAFETY: as above.
            let raw = unsafe { bpf_probe_read_user(ptr as *const [u8; 24]) }.ok()?;
            peer.family = AF_INET6;
            peer.port = u16::from_be_bytes([raw[2], raw[3]]);
            peer.addr.copy_from_slice(&raw[8..24]);
            peer.has_addr = 1;
        }
        AF_UNIX => peer.family = AF_UNIX,
        _ => {}
    }
    Some(peer)
}

/// Starts watching (tgid, fd) with a fresh generation. A still-open inferred entry for the same
/// key (its close was missed: dup2, close_range, exec) is closed first for user space. An
/// uninferred entry from socket(2) (a UDP socket now connecting) passes on its socket type.
#[inline(always)]
fn create_conn(tgid: u32, fd: u32, role_hint: u8, peer: &Peer, listen_fd: u32, sock_type: u8) {
    let key = ConnKey { pid: tgid, fd };
    let mut sock_type = sock_type;
    let old = if maps::maybe_tracked(tgid, fd) {
        CONNS.get_ptr(&key)
    } else {
        None
    };
    if let Some(old) = old {
        // SAFETY: copied out of the live map value.
        let old = unsafe { *old };
        if is_inferred(old.protocol) {
            emit_control(control::CLOSE, &key, &old);
        } else if sock_type == sock::UNKNOWN {
            sock_type = old.sock_type;
        }
    }
    // Opaque zero: LLVM would merge literal zero stores into a memset, which the BPF backend
    // of LLVM 22 does not expand.
    let zero = core::hint::black_box(0u64);
    let state = ConnState {
        send_pos: zero,
        recv_pos: zero,
        generation: maps::next_generation(),
        protocol: proto::UNKNOWN,
        role: role_hint,
        infer_attempts: 0,
        has_peer: peer.has_addr,
        family: peer.family,
        peer_port: peer.port,
        listen_fd,
        peer_addr: peer.addr,
        pending_header: 0,
        sock_type,
        pending_len: 0,
        turn: ebpf_common::turn::OPEN,
        _pad1: 0,
        listen_pid: if listen_fd == NO_FD { 0 } else { tgid },
        _pad2: 0,
    };
    maps::conn_insert(&key, &state, true);
}

/// Writes one control event for `key` / `state` to the control ring.
#[inline(always)]
pub fn emit_control(k: u8, key: &ConnKey, state: &ConnState) {
    let flags = maps::ring_flags(&CONTROL, size_of::<ControlEvent>() as u64);
    // Reserve and fill in place: `comm` is written by the helper, and a struct literal with a
    // zeroed array would become a memset, which the BPF backend does not expand.
    let Some(mut entry) = CONTROL.reserve::<ControlEvent>(0) else {
        bump(stat::DROP_CONTROL_RING_FULL);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring slot of size_of::<ControlEvent>;
    // every field is written before submit.
    unsafe {
        (*e).ts_ns = now_ns();
        (*e).pid = key.pid;
        (*e).fd = key.fd;
        (*e).generation = state.generation;
        (*e).kind = k;
        (*e).protocol = state.protocol;
        (*e).role = state.role;
        (*e).has_peer = state.has_peer;
        (*e).family = state.family;
        (*e).peer_port = state.peer_port;
        (*e).listen_fd = state.listen_fd;
        (*e).listen_pid = state.listen_pid;
        (*e).sock_type = state.sock_type;
        (*e)._pad0 = [0; 3];
        // Two 8-byte stores: a 16-byte array copy would become a memmove call.
        let src = state.peer_addr.as_ptr().cast::<u64>();
        let dst = (&raw mut (*e).peer_addr).cast::<u64>();
        dst.write_unaligned(src.read_unaligned());
        dst.add(1).write_unaligned(src.add(1).read_unaligned());
        // Fills all 16 bytes (NUL-padded), or zeroes them on failure.
        bpf_get_current_comm((&raw mut (*e).comm).cast(), 16);
    }
    entry.submit(flags);
    bump(stat::CONTROL_EVENTS);
}
