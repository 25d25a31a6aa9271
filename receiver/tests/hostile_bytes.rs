//! R2 "Hostile bytes": every parser (MySQL, PostgreSQL, Redis, HTTP/1.1, DNS over TCP and UDP;
//! client and server role) gets random streams and mutated real captures in random chunkings
//! with random gaps, and must hold, for every input:
//! - **0 panics**;
//! - **bounded memory**: never more than `max_buffer_bytes` buffered per direction, and a peak
//!   heap (this binary counts every allocation of the thread running the case) under
//!   [`HEAP_BOUND`], whatever the input's length;
//! - **determinism**: the same input gives the same records and counters;
//! - **every span passes the schema** (`ebpf_receiver::span::schema`): no negative duration, no
//!   attribute over its cap, a name from a bounded set, no key outside the conventions.
//!
//! Counts: `HOSTILE_CASES` random and as many mutated streams per parser (default 500 each,
//! about a second per parser in a debug build). The promise's figure is 100,000 + 100,000 per
//! parser: `HOSTILE_CASES=100000 cargo test --release -p ebpf-receiver --test hostile_bytes --
//! --nocapture` (or `cargo xtask fuzz`, which runs it before the fuzz targets).
//! `HOSTILE_SEED` changes the generator's seed (default fixed, so a run is reproducible); a
//! failure names its case, and `HOSTILE_ONLY=<class>:<index>` runs that case alone.
//!
//! Also here: the crash classes of peer agents (`hostile/seeds.rs`) as regression tests, the
//! committed seed corpus of the fuzz targets (`receiver/fuzz/seeds/`, rewritten with
//! `UPDATE_SEEDS=1`) replayed through each target's driver, and long streams against the
//! memory bound.

mod hostile;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ebpf_receiver::model::{Direction, Protocol, Role};
use ebpf_receiver::protocol::ParserLimits;
use ebpf_receiver::protocol::chaos;

use hostile::seeds::{self, Seed};
use hostile::{Case, Counting, Message, Outcome, Rng, Session, Step};

#[global_allocator]
static ALLOC: Counting = Counting;

/// The limits of every parser here: buffers of one syscall's largest capture (16 KiB, so the
/// caps are reached: a tenth of the 256 KiB default) and the default query cap.
const LIMITS: ParserLimits = ParserLimits {
    max_buffer_bytes: 16 * 1024,
    max_queued_frames: 32,
    max_query_text_bytes: 2048,
};

/// Most heap one parser may hold (plus the transient span checks), whatever the input: both
/// buffers with their growth slack (2 × 2 × 16 KiB), full frame queues and the stitchers'
/// bounded state (statement caches, pending queries) with room to spare (the largest peak
/// measured is about 140 KiB). Inputs run to 64 KiB and the long-stream test to 1 MiB (debug)
/// or 8 MiB (release), so a parser that kept its input would exceed it.
const HEAP_BOUND: usize = 512 << 10;

/// Cases per class and parser by default: about a second per parser in a debug build.
const DEFAULT_CASES: usize = 500;
const DEFAULT_SEED: u64 = 0x05EE_D0FB_17E5;

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Random,
    Mutated,
}

impl Class {
    fn id(self) -> u64 {
        match self {
            Class::Random => 1,
            Class::Mutated => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Random => "random",
            Class::Mutated => "mutated",
        }
    }
}

/// Figures of one class of one parser.
#[derive(Default)]
struct Tally {
    cases: usize,
    executions: usize,
    bytes: usize,
    records: u64,
    invalid: u64,
    resyncs: u64,
    overflow: u64,
    max_buffered: usize,
    max_heap: usize,
    slowest: Duration,
    slowest_bytes: usize,
    by_mode: [usize; 4],
}

/// The pool mutated streams start from: every session of the protocol's captures, and its
/// crash-class seeds.
fn pool(protocol: Protocol) -> Vec<Session> {
    let mut pool = hostile::sessions(protocol);
    for s in seeds::framer_seeds()
        .into_iter()
        .filter(|s| s.protocol == protocol)
    {
        pool.push(Session {
            name: s.name.to_string(),
            datagram: s.datagram,
            messages: s
                .messages
                .into_iter()
                .map(|(from_client, bytes)| Message { from_client, bytes })
                .collect(),
        });
    }
    pool
}

/// Runs `case` twice under `catch_unwind`; `Err` describes what failed.
fn check_case(protocol: Protocol, case: &Case) -> Result<Outcome, String> {
    let first = catch_unwind(AssertUnwindSafe(|| hostile::run(protocol, case, LIMITS)))
        .map_err(|p| format!("panic: {}", panic_text(&p)))?;
    let again = catch_unwind(AssertUnwindSafe(|| hostile::run(protocol, case, LIMITS)))
        .map_err(|p| format!("panic on the second run: {}", panic_text(&p)))?;
    if let Some(v) = first.violations.first() {
        return Err(format!("span schema: {v}"));
    }
    if first.max_buffered > 2 * LIMITS.max_buffer_bytes {
        return Err(format!(
            "{} bytes buffered, over 2 × {}",
            first.max_buffered, LIMITS.max_buffer_bytes
        ));
    }
    if first.peak_heap > HEAP_BOUND {
        return Err(format!("peak heap {} over {HEAP_BOUND}", first.peak_heap));
    }
    if (first.digest, first.records, &first.stats) != (again.digest, again.records, &again.stats) {
        return Err(format!(
            "not deterministic: {} records {:?} then {} records {:?}",
            first.records, first.stats, again.records, again.stats
        ));
    }
    Ok(first)
}

/// A failure message cut to a readable length (spans and records can be long).
fn short(e: &str) -> String {
    const MAX: usize = 1500;
    if e.len() <= MAX {
        return e.to_string();
    }
    format!("{}…", &e[..e.floor_char_boundary(MAX)])
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Where a failing case is written for inspection.
fn failure_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-failures")
}

fn property(protocol: Protocol) {
    let cases = env_num("HOSTILE_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    let seed = env_num("HOSTILE_SEED").unwrap_or(DEFAULT_SEED);
    let only = std::env::var("HOSTILE_ONLY").ok();
    let pool = pool(protocol);
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let mut tallies = Vec::new();
    for class in [Class::Random, Class::Mutated] {
        let mut t = Tally::default();
        for i in 0..cases {
            if let Some(o) = &only
                && *o != format!("{}:{i}", class.name())
            {
                continue;
            }
            let mut rng = Rng::for_case(seed, protocol, class.id(), i as u64);
            let case = match class {
                Class::Random => hostile::random_case(&mut rng, protocol),
                Class::Mutated => hostile::mutated_case(&mut rng, protocol, &pool),
            };
            let t0 = Instant::now();
            let result = check_case(protocol, &case);
            let took = t0.elapsed() / 2;
            t.cases += 1;
            t.executions += 2;
            t.bytes += case.bytes();
            t.by_mode[usize::from(case.role == Role::Server) | usize::from(case.datagram) << 1] +=
                1;
            if took > t.slowest {
                t.slowest = took;
                t.slowest_bytes = case.bytes();
            }
            match result {
                Ok(o) => {
                    t.records += o.records;
                    t.invalid += o.stats.0[1];
                    t.resyncs += o.stats.0[2];
                    t.overflow += o.stats.0[7];
                    t.max_buffered = t.max_buffered.max(o.max_buffered);
                    t.max_heap = t.max_heap.max(o.peak_heap);
                }
                Err(e) => {
                    let id = format!("{}:{i}", class.name());
                    let _ = std::fs::create_dir_all(failure_dir());
                    let file = failure_dir().join(format!(
                        "{}-{}-{i}.txt",
                        protocol.as_str(),
                        class.name()
                    ));
                    let _ = std::fs::write(&file, format!("{e}\n\n{case:#?}\n"));
                    failures.push(format!(
                        "{protocol:?} case {id} from {} (HOSTILE_SEED={seed:#x} HOSTILE_ONLY={id}; input in {}): {}",
                        case.origin,
                        file.display(),
                        short(&e)
                    ));
                }
            }
            if failures.len() >= 5 {
                break;
            }
        }
        tallies.push((class, t));
    }
    let elapsed = started.elapsed();
    let executions: usize = tallies.iter().map(|(_, t)| t.executions).sum();
    println!(
        "[hostile] {:<8} {} executions in {:.2} s ({:.0}/s), seed {seed:#x}, limits: buffer {} B/direction, heap bound {} KiB",
        protocol.as_str(),
        executions,
        elapsed.as_secs_f64(),
        executions as f64 / elapsed.as_secs_f64().max(1e-9),
        LIMITS.max_buffer_bytes,
        HEAP_BOUND / 1024,
    );
    for (class, t) in &tallies {
        println!(
            "[hostile] {:<8} {:<7} {:>7} streams (client/server/client-udp/server-udp {:?}), {:>6.1} MiB, {:>6} spans checked, invalid {}, resyncs {}, overflow {} B, max buffered {} B, peak heap {:.1} KiB, slowest {:.2} ms ({} B)",
            protocol.as_str(),
            class.name(),
            t.cases,
            t.by_mode,
            t.bytes as f64 / (1 << 20) as f64,
            t.records,
            t.invalid,
            t.resyncs,
            t.overflow,
            t.max_buffered,
            t.max_heap as f64 / 1024.0,
            t.slowest.as_secs_f64() * 1e3,
            t.slowest_bytes,
        );
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn mysql_survives_hostile_streams() {
    property(Protocol::Mysql);
}

#[test]
fn postgres_survives_hostile_streams() {
    property(Protocol::Postgres);
}

#[test]
fn redis_survives_hostile_streams() {
    property(Protocol::Redis);
}

#[test]
fn http1_survives_hostile_streams() {
    property(Protocol::Http1);
}

#[test]
fn dns_survives_hostile_streams() {
    property(Protocol::Dns);
}

// ---- crash classes ------------------------------------------------------------------------------

/// A seed as one case: each message one syscall (or datagram), or cut in `piece`-byte chunks.
fn seed_case(seed: &Seed, role: Role, piece: usize) -> Case {
    let mut steps = Vec::new();
    let (mut egress, mut ingress) = (0u64, 0u64);
    for (from_client, bytes) in &seed.messages {
        let direction = if *from_client == (role == Role::Client) {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let pos = match direction {
            Direction::Egress => &mut egress,
            Direction::Ingress => &mut ingress,
        };
        let pieces: Vec<&[u8]> = if seed.datagram {
            vec![bytes]
        } else {
            bytes.chunks(piece.max(1)).collect()
        };
        for p in pieces {
            steps.push(Step {
                direction,
                pos: *pos,
                bytes: p.to_vec(),
                len: p.len() as u32,
            });
            *pos += p.len() as u64;
        }
    }
    Case {
        origin: seed.name.to_string(),
        role,
        datagram: seed.datagram,
        steps,
    }
}

/// Every crash class, both roles, whole and in pieces of 1 (seeds up to 8 KiB; 61 for longer
/// ones), 7 and 4096 bytes: no panic, within the bounds, deterministic, every span within the
/// schema.
#[test]
fn crash_classes_of_peer_agents_hold() {
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut spans = 0;
    for seed in seeds::framer_seeds() {
        let size: usize = seed.messages.iter().map(|(_, b)| b.len()).sum();
        let smallest = if size <= 8192 { 1 } else { 61 };
        for role in [Role::Client, Role::Server] {
            for piece in [usize::MAX, smallest, 7, 4096] {
                runs += 1;
                match check_case(seed.protocol, &seed_case(&seed, role, piece)) {
                    Ok(o) => spans += o.records,
                    Err(e) => failures.push(format!(
                        "{} as {role:?} in pieces of {piece}: {}",
                        seed.name,
                        short(&e)
                    )),
                }
            }
        }
    }
    println!("[hostile] crash classes: {runs} runs, {spans} spans checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

/// The committed seed corpus is what `hostile/seeds.rs` writes (`UPDATE_SEEDS=1` rewrites it).
#[test]
fn seed_corpus_is_committed() {
    let update = std::env::var_os("UPDATE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (target, name, bytes) in seeds::corpus() {
        let path = seeds_dir().join(target).join(&name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seed files missing or stale (run with UPDATE_SEEDS=1):\n{}",
        stale.join("\n")
    );
}

/// Every file of every target's seed folder (the crash classes, and any crash input a fuzz run
/// found and was committed there) through that target's driver: each is a regression test.
#[test]
fn every_committed_seed_passes_its_fuzz_target() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let mut runs = 0;
    for target in chaos::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{}\"", target.name)),
            "fuzz target {} is not a [[bin]] of receiver/fuzz/Cargo.toml",
            target.name
        );
        let dir = seeds_dir().join(target.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if let Err(p) = catch_unwind(|| (target.run)(&data)) {
                panic!("{}: {}", f.display(), panic_text(&p));
            }
            runs += 1;
        }
    }
    println!("[hostile] seed corpus: {runs} inputs replayed through their fuzz targets");
}

// ---- targeted regressions -----------------------------------------------------------------------

/// A 16 MiB MySQL query (a 0xFFFFFF packet and its continuation) captured only in part: the
/// stream skips it by length, keeps within its buffer, and the next query is a span of its own.
#[test]
fn mysql_16_mib_multi_packet_is_skipped_by_length() {
    let mut first = vec![0xff, 0xff, 0xff, 0x00, 0x03];
    first.extend_from_slice(b"SELECT '");
    first.resize(ebpf_common::MAX_CAPTURE, b'x');
    let mut steps = Vec::new();
    // The kernel copied 16 KiB of a 16 MiB write.
    steps.push(Step {
        direction: Direction::Egress,
        pos: 0,
        bytes: first,
        len: 0xff_ffff + 4,
    });
    let cont = [&[0x04u8, 0x00, 0x00, 0x01][..], b"xx';"].concat();
    let next = [&[0x09u8, 0x00, 0x00, 0x00, 0x03][..], b"SELECT 1"].concat();
    let mut pos = 0xff_ffff + 4;
    for b in [cont, next.clone()] {
        steps.push(Step {
            direction: Direction::Egress,
            pos,
            bytes: b.clone(),
            len: b.len() as u32,
        });
        pos += b.len() as u64;
    }
    let ok = [
        0x07u8, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
    ];
    steps.insert(
        2,
        Step {
            direction: Direction::Ingress,
            pos: 0,
            bytes: ok.to_vec(),
            len: ok.len() as u32,
        },
    );
    steps.push(Step {
        direction: Direction::Ingress,
        pos: ok.len() as u64,
        bytes: ok.to_vec(),
        len: ok.len() as u32,
    });
    let case = Case {
        origin: "16 MiB query".into(),
        role: Role::Client,
        datagram: false,
        steps,
    };
    let o = check_case(Protocol::Mysql, &case).unwrap();
    assert!(o.max_buffered <= 2 * LIMITS.max_buffer_bytes);
    assert_eq!(o.records, 2, "the big query and the next one: {o:?}");
}

/// Streams of 1 MiB (debug) or 8 MiB (release) keep the heap under the same bound as 64 KiB
/// ones: the longest real
/// session of each protocol replayed over and over on one connection (valid traffic: the
/// stitchers' state must not grow with the exchanges), and a run of random and mutated
/// streams back to back.
#[test]
fn long_streams_stay_within_the_memory_bound() {
    const LONG: usize = if cfg!(debug_assertions) {
        1 << 20
    } else {
        8 << 20
    };
    let mut figures = Vec::new();
    for &protocol in Protocol::ALL {
        let pool = pool(protocol);
        let longest = hostile::sessions(protocol)
            .into_iter()
            .max_by_key(|s| s.messages.iter().map(|m| m.bytes.len()).sum::<usize>())
            .unwrap();
        let size: usize = longest.messages.iter().map(|m| m.bytes.len()).sum();
        for (k, role) in [Role::Client, Role::Server].into_iter().enumerate() {
            let replay = hostile::replay_case(&longest, role, LONG.div_ceil(size.max(1)));
            let mut rng = Rng::new(DEFAULT_SEED ^ (protocol.index() * 2 + k) as u64);
            let mixed = mixed_case(&mut rng, protocol, &pool, role, LONG);
            for case in [replay, mixed] {
                let t0 = Instant::now();
                let o = check_case(protocol, &case).unwrap_or_else(|e| {
                    panic!("{protocol:?} {role:?} {}: {}", case.origin, short(&e))
                });
                figures.push(format!(
                    "{} {role:?} {}: {:.1} MiB in {:.2} s, {} spans, max buffered {} B, peak heap {:.1} KiB",
                    protocol.as_str(),
                    case.origin,
                    case.bytes() as f64 / (1 << 20) as f64,
                    t0.elapsed().as_secs_f64() / 2.0,
                    o.records,
                    o.max_buffered,
                    o.peak_heap as f64 / 1024.0
                ));
            }
        }
    }
    for f in figures {
        println!("[hostile] long stream {f}");
    }
}

/// Random and mutated streams back to back on one connection of `role`, to `bytes` bytes.
fn mixed_case(
    rng: &mut Rng,
    protocol: Protocol,
    pool: &[Session],
    role: Role,
    bytes: usize,
) -> Case {
    let mut steps: Vec<Step> = Vec::new();
    let mut made = 0usize;
    let mut datagram = None;
    let (mut egress, mut ingress) = (0u64, 0u64);
    while made < bytes {
        let mut case = if rng.chance(1, 4) {
            hostile::random_case(rng, protocol)
        } else {
            hostile::mutated_case(rng, protocol, pool)
        };
        if *datagram.get_or_insert(case.datagram) != case.datagram {
            continue;
        }
        // Positions continue per direction; the case's own role decides its directions, so
        // flip them when it differs from this connection's.
        let (base_e, base_i) = (egress, ingress);
        for s in &mut case.steps {
            if case.role != role {
                s.direction = match s.direction {
                    Direction::Egress => Direction::Ingress,
                    Direction::Ingress => Direction::Egress,
                };
            }
            let (base, end) = match s.direction {
                Direction::Egress => (base_e, &mut egress),
                Direction::Ingress => (base_i, &mut ingress),
            };
            s.pos += base;
            *end = (*end).max(s.pos + u64::from(s.len));
            made += s.bytes.len();
        }
        steps.extend(case.steps);
    }
    Case {
        origin: "random and mutated streams".into(),
        role,
        datagram: datagram.unwrap_or(false),
        steps,
    }
}
