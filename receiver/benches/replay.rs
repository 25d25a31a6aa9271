//! Replay benchmark: recorded event streams (`receiver/testdata/replay/*.rec`, made with
//! `ebpf-receiver --record-events`) through everything the receiver does in user space except
//! the kernel and the network: recording decode → tracker → framers and stitchers → records →
//! spans → OTLP `ExportTraceServiceRequest` bytes (optionally gzip, as `exporter.compression:
//! gzip` would).
//!
//! ```text
//! cargo bench -p ebpf-receiver --bench replay -- [FILE...] [--passes N] [--gzip] [--callgrind]
//! ```
//!
//! Each file is replayed `--passes` times through one long-lived pipeline (connection ids are
//! renamed per pass so every pass opens new connections, as a real stream would); the first
//! pass warms up and is not measured. Figures per file: ns per event and per span (thread CPU
//! time), spans/s per core, heap allocations per span (a counting global allocator), request
//! bytes per span. `--callgrind` runs one warm-up and one measured pass inside `measured_pass`,
//! for `valgrind --tool=callgrind --toggle-collect='*measured_pass*'` (instruction counts are
//! stable on a shared VM where time is not); `cargo xtask bench replay --callgrind` does that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ebpf_receiver::bpf::KernelEvent;
use ebpf_receiver::config::ExporterConfig;
use ebpf_receiver::emit::Emitter;
use ebpf_receiver::export::Offline;
use ebpf_receiver::model::ConnId;
use ebpf_receiver::protocol::ParserLimits;
use ebpf_receiver::record::ConnRecord;
use ebpf_receiver::recording::{Item, Reader};
use ebpf_receiver::telemetry::Metrics;
use ebpf_receiver::tracker::socket::SocketTuple;
use ebpf_receiver::tracker::{Tracker, TrackerSettings, WallClock};

/// Counts every allocation and reallocation of the process.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One replay step, prepared once from the recording.
enum Step<'a> {
    /// The tuple of a connection, given to the tracker just before its first event (the live
    /// tracker resolved it from `/proc` at that moment).
    Preload(u32, u32, SocketTuple),
    Event(KernelEvent<'a>),
    EndBatch,
    Sweep(u64),
}

fn steps(items: Vec<Item<'_>>) -> Vec<Step<'_>> {
    let mut tuples: std::collections::HashMap<ConnId, SocketTuple> = Default::default();
    for it in &items {
        if let Item::Tuple(id, t) = it {
            tuples.entry(*id).or_insert_with(|| t.clone());
        }
    }
    let mut out = Vec::with_capacity(items.len() + tuples.len());
    for it in items {
        match it {
            Item::Tuple(..) => {}
            Item::Event(ev) => {
                let id = conn_of(&ev);
                if let Some(t) = tuples.remove(&id) {
                    out.push(Step::Preload(id.pid, id.fd, t));
                }
                out.push(Step::Event(ev));
            }
            Item::EndBatch => out.push(Step::EndBatch),
            Item::Sweep(now) => out.push(Step::Sweep(now)),
        }
    }
    out
}

fn conn_of(ev: &KernelEvent<'_>) -> ConnId {
    match ev {
        KernelEvent::Open(o) => o.conn,
        KernelEvent::Close(c) => c.conn,
        KernelEvent::Data(d) => d.conn,
    }
}

/// Renames a connection for pass `pass` (keeps the "predates the receiver" top bit).
fn renamed(mut ev: KernelEvent<'_>, pass: u32) -> KernelEvent<'_> {
    let tag = (pass & 0x3ff) << 20;
    match &mut ev {
        KernelEvent::Open(o) => o.conn.generation ^= tag,
        KernelEvent::Close(c) => c.conn.generation ^= tag,
        KernelEvent::Data(d) => d.conn.generation ^= tag,
    }
    ev
}

/// The user-space pipeline of the receiver, minus the kernel and the network.
struct Pipeline {
    tracker: Tracker,
    emitter: Emitter,
    offline: Offline,
    records: Vec<ConnRecord>,
    gzip: bool,
    unsent_spans: usize,
    spans: u64,
    requests: u64,
    request_bytes: u64,
}

impl Pipeline {
    fn new(gzip: bool) -> Pipeline {
        let metrics: &'static Metrics = Box::leak(Box::default());
        let cfg = ExporterConfig::default();
        let (offline, sender) = Offline::new(&cfg, metrics);
        let settings = TrackerSettings {
            max_connections: 65_536,
            idle_timeout_ns: 300_000_000_000,
            request_timeout_ns: 30_000_000_000,
            limits: ParserLimits::default(),
            proc_root: PathBuf::from("/nonexistent"),
            resolve: false,
            enabled_protocols: ebpf_receiver::model::Protocol::ALL.to_vec(),
            max_total_buffer_bytes: 128 << 20,
        };
        Pipeline {
            tracker: Tracker::new(settings, WallClock::new()),
            emitter: Emitter::new("replay-host".into(), Vec::new(), sender),
            offline,
            records: Vec::with_capacity(1024),
            gzip,
            unsent_spans: 0,
            spans: 0,
            requests: 0,
            request_bytes: 0,
        }
    }

    fn emit(&mut self) {
        let n = self.records.len();
        self.spans += n as u64;
        self.unsent_spans += n;
        self.emitter.emit(&mut self.records);
        if self.unsent_spans >= 512 {
            self.pump();
        }
    }

    fn pump(&mut self) {
        self.unsent_spans = 0;
        let gzip = self.gzip;
        let mut bytes = 0u64;
        self.requests += self.offline.pump(|req| {
            bytes += if gzip {
                use std::io::Write as _;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = enc.write_all(req);
                enc.finish().map_or(0, |v| v.len() as u64)
            } else {
                req.len() as u64
            };
        }) as u64;
        self.request_bytes += bytes;
    }

    fn pass(&mut self, steps: &[Step<'_>], pass: u32) -> u64 {
        let mut events = 0;
        for step in steps {
            match step {
                Step::Preload(pid, fd, t) => self.tracker.preload(*pid, *fd, t.clone()),
                Step::Event(ev) => {
                    events += 1;
                    self.tracker
                        .on_event(&renamed(*ev, pass), &mut self.records);
                }
                Step::EndBatch => {
                    self.tracker.end_batch(&mut self.records);
                    self.emit();
                }
                Step::Sweep(now) => {
                    self.tracker.sweep(*now, &mut self.records);
                    self.emit();
                }
            }
        }
        self.tracker.end_batch(&mut self.records);
        self.emit();
        self.pump();
        events
    }
}

#[inline(never)]
fn measured_pass(p: &mut Pipeline, steps: &[Step<'_>], pass: u32) -> u64 {
    p.pass(steps, pass)
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Figures {
    events: u64,
    spans: u64,
    cpu_ns: u64,
    allocs: u64,
    request_bytes: u64,
}

fn replay(path: &Path, passes: u32, gzip: bool, callgrind: bool) -> Result<Figures, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let items = Reader::new(&bytes)
        .and_then(Reader::items)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let steps = steps(items);
    let mut p = Pipeline::new(gzip);
    p.pass(&steps, 0);
    let passes = if callgrind { 1 } else { passes.max(1) };
    let (spans0, bytes0) = (p.spans, p.request_bytes);
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let t0 = thread_cpu_ns();
    let mut events = 0;
    for pass in 1..=passes {
        events += measured_pass(&mut p, &steps, pass);
    }
    let cpu_ns = thread_cpu_ns() - t0;
    Ok(Figures {
        events,
        spans: p.spans - spans0,
        cpu_ns,
        allocs: ALLOCS.load(Ordering::Relaxed) - allocs0,
        request_bytes: p.request_bytes - bytes0,
    })
}

fn default_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/replay");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rec"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn main() {
    let mut files = Vec::new();
    let mut passes = 20u32;
    let mut gzip = false;
    let mut callgrind = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--passes" => passes = args.next().and_then(|v| v.parse().ok()).unwrap_or(passes),
            "--gzip" => gzip = true,
            "--callgrind" => callgrind = true,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            f if !f.starts_with('-') => files.push(PathBuf::from(f)),
            other => {
                eprintln!("replay: unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    if files.is_empty() {
        files = default_files();
    }
    if files.is_empty() {
        eprintln!("replay: no recordings (receiver/testdata/replay/*.rec)");
        std::process::exit(2);
    }
    let mut total = Figures {
        events: 0,
        spans: 0,
        cpu_ns: 0,
        allocs: 0,
        request_bytes: 0,
    };
    for f in &files {
        match replay(f, passes, gzip, callgrind) {
            Ok(fig) => {
                print_line(&f.file_stem().unwrap_or_default().to_string_lossy(), &fig);
                total.events += fig.events;
                total.spans += fig.spans;
                total.cpu_ns += fig.cpu_ns;
                total.allocs += fig.allocs;
                total.request_bytes += fig.request_bytes;
            }
            Err(e) => {
                eprintln!("replay: {e}");
                std::process::exit(1);
            }
        }
    }
    print_line("total", &total);
}

fn print_line(name: &str, f: &Figures) {
    let per = |v: f64, n: u64| if n == 0 { 0.0 } else { v / n as f64 };
    println!(
        "[replay] {name:<14} events={} spans={} ns_per_event={:.0} ns_per_span={:.0} \
         spans_per_s_per_core={:.0} allocs_per_span={:.2} request_bytes_per_span={:.0}",
        f.events,
        f.spans,
        per(f.cpu_ns as f64, f.events),
        per(f.cpu_ns as f64, f.spans),
        per(f.spans as f64 * 1e9, f.cpu_ns).min(f64::MAX),
        per(f.allocs as f64, f.spans),
        per(f.request_bytes as f64, f.spans),
    );
}
