//! The SQL sanitiser in both dialects (MySQL and PostgreSQL quoting rules): arbitrary bytes
//! whole and as a truncated capture, bounded output, and the fail-closed canary property, in
//! the shared driver (`ebpf_receiver::protocol::chaos::drive_sql`, which documents the input
//! layout). Seeds: `receiver/fuzz/seeds/sql_sanitizer/`.
//!
//! Run: `cargo xtask fuzz`, or `cargo +nightly-2026-05-20 fuzz run sql_sanitizer
//! target/fuzz-corpus/sql_sanitizer receiver/fuzz/seeds/sql_sanitizer -- -max_total_time=60`
#![no_main]

use ebpf_receiver::protocol::chaos;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chaos::drive_sql(data);
});
