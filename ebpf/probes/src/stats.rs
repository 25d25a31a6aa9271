//! Per-CPU counters indexed by `ebpf_common::stat::*`; user space sums them over CPUs.

use crate::maps::STATS;

/// Adds `n` to counter `idx` of this CPU.
#[inline(always)]
pub fn add(idx: u32, n: u64) {
    if let Some(slot) = STATS.get_ptr_mut(idx) {
        // SAFETY: per-CPU array slot, valid for the program's run; only this CPU writes it.
        unsafe { *slot += n };
    }
}

/// Adds one to counter `idx` of this CPU.
#[inline(always)]
pub fn bump(idx: u32) {
    add(idx, 1);
}
