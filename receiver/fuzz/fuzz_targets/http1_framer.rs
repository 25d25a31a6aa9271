//! HTTP/1.x: arbitrary bytes in arbitrary chunking, both directions, both roles, through the
//! shared driver (`ebpf_receiver::protocol::chaos`, which documents the input layout).
//!
//! Every record also becomes a span that must pass `ebpf_receiver::span::schema`. Seeds (the
//! crash classes of peer agents): `receiver/fuzz/seeds/http1_framer/`.
//!
//! Run: `cargo xtask fuzz`, or `cargo +nightly-2026-05-20 fuzz run http1_framer
//! target/fuzz-corpus/http1_framer receiver/fuzz/seeds/http1_framer -- -max_total_time=60`
#![no_main]

use ebpf_receiver::model::Protocol;
use ebpf_receiver::protocol::chaos;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chaos::drive(Protocol::Http1, data);
});
