//! In-kernel protocol inference: the shared implementation (`ebpf_common::infer`, also run by
//! user space when `ebpf.kernel_inference` is false), filtered by the protocols switched on in
//! the configuration.

pub use ebpf_common::infer::{Inferred, Message, glues};

/// [`ebpf_common::infer::infer`]; protocols switched off in the configuration are never
/// reported (their connections are given up like unknown traffic).
#[inline(always)]
pub fn infer(msg: &Message<'_>) -> Option<Inferred> {
    ebpf_common::infer::infer(msg).filter(|f| crate::maps::protocol_enabled(f.protocol))
}
