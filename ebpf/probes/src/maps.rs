//! Every map and runtime knob of the probes. Sizes here are defaults: the loader resizes
//! `CONNS`, `CONTROL` and `DATA` from the receiver's config, and sets the globals.

// SeqCst, not Relaxed: LLVM 22's BPF backend lowers a relaxed fetch-add to the non-fetching
// `lock +=` even when the result is used (the "previous value" is then garbage).
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use ebpf_common::{
    ConnKey, ConnState, DataEventHeader, DisabledKey, MAX_CAPTURE, PeerTrailer, stat,
};

// ---- Runtime knobs (globals in .rodata, overridden by the loader) ----

/// Thread-group id of the receiver itself: never traced.
#[unsafe(no_mangle)]
static SELF_PID: u32 = 0;
/// 1 when any pid is in `PIDS`: only then do programs pay for the lookup.
#[unsafe(no_mangle)]
static PID_FILTER_ACTIVE: u8 = 0;
/// 1: only pids with value `PID_INCLUDE` in `PIDS` are traced.
#[unsafe(no_mangle)]
static FILTER_INCLUDE_ONLY: u8 = 0;
/// Payload bytes captured per syscall, ≤ `MAX_CAPTURE`.
#[unsafe(no_mangle)]
static MAX_CAPTURE_BYTES: u32 = 4096;
/// Bit `1 << proto::X` set for every protocol inference may report (config `protocols.*`).
#[unsafe(no_mangle)]
static ENABLED_PROTOCOLS: u32 = u32::MAX;
/// 0 when `ebpf.kernel_inference` is false (the diagnostic "traditional pipeline", kept for
/// the benchmark comparison): connections are not inferred here but forwarded as `proto::RAW`
/// from their first message with bytes, for user space to infer.
#[unsafe(no_mangle)]
static KERNEL_INFERENCE: u8 = 1;
/// Offset of `child_pid` in the `sched_process_fork` record (from its format file: 20 on
/// kernels that store the comms as `__data_loc` strings, 44 before).
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;

/// `FD_FILTER` slots - 1 (a power of two minus one), set by the loader with the map's size.
#[unsafe(no_mangle)]
static FD_FILTER_MASK: u32 = FD_FILTER_DEFAULT_SLOTS - 1;

/// Offsets in `struct pt_regs` of the six syscall arguments at sys_enter (x86_64 defaults: di,
/// si, dx, r10, r8, r9), of the first argument at sys_exit (arm64 overwrites x0 with the return
/// value and keeps it in orig_x0), and of the syscall number; set by the loader for the host.
#[unsafe(no_mangle)]
static REGS_ARG_OFFSETS: [u32; 6] = [112, 104, 96, 56, 72, 64];
#[unsafe(no_mangle)]
static REGS_EXIT_ARG0_OFFSET: u32 = 112;
#[unsafe(no_mangle)]
static REGS_NR_OFFSET: u32 = 120;

/// Syscall argument `i` from the saved user registers of a raw syscall tracepoint.
#[inline(always)]
pub fn reg_arg(regs: *const u8, i: usize) -> u64 {
    let off = read_global(&REGS_ARG_OFFSETS[i]) as usize;
    // SAFETY: `regs` is the tracepoint's `struct pt_regs *` (a BTF pointer: the verifier checks
    // the constant offset against the struct and turns the load into a fault-safe one).
    unsafe { *(regs.add(off) as *const u64) }
}

/// The first syscall argument at sys_exit.
#[inline(always)]
pub fn reg_exit_arg0(regs: *const u8) -> u64 {
    let off = read_global(&REGS_EXIT_ARG0_OFFSET) as usize;
    // SAFETY: as in `reg_arg`.
    unsafe { *(regs.add(off) as *const u64) }
}

/// The syscall number at sys_exit (a 32-bit read: arm64's `syscallno` is an int).
#[inline(always)]
pub fn reg_nr(regs: *const u8) -> u64 {
    let off = read_global(&REGS_NR_OFFSET) as usize;
    // SAFETY: as in `reg_arg`.
    u64::from(unsafe { *(regs.add(off) as *const u32) })
}

/// `syscall::*` kind of syscall number `nr`; `None` for every syscall the probes ignore.
#[inline(always)]
pub fn syscall_kind(nr: u64) -> Option<u8> {
    if nr >= u64::from(ebpf_common::syscall::TABLE_SLOTS) {
        return None;
    }
    // SAFETY: a live array slot, read once.
    let k = unsafe { *SYSCALL_KIND.get_ptr(nr as u32)? };
    (k != ebpf_common::syscall::NONE).then_some(k)
}

/// See [`FORK_CHILD_PID_OFFSET`]; masked to stay inside a record.
#[inline(always)]
pub fn fork_child_pid_offset() -> u32 {
    read_global(&FORK_CHILD_PID_OFFSET) & 0xff
}

/// Whether inference may report `protocol`.
#[inline(always)]
pub fn protocol_enabled(protocol: u8) -> bool {
    read_global(&ENABLED_PROTOCOLS) & (1u32 << (protocol & 31)) != 0
}

/// Whether the kernel infers protocols (`ebpf.kernel_inference`, default true).
#[inline(always)]
pub fn kernel_inference() -> bool {
    read_global(&KERNEL_INFERENCE) != 0
}

/// `PIDS` value: trace this pid (with `FILTER_INCLUDE_ONLY`, only these).
pub const PID_INCLUDE: u8 = 1;
/// `PIDS` value: never trace this pid.
pub const PID_EXCLUDE: u8 = 2;

#[inline(always)]
fn read_global<T: Copy>(g: &T) -> T {
    // SAFETY: a valid reference; volatile so the compiler keeps the load and the loader's
    // value (patched into .rodata) is what the program sees.
    unsafe { core::ptr::read_volatile(g) }
}

/// Capture cap for this run: the loader's knob, never above the scratch layout's limit.
#[inline(always)]
pub fn max_capture_bytes() -> u32 {
    let v = read_global(&MAX_CAPTURE_BYTES);
    if v > MAX_CAPTURE as u32 {
        MAX_CAPTURE as u32
    } else {
        v
    }
}

// ---- Maps ----

/// Sockets being watched: created at connect/accept (or seeded by user space), removed at close.
#[map]
pub static CONNS: HashMap<ConnKey, ConnState> = HashMap::with_max_entries(65536, 0);

/// Connections user space asked to stop capturing; value unused. 4096 at once (≈ 0.35 MiB of
/// kernel memory; 16384 cost 1.4 MiB): past that a disable fails and the connection's bytes
/// keep coming, to be discarded by the tracker, which already gave up on it.
#[map]
pub static DISABLED: HashMap<DisabledKey, u8> = HashMap::with_max_entries(4096, 0);

/// Slot 0 is 1 while `DISABLED` may hold an entry (user space, its only writer, keeps it):
/// otherwise every message skips the `DISABLED` lookup.
#[map]
pub static DISABLED_ANY: Array<u32> = Array::with_max_entries(1, 0);

/// `BPF_F_MMAPABLE`: user space maps the array and updates counts with atomic instructions too.
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Default size of `FD_FILTER` (the loader sizes it from `max_connections`).
const FD_FILTER_DEFAULT_SLOTS: u32 = 1 << 16;

/// The tracked-fd filter: slot `fd_slot(pid, fd) & FD_FILTER_MASK` counts the `CONNS` keys that
/// hash there. Every insert into `CONNS` adds one, every successful delete takes one away
/// (kernel and user space alike, with atomic operations), so a zero proves that (pid, fd) is not
/// tracked with one array read, the only cost of syscalls on other fds.
#[map]
pub static FD_FILTER: Array<u32> = Array::with_max_entries(FD_FILTER_DEFAULT_SLOTS, BPF_F_MMAPABLE);

/// Syscall number → `syscall::*` kind, filled by the loader for the host's syscall table.
#[map]
pub static SYSCALL_KIND: Array<u8> = Array::with_max_entries(ebpf_common::syscall::TABLE_SLOTS, 0);

/// pid → `PID_INCLUDE` / `PID_EXCLUDE`.
#[map]
pub static PIDS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// Peer ports never tracked (the Collector's OTLP port); value unused.
#[map]
pub static EXCLUDE_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(64, 0);

/// Sets of [`ARG_OWNERS`] (a power of two); each set has `ARG_WAYS` slots of [`ARG_VALUES`].
const ARG_SETS: u32 = 1 << 12;
/// Slots per set.
const ARG_WAYS: u32 = 4;
/// Owner word bit: the owner is still writing the slot's arguments.
const ARG_BUSY: u64 = 1 << 63;

/// Per-thread syscall arguments between sys_enter and sys_exit: a 4-way set-associative table
/// indexed by a hash of the thread id, instead of a hash map (an LRU map update cost about
/// 300 ns per stash here; this costs a few array reads). `ARG_OWNERS[set][way]` is the
/// pid_tgid whose arguments are in `ARG_VALUES[set * ARG_WAYS + way]`, 0 when the slot is free.
/// Slots are claimed and released with compare-and-swap, so a slot taken over by another
/// thread is never read half-written. Threads that die inside a syscall leave their slot
/// behind; it is reused when its set is full (counted like any evicted stash).
#[map]
pub static ARG_OWNERS: Array<[u64; ARG_WAYS as usize]> = Array::with_max_entries(ARG_SETS, 0);

#[map]
pub static ARG_VALUES: Array<SyscallArgs> = Array::with_max_entries(ARG_SETS * ARG_WAYS, 0);

/// Slot 0: the last connection generation handed out.
#[map]
pub static GENERATION: Array<u64> = Array::with_max_entries(1, 0);

/// Scratch where a data event (header + payload) is assembled before one ring output, one
/// slot per CPU (indexed by CPU id; the loader sizes it to the possible CPUs). Not a
/// PerCpuArray: per-CPU values are limited to 32 KiB and this is 32 KiB + header.
#[map]
pub static SCRATCH: Array<Scratch> = Array::with_max_entries(256, 0);

/// `stat::COUNT` per-CPU counters.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Open/close events (small, rare).
#[map]
pub static CONTROL: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Data events (header + captured bytes).
#[map]
pub static DATA: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

// ---- Map value types private to the kernel side ----

/// Which syscall stashed a `SyscallArgs`.
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const ACCEPT: u8 = 2;
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const READV: u8 = 5;
    pub const WRITEV: u8 = 6;
    pub const SENDTO: u8 = 7;
    pub const RECVFROM: u8 = 8;
    pub const SENDMSG: u8 = 9;
    pub const RECVMSG: u8 = 10;
    pub const SENDMMSG: u8 = 11;
    pub const RECVMMSG: u8 = 12;
    /// sendfile(2): bytes reach the socket from a file, never through a buffer we can read.
    pub const SENDFILE: u8 = 13;
    /// splice(2) out of a tracked socket (ingress).
    pub const SPLICE_IN: u8 = 14;
    /// splice(2) into a tracked socket (egress).
    pub const SPLICE_OUT: u8 = 15;
    pub const SOCKET: u8 = 16;
    /// clone/clone3/fork of a process (not a thread, not a vfork), for `sched_process_fork`.
    pub const FORK: u8 = 17;
}

/// What sys_enter saw, for sys_exit of the same thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallArgs {
    /// Buffer, iovec array, mmsghdr array or sockaddr pointer (user memory).
    pub ptr: u64,
    /// The datagram's peer sockaddr (sendto's destination, recvfrom's source, a msghdr's
    /// `msg_name`), 0 when the call names none.
    pub addr: u64,
    /// `bpf_ktime_get_boot_ns()` at enter.
    pub ts_ns: u64,
    pub fd: u32,
    /// Number of iovecs (or mmsghdrs) at `ptr`; 0 when `ptr` is a flat buffer.
    pub iovcnt: u32,
    /// `kind::*`.
    pub kind: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    pub _pad2: u32,
}

impl SyscallArgs {
    /// Arguments of syscall `kind` on `fd`: `ptr` as [`SyscallArgs::ptr`], no peer address, no
    /// iovecs, no timestamp.
    #[inline(always)]
    pub fn new(kind: u8, fd: u32, ptr: u64) -> SyscallArgs {
        SyscallArgs {
            ptr,
            addr: 0,
            ts_ns: 0,
            fd,
            iovcnt: 0,
            kind,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// Header offset + room for a masked offset (< MAX) plus a length (≤ MAX), plus a peer trailer
/// after a masked payload length.
pub const SCRATCH_BYTES: usize =
    size_of::<DataEventHeader>() + 2 * MAX_CAPTURE + size_of::<PeerTrailer>();

#[repr(C)]
pub struct Scratch {
    pub buf: [u8; SCRATCH_BYTES],
}

// ---- Accessors ----

/// This CPU's scratch buffer.
#[inline(always)]
pub fn scratch() -> Option<*mut Scratch> {
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    SCRATCH.get_ptr_mut(cpu)
}

/// The current thread's pid_tgid and thread-group id (the pid user space sees).
#[inline(always)]
pub fn current() -> (u64, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid, (pid_tgid >> 32) as u32)
}

/// Whether the pid filter names `tgid` (or a process it was started by) as one to trace.
#[inline(always)]
pub fn pid_included(tgid: u32) -> bool {
    if read_global(&PID_FILTER_ACTIVE) == 0 || read_global(&FILTER_INCLUDE_ONLY) == 0 {
        return false;
    }
    // SAFETY: the value is a plain u8 copied out at once.
    unsafe { PIDS.get(&tgid) }.copied() == Some(PID_INCLUDE)
}

/// Adds `child`, started by an included process, to the included pids (never overwriting an
/// entry: an exclusion from the configuration wins). False when the map is full.
#[inline(always)]
pub fn include_pid(child: u32) -> bool {
    // SAFETY: a lookup whose value is not kept.
    PIDS.insert(&child, &PID_INCLUDE, BPF_NOEXIST).is_ok() || unsafe { PIDS.get(&child) }.is_some()
}

/// Whether process `tgid` is traced: never the receiver; then the optional pid filter.
#[inline(always)]
pub fn traced(tgid: u32) -> bool {
    if tgid == read_global(&SELF_PID) {
        return false;
    }
    if read_global(&PID_FILTER_ACTIVE) == 0 {
        return true;
    }
    // SAFETY: the value is a plain u8 copied out at once.
    match unsafe { PIDS.get(&tgid) }.copied() {
        Some(PID_EXCLUDE) => false,
        Some(PID_INCLUDE) => true,
        _ => read_global(&FILTER_INCLUDE_ONLY) == 0,
    }
}

/// Adds `delta` (wrapping) to a u32 array slot, atomically.
#[inline(always)]
fn count(slot: Option<*mut u32>, delta: u32) {
    if let Some(slot) = slot {
        // SAFETY: array map values are 4-byte aligned and live as long as the map.
        unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(slot, delta) };
    }
}

/// The current thread's set in the stash table.
#[inline(always)]
fn arg_set(pid_tgid: u64) -> u32 {
    let tid = pid_tgid as u32;
    tid.wrapping_mul(0x9e37_79b1) >> 20 & (ARG_SETS - 1)
}

/// Compare-and-swap of an owner word; true when it held `old` and now holds `new`.
#[inline(always)]
fn owner_cas(word: *mut u64, old: u64, new: u64) -> bool {
    // SAFETY: array map values are 8-byte aligned and live as long as the map.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(word, old, new)
    }
    .1
}

/// Takes the current thread's stashed arguments (and frees their slot). One array read of the
/// set's four owner words when the thread stashed nothing.
#[inline(always)]
pub fn take_args(pid_tgid: u64) -> Option<SyscallArgs> {
    let set = arg_set(pid_tgid);
    let owners = ARG_OWNERS.get_ptr_mut(set)?;
    for way in 0..ARG_WAYS {
        // SAFETY: a live array value of ARG_WAYS words; `way` < ARG_WAYS.
        let word = unsafe { (owners as *mut u64).add(way as usize) };
        // SAFETY: as above; a plain read, confirmed by the compare-and-swap below.
        if unsafe { core::ptr::read_volatile(word) } != pid_tgid {
            continue;
        }
        let value = ARG_VALUES.get_ptr_mut(set * ARG_WAYS + way)?;
        // SAFETY: a live array value; copied before the slot is released. If another thread
        // took the slot over meanwhile, the swap below fails and the copy is discarded.
        let args = unsafe { core::ptr::read_volatile(value) };
        return owner_cas(word, pid_tgid, 0).then_some(args);
    }
    None
}

/// Stashes arguments for the exit of the current thread's syscall: in the thread's own slot,
/// else a free one of its set, else (the set is full: threads blocked in long reads, or dead
/// ones) over another thread's, whose exit then finds nothing (counted as `args_map_full`).
#[inline(always)]
pub fn stash_args(pid_tgid: u64, args: &SyscallArgs) {
    let set = arg_set(pid_tgid);
    let Some(owners) = ARG_OWNERS.get_ptr_mut(set) else {
        return;
    };
    let mut pick = ARG_WAYS;
    let mut old = 0;
    for way in 0..ARG_WAYS {
        // SAFETY: a live array value of ARG_WAYS words; `way` < ARG_WAYS.
        let owner = unsafe { core::ptr::read_volatile((owners as *const u64).add(way as usize)) };
        if owner == pid_tgid || owner == 0 {
            pick = way;
            old = owner;
            break;
        }
    }
    if pick == ARG_WAYS {
        // Full: take over the slot this thread id maps to, unless it is being written.
        pick = (pid_tgid as u32) & (ARG_WAYS - 1);
        // SAFETY: as above.
        old = unsafe { core::ptr::read_volatile((owners as *const u64).add(pick as usize)) };
        if old & ARG_BUSY != 0 {
            crate::stats::bump(stat::DROP_ARGS_MAP_FULL);
            return;
        }
    }
    // SAFETY: as above; `pick` < ARG_WAYS.
    let word = unsafe { (owners as *mut u64).add(pick as usize) };
    if !owner_cas(word, old, pid_tgid | ARG_BUSY) {
        // Another thread of this set claimed it first: this stash is the one lost.
        crate::stats::bump(stat::DROP_ARGS_MAP_FULL);
        return;
    }
    if old != 0 && old != pid_tgid {
        // Another thread's stash was taken over: its exit finds nothing. Counted once, here.
        crate::stats::bump(stat::DROP_ARGS_MAP_FULL);
    }
    if let Some(value) = ARG_VALUES.get_ptr_mut(set * ARG_WAYS + pick) {
        // SAFETY: a live array value; ours while the busy bit is set.
        unsafe { core::ptr::write_volatile(value, *args) };
        owner_cas(word, pid_tgid | ARG_BUSY, pid_tgid);
    } else {
        owner_cas(word, pid_tgid | ARG_BUSY, 0);
    }
}

/// `FD_FILTER` slot of (pid, fd).
#[inline(always)]
fn fd_filter_slot(pid: u32, fd: u32) -> Option<*mut u32> {
    FD_FILTER.get_ptr_mut(ebpf_common::fd_slot(pid, fd) & read_global(&FD_FILTER_MASK))
}

/// False when (pid, fd) is certainly not in `CONNS`: one array read.
#[inline(always)]
pub fn maybe_tracked(pid: u32, fd: u32) -> bool {
    match fd_filter_slot(pid, fd) {
        // SAFETY: a live array slot, read once.
        Some(slot) => unsafe { core::ptr::read_volatile(slot) != 0 },
        None => true,
    }
}

/// `BPF_NOEXIST` / `BPF_EXIST` map update flags.
pub const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

/// Inserts a new `CONNS` entry (counted in `FD_FILTER`, before it becomes visible); with
/// `replace`, an existing entry for the key is overwritten instead (not counted again).
/// False when the map is full (counted in `STATS`), or the key exists and `!replace`.
#[inline(always)]
pub fn conn_insert(key: &ConnKey, state: &ConnState, replace: bool) -> bool {
    let slot = fd_filter_slot(key.pid, key.fd);
    count(slot, 1);
    if CONNS.insert(key, state, BPF_NOEXIST).is_ok() {
        return true;
    }
    count(slot, u32::MAX);
    if replace && CONNS.insert(key, state, BPF_EXIST).is_ok() {
        return true;
    }
    if replace {
        crate::stats::bump(stat::DROP_CONN_MAP_FULL);
    }
    false
}

/// Removes a `CONNS` entry; only the deleter that succeeds uncounts it.
#[inline(always)]
pub fn conn_remove(key: &ConnKey) {
    if CONNS.remove(key).is_ok() {
        count(fd_filter_slot(key.pid, key.fd), u32::MAX);
    }
}

/// Next kernel-assigned connection generation (never 0, never with the seeded bit).
#[inline(always)]
pub fn next_generation() -> u32 {
    let Some(slot) = GENERATION.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: array map values are 8-byte aligned and live as long as the map; the kernel
    // compiles this to an atomic fetch-add, so concurrent CPUs never get the same value.
    let prev = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(slot, 1) };
    let generation = ((prev + 1) as u32) & !ebpf_common::SEEDED_GENERATION_BIT;
    if generation == 0 { 1 } else { generation }
}

/// Reserves `n` consecutive kernel-assigned generations; returns the counter value before
/// them (see [`generation_in_block`]).
#[inline(always)]
pub fn next_generations(n: u32) -> u64 {
    let Some(slot) = GENERATION.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: as in `next_generation`.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(slot, u64::from(n)) }
}

/// The `i`-th generation of a block reserved by [`next_generations`] (never 0, never with the
/// seeded bit), the same value [`next_generation`] would have returned for it.
#[inline(always)]
pub fn generation_in_block(before: u64, i: u32) -> u32 {
    let generation = ((before + 1 + u64::from(i)) as u32) & !ebpf_common::SEEDED_GENERATION_BIT;
    if generation == 0 { 1 } else { generation }
}

/// Adds `n` to a stream position and returns the position before.
#[inline(always)]
pub fn advance(pos: *mut u64, n: u64) -> u64 {
    // SAFETY: `pos` points into a live CONNS value (8-byte aligned field of a #[repr(C)]
    // struct); atomic because threads of one process may share the socket.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(pos, n) }
}

// ---- Ring wakeups ----

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Output flags for a record of `len` bytes: no wakeup (user space drains on a timer) unless the
/// ring is more than a quarter full, then force one so a burst cannot overrun the timer.
#[inline(always)]
pub fn ring_flags(ring: &RingBuf, len: u64) -> u64 {
    let avail = ring.query(BPF_RB_AVAIL_DATA);
    let size = ring.query(BPF_RB_RING_SIZE);
    if avail + len > size / 4 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
