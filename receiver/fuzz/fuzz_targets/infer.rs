//! The protocol inference shared by the kernel programs and user space
//! (`ebpf_common::infer`): arbitrary first bytes, socket types, role hints, `seen` and `total`,
//! in the shared driver (`ebpf_receiver::protocol::chaos::drive_infer`, which documents the
//! input layout and the properties). Seeds: `receiver/fuzz/seeds/infer/`.
//!
//! Run: `cargo xtask fuzz`, or `cargo +nightly-2026-05-20 fuzz run infer target/fuzz-corpus/infer
//! receiver/fuzz/seeds/infer -- -max_total_time=60`
#![no_main]

use ebpf_receiver::protocol::chaos;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chaos::drive_infer(data);
});
