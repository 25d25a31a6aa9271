//! Kernel side of ebpf-receiver: syscall tracepoints that track sockets, infer their protocol
//! from the first bytes of a message, and forward only supported traffic to user space.
//!
//! Every program reads like a procedure: filter first (self pid, pid filter, tracked fd), do the
//! one thing, count every early return that loses data in `STATS`.
//!
//! - `syscalls`: connection lifecycle (socket, connect, accept, accept4, close, and
//!   `sched_process_fork`: a forked child inherits its parent's sockets) → `CONNS`.
//! - `data`: the read/write family on fds present in `CONNS` → `DATA` ring.
//! - `infer`: the shared inference (`ebpf_common::infer`, one function per protocol of the
//!   closed `proto` set), filtered by the protocols switched on.
//! - `maps`: every map and runtime knob (globals set by the loader).
//! - `stats`: the per-CPU counters.
#![no_std]
#![no_main]
// `AtomicU64::fetch_add` is not available for bpfel-unknown-none; the intrinsic compiles to
// the BPF atomic fetch-add instruction.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod data;
mod floor;
mod infer;
mod maps;
mod stats;
mod syscalls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: BPF programs cannot panic at run time; any reachable panic path would fail
    // verification (no such helper), so the code is written without one.
    unsafe { core::hint::unreachable_unchecked() }
}

/// The probe-read and ring-buffer helpers are GPL-only; the kernel requires a GPL-compatible
/// license string to let the programs call them.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
