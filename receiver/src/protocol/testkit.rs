//! Test support shared by every protocol's tests: golden files and captured streams.
//!
//! A capture (`<proto>/testdata/*.bin`, written by that folder's `capture.py`) is a sequence of
//! records `[dir: u8 ('C' client, 'S' server)][ts_ns: u64 LE][len: u32 LE][len bytes]`, one per
//! syscall the capture saw. A golden file is the records a replay produced, rendered as text by
//! the protocol's own `render`, plus one line of parser counters; `UPDATE_GOLDEN=1` rewrites it
//! (review the diff: a golden file is a claim, not a snapshot).

use std::fmt::Write as _;
use std::path::Path;

use crate::protocol::ParseStats;

/// The records of a capture file, as (direction byte, timestamp, bytes).
pub fn capture_records(path: &Path) -> Vec<(u8, u64, Vec<u8>)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut recs = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let dir = data[at];
        let ts = u64::from_le_bytes(data[at + 1..at + 9].try_into().unwrap());
        let n = u32::from_le_bytes(data[at + 9..at + 13].try_into().unwrap()) as usize;
        recs.push((dir, ts, data[at + 13..at + 13 + n].to_vec()));
        at += 13 + n;
    }
    recs
}

/// Rendered records and the parser's counters, as a golden file holds them.
pub fn golden_text(lines: &[String], stats: &ParseStats) -> String {
    let mut text = lines.join("\n");
    let _ = write!(
        text,
        "\n# stats: frames={} records={} invalid={} resyncs={} bytes_lost={} unmatched_requests={} unmatched_responses={}\n",
        stats.frames,
        stats.records,
        stats.invalid,
        stats.resyncs,
        stats.bytes_lost,
        stats.unmatched_requests,
        stats.unmatched_responses
    );
    text
}

/// Compares `text` with the golden file (rewriting it first under `UPDATE_GOLDEN=1`), and
/// checks that none of `secrets` (canaries the capture carries) reached a record.
pub fn check_golden(golden: &Path, text: &str, secrets: &[&str]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, text).unwrap();
    }
    let want = std::fs::read_to_string(golden)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", golden.display()));
    assert_eq!(text, want, "{}", golden.display());
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {}", golden.display());
    }
}

/// Splits `bytes` at the given cut points (taken modulo the length, sorted, deduplicated).
pub fn split_at_points<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        if p > prev {
            out.push(&bytes[prev..p]);
            prev = p;
        }
    }
    out
}
