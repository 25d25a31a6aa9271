//! Empty programs: the floor of any syscall-tracepoint design, measured by `bpf_cost` in the
//! same run as the real programs. Never attached by the receiver.
//!
//! - `floor_tp`: a classic tracepoint program, attached to every tracepoint the receiver uses.
//! - `floor_raw_*`: raw tracepoints `sys_enter` / `sys_exit` (fire on every syscall).
//! - `floor_btf_*`: the same as BTF-typed raw tracepoints (`tp_btf`).
//! - `floor_btf_filter_*`: `tp_btf` programs running the filter a raw-tracepoint design would
//!   need (see `bpf_cost`, which compares the two designs).

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

#[tracepoint]
pub fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_raw_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_raw_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_enter")]
pub fn floor_btf_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn floor_btf_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The raw-tracepoint design's filter, for the comparison with the per-syscall tracepoints the
/// receiver uses: the syscall's kind from its number, then the tracked-fd filter on its first
/// argument. What every untracked fd would cost in that design (the programs stop here).
#[btf_tracepoint(function = "sys_enter")]
pub fn floor_btf_filter_enter(ctx: BtfTracePointContext) -> i32 {
    let nr: u64 = ctx.arg(1);
    let Some(_k) = crate::maps::syscall_kind(nr) else {
        return 0;
    };
    let regs: *const u8 = ctx.arg(0);
    let fd = crate::maps::reg_arg(regs, 0) as u32;
    let (_, tgid) = crate::maps::current();
    if !crate::maps::maybe_tracked(tgid, fd) {
        return 0;
    }
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn floor_btf_filter_exit(ctx: BtfTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let Some(_k) = crate::maps::syscall_kind(crate::maps::reg_nr(regs)) else {
        return 0;
    };
    let fd = crate::maps::reg_exit_arg0(regs) as u32;
    let (_, tgid) = crate::maps::current();
    if !crate::maps::maybe_tracked(tgid, fd) {
        return 0;
    }
    0
}
