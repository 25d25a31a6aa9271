//! Arbitrary bytes through `sql::statement` in both dialects, whole and as a truncated capture,
//! then the fail-closed property: a canary literal placed after a prefix that lexes cleanly
//! never changes the output, whatever comes after it and wherever the capture is cut.
//!
//! Input layout: byte 0 picks the dialect (bit 0) and the text cap (bits 1..=7, × 4 bytes);
//! byte 1 picks the canary; byte 2 picks the cut; the rest is SQL, split at its first NUL into
//! the prefix before the canary and the suffix after it.
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run sql_sanitizer -- -max_total_time=60`
#![no_main]

use ebpf_receiver::protocol::sql::{self, Dialect, MAX_SUMMARY_BYTES, Statement};
use libfuzzer_sys::fuzz_target;

const S: &str = "s3cr3t-CANARY";
const T: &str = "q7xy2w-PLUMBO";

/// A literal (or comment) with `{}` where its content goes, the content, and a twin content of
/// the same length and shape.
const MYSQL: &[(&str, &str, &str)] = &[
    ("'{}'", S, T),
    ("\"{}\"", S, T),
    (r"'it\'s {}'", S, T),
    ("'it''s {}'", S, T),
    ("0x{}", "CAFEBABE", "DEADBEEF"),
    ("X'{}'", "CAFEBABE", "DEADBEEF"),
    ("0b{}", "101101", "010010"),
    ("b'{}'", "101101", "010010"),
    ("N'{}'", S, T),
    ("_utf8mb4'{}'", S, T),
    ("{}", "86753091", "12345678"),
    ("-{}", "4.25e7", "9.75e3"),
    ("/* {} */", S, T),
    ("/*! {} */", S, T),
    ("# {}\n", S, T),
    ("-- {}\n", S, T),
];

const POSTGRES: &[(&str, &str, &str)] = &[
    ("'{}'", S, T),
    ("'it''s {}'", S, T),
    (r"E'it\'s {}\\'", S, T),
    ("U&'{}'", S, T),
    ("$${}$$", S, T),
    ("$tag${}$tag$", S, T),
    ("$a$ $b$ {} $b$ $a$", S, T),
    ("B'{}'", "101101", "010010"),
    ("X'{}'", "CAFEBABE", "DEADBEEF"),
    ("0x{}", "CAFEBABE", "DEADBEEF"),
    ("{}", "86753091", "12345678"),
    ("-{}", "4.25e7", "9.75e3"),
    ("DATE '{}'", "2024-01-31", "1999-12-25"),
    ("/* /* {} */ still */", S, T),
    ("--{}\n", S, T),
];

fn check_bounds(st: &Statement, cap: usize) {
    if let Some(t) = &st.text {
        assert!(!t.is_empty() && t.len() <= cap, "{t:?} over {cap}");
    }
    if let Some(s) = &st.summary {
        assert!(s.len() <= MAX_SUMMARY_BYTES, "{s:?}");
    }
}

/// Some 3-byte piece of the secret shows in `out`.
fn leaks(out: &[u8], secret: &str) -> bool {
    secret
        .as_bytes()
        .windows(3)
        .any(|w| out.windows(3).any(|o| o == w))
}

fuzz_target!(|data: &[u8]| {
    let [ctl, pick, cut, rest @ ..] = data else {
        return;
    };
    let dialect = if ctl & 1 == 0 {
        Dialect::Mysql
    } else {
        Dialect::Postgres
    };
    let cap = usize::from(ctl >> 1) * 4;

    // Any bytes: no panic, bounded output.
    for truncated in [false, true] {
        check_bounds(&sql::statement(rest, truncated, dialect, cap), cap);
    }

    // A canary after a prefix that ends outside any literal or comment (the prefix alone
    // sanitises), separated by spaces so it starts a new token.
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (prefix, suffix) = rest.split_at(split);
    let prefix_text = String::from_utf8_lossy(prefix);
    if sql::sanitize(&prefix_text, dialect, usize::MAX).is_none() {
        return;
    }
    let table = match dialect {
        Dialect::Mysql => MYSQL,
        Dialect::Postgres => POSTGRES,
    };
    let Some(&(literal, secret, twin)) = table.get(usize::from(*pick) % table.len()) else {
        return;
    };
    let build = |content: &str| {
        let lit = literal.replace("{}", content);
        [prefix, b" ", lit.as_bytes(), b" ", suffix].concat()
    };
    let (a, b) = (build(secret), build(twin));
    // Cut anywhere from just before the canary to just after it, or keep the whole text.
    let at = prefix.len() + usize::from(*cut) % (literal.len() + secret.len() + 1);
    let context_leaks = leaks(prefix, secret) || leaks(suffix, secret);
    for (n, truncated) in [(a.len(), false), (at.min(a.len()), true)] {
        let (Some(x), Some(y)) = (a.get(..n), b.get(..n)) else {
            return;
        };
        let sx = sql::statement(x, truncated, dialect, cap);
        let sy = sql::statement(y, truncated, dialect, cap);
        assert_eq!(sx, sy, "the output depends on the canary's content");
        if !context_leaks {
            for part in [&sx.text, &sx.summary, &sx.use_schema]
                .into_iter()
                .flatten()
            {
                assert!(!leaks(part.as_bytes(), secret), "{part:?} leaks {secret:?}");
            }
        }
    }
});
