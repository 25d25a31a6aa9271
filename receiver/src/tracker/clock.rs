//! Kernel boot-time nanoseconds → wall clock.
//!
//! The kernel stamps events with `bpf_ktime_get_boot_ns` (CLOCK_BOOTTIME: monotonic, counts
//! suspend, never stepped). Spans need Unix time, and CLOCK_REALTIME can be stepped (`date -s`,
//! an NTP step, a VM resumed from a snapshot) or slewed at any moment. So the mapping is an
//! offset `realtime − boottime` that [`WallClock::anchor`] re-reads on every housekeeping tick
//! (once a second, `capture.rs`): after a step, spans are in the new wall-clock time within a
//! tick, and slew is followed continuously.
//!
//! Durations never depend on the offset: both ends of a span are converted with the same offset
//! at the same moment (`tracker::emit`), the conversion is monotonic (it saturates at both ends
//! of `u64` instead of wrapping), and the tracker clamps an end before its start. A wall clock
//! stepped back therefore moves the *starts* of later spans back, never their durations below 0.
//!
//! Anchoring reads CLOCK_BOOTTIME on both sides of CLOCK_REALTIME and takes the midpoint; a
//! bracket wider than [`ANCHOR_MAX_BRACKET_NS`] (the thread was preempted between the reads) is
//! read again, at most [`ANCHOR_TRIES`] times (bounded cost: at most 9 vDSO reads a second), and
//! the tightest bracket wins. A clock that cannot be read keeps the previous offset instead of
//! mapping spans to 1970. The clocks are read through [`ClockSource`] so tests can script them
//! (steps, failures) without touching the host's clock.

/// A clock [`WallClock`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockId {
    /// CLOCK_BOOTTIME, the kernel's event clock.
    Boot,
    /// CLOCK_REALTIME, Unix time.
    Real,
}

/// Where [`WallClock::anchor`] reads the clocks: [`SystemClocks`] in the receiver, a scripted
/// source in tests.
pub trait ClockSource: Send {
    /// The clock's reading in ns, `None` when it cannot be read.
    fn read_ns(&mut self, clock: ClockId) -> Option<i128>;
}

/// The host's clocks (`clock_gettime`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClocks;

impl ClockSource for SystemClocks {
    fn read_ns(&mut self, clock: ClockId) -> Option<i128> {
        read(match clock {
            ClockId::Boot => libc::CLOCK_BOOTTIME,
            ClockId::Real => libc::CLOCK_REALTIME,
        })
    }
}

/// A fixed offset: anchoring changes nothing (unit tests of other modules).
#[derive(Clone, Copy, Debug)]
struct FixedOffset(i128);

impl ClockSource for FixedOffset {
    fn read_ns(&mut self, clock: ClockId) -> Option<i128> {
        Some(match clock {
            ClockId::Boot => 0,
            ClockId::Real => self.0,
        })
    }
}

/// Reads of one anchoring at most (each is boot, real, boot).
pub const ANCHOR_TRIES: usize = 3;
/// A boot-time bracket around the realtime read up to this wide is taken at once (the midpoint
/// is then off by at most half of it); a wider one is read again.
pub const ANCHOR_MAX_BRACKET_NS: i128 = 20_000;

fn read(clock: libc::clockid_t) -> Option<i128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
}

/// CLOCK_BOOTTIME now, in ns (the kernel's event clock); 0 if it cannot be read.
pub fn boot_now_ns() -> u64 {
    read(libc::CLOCK_BOOTTIME)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// The boot-time → Unix-time mapping; see the module documentation.
pub struct WallClock {
    offset_ns: i128,
    source: Box<dyn ClockSource>,
    /// Anchorings that found no readable clock (the previous offset was kept).
    failed_anchors: u64,
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WallClock")
            .field("offset_ns", &self.offset_ns)
            .field("failed_anchors", &self.failed_anchors)
            .finish_non_exhaustive()
    }
}

impl WallClock {
    /// The host's clocks, anchored now.
    pub fn new() -> WallClock {
        WallClock::with_source(Box::new(SystemClocks))
    }

    /// Any clock source (tests script steps and failures), anchored now.
    pub fn with_source(source: Box<dyn ClockSource>) -> WallClock {
        let mut c = WallClock {
            offset_ns: 0,
            source,
            failed_anchors: 0,
        };
        c.anchor();
        c
    }

    /// A fixed offset that anchoring never changes, for tests.
    pub fn with_offset(offset_ns: i128) -> WallClock {
        WallClock::with_source(Box::new(FixedOffset(offset_ns)))
    }

    /// Re-reads the offset between the two clocks (see the module documentation). Returns
    /// false, keeping the previous offset, when no read succeeded.
    pub fn anchor(&mut self) -> bool {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..ANCHOR_TRIES {
            let b1 = self.source.read_ns(ClockId::Boot);
            let r = self.source.read_ns(ClockId::Real);
            let b2 = self.source.read_ns(ClockId::Boot);
            let (Some(b1), Some(r), Some(b2)) = (b1, r, b2) else {
                continue;
            };
            let width = b2 - b1;
            if width < 0 {
                // CLOCK_BOOTTIME never goes back; a source that does is not believed.
                continue;
            }
            let offset = r - (b1 + width / 2);
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, offset));
            }
            if width <= ANCHOR_MAX_BRACKET_NS {
                break;
            }
        }
        match best {
            Some((_, offset)) => {
                self.offset_ns = offset;
                true
            }
            None => {
                self.failed_anchors += 1;
                false
            }
        }
    }

    /// The current offset `realtime − boottime` in ns.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// Anchorings that could not read the clocks.
    pub fn failed_anchors(&self) -> u64 {
        self.failed_anchors
    }

    /// Unix-epoch ns of a boot-time ns stamp: monotonic in `boot_ns`, saturating at 0 and
    /// `u64::MAX`, so `to_unix_ns(end) >= to_unix_ns(start)` whenever `end >= start`.
    pub fn to_unix_ns(&self, boot_ns: u64) -> u64 {
        let unix = i128::from(boot_ns) + self.offset_ns;
        u64::try_from(unix.max(0)).unwrap_or(u64::MAX)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

/// A scripted pair of clocks for tests: every read advances both by `tick_ns` (time passes
/// while anchoring), [`step_real`](ScriptedClocks::step_real) steps the wall clock like
/// `date -s`, and reads can be made to fail. Clones share the same clocks.
#[cfg(test)]
#[derive(Clone, Debug)]
pub struct ScriptedClocks(std::sync::Arc<std::sync::Mutex<Scripted>>);

#[cfg(test)]
#[derive(Debug)]
pub struct Scripted {
    pub boot_ns: i128,
    pub real_ns: i128,
    pub tick_ns: i128,
    /// The next this many reads fail.
    pub failing_reads: u32,
}

#[cfg(test)]
impl ScriptedClocks {
    pub fn new(boot_ns: i128, real_ns: i128, tick_ns: i128) -> ScriptedClocks {
        ScriptedClocks(std::sync::Arc::new(std::sync::Mutex::new(Scripted {
            boot_ns,
            real_ns,
            tick_ns,
            failing_reads: 0,
        })))
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Scripted) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Steps the wall clock by `delta_ns` (negative: back); boot time is unaffected.
    pub fn step_real(&self, delta_ns: i128) {
        self.with(|s| s.real_ns += delta_ns);
    }

    /// Lets `ns` pass on both clocks.
    pub fn advance(&self, ns: i128) {
        self.with(|s| {
            s.boot_ns += ns;
            s.real_ns += ns;
        });
    }

    pub fn boot_ns(&self) -> u64 {
        self.with(|s| u64::try_from(s.boot_ns).unwrap_or(0))
    }

    pub fn real_ns(&self) -> i128 {
        self.with(|s| s.real_ns)
    }
}

#[cfg(test)]
impl ClockSource for ScriptedClocks {
    fn read_ns(&mut self, clock: ClockId) -> Option<i128> {
        self.with(|s| {
            if s.failing_reads > 0 {
                s.failing_reads -= 1;
                return None;
            }
            let v = match clock {
                ClockId::Boot => s.boot_ns,
                ClockId::Real => s.real_ns,
            };
            s.boot_ns += s.tick_ns;
            s.real_ns += s.tick_ns;
            Some(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR_NS: i128 = 3_600_000_000_000;
    const START_REAL: i128 = 1_700_000_000_000_000_000;

    #[test]
    fn boot_time_maps_close_to_system_time() {
        let c = WallClock::new();
        let unix = c.to_unix_ns(boot_now_ns());
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let diff = unix.abs_diff(sys);
        assert!(diff < 5_000_000, "wall clock off by {diff} ns");
    }

    #[test]
    fn order_is_preserved() {
        let c = WallClock::with_offset(-5);
        assert_eq!(c.to_unix_ns(3), 0, "saturates instead of wrapping");
        assert!(c.to_unix_ns(100) < c.to_unix_ns(101));
        let c = WallClock::with_offset(i128::from(u64::MAX));
        assert_eq!(c.to_unix_ns(7), u64::MAX, "saturates at the top too");
    }

    #[test]
    fn fixed_offset_survives_anchoring() {
        let mut c = WallClock::with_offset(1_000);
        assert!(c.anchor());
        assert_eq!(c.to_unix_ns(5), 1_005);
    }

    /// The mapping of "now" is within `tol` of the scripted wall clock.
    fn assert_maps_now(c: &WallClock, clocks: &ScriptedClocks, tol: u64, what: &str) {
        let got = c.to_unix_ns(clocks.boot_ns());
        let want = u64::try_from(clocks.real_ns()).unwrap_or(0);
        assert!(
            got.abs_diff(want) <= tol,
            "{what}: boot now maps to {got}, wall clock is {want} (off by {} ns)",
            got.abs_diff(want)
        );
    }

    #[test]
    fn re_anchors_after_a_wall_clock_step_forward_and_back() {
        let clocks = ScriptedClocks::new(5_000_000_000, START_REAL, 100);
        let mut c = WallClock::with_source(Box::new(clocks.clone()));
        assert_maps_now(&c, &clocks, 1_000, "initial anchor");
        let before = c.offset_ns();

        // `date -s` one hour ahead: until the next anchor spans keep the old mapping...
        clocks.advance(1_000_000);
        clocks.step_real(HOUR_NS);
        let stale = c.to_unix_ns(clocks.boot_ns());
        assert!(
            u64::try_from(clocks.real_ns()).unwrap_or(0) - stale >= (HOUR_NS as u64) - 1_000,
            "no anchor yet, the mapping is the old one"
        );
        // ...and after it the new one, off by the read time only.
        assert!(c.anchor());
        assert_maps_now(&c, &clocks, 1_000, "after a step forward");
        assert!((c.offset_ns() - before - HOUR_NS).abs() <= 1_000);

        // Stepped back two hours (an hour before the start).
        clocks.advance(1_000_000);
        clocks.step_real(-2 * HOUR_NS);
        assert!(c.anchor());
        assert_maps_now(&c, &clocks, 1_000, "after a step back");
        assert!((c.offset_ns() - before + HOUR_NS).abs() <= 1_000);
    }

    #[test]
    fn a_span_that_straddles_a_step_keeps_its_duration() {
        let clocks = ScriptedClocks::new(5_000_000_000, START_REAL, 100);
        let mut c = WallClock::with_source(Box::new(clocks.clone()));
        for step in [HOUR_NS, -HOUR_NS, -10 * 8_766 * HOUR_NS, 30_000_000_000] {
            let start = clocks.boot_ns();
            clocks.advance(2_000_000);
            clocks.step_real(step);
            assert!(c.anchor());
            let end = clocks.boot_ns();
            // Both ends are converted at emission, with the offset of that moment.
            let (s, e) = (c.to_unix_ns(start), c.to_unix_ns(end));
            assert!(e >= s, "negative duration after a step of {step} ns");
            assert_eq!(
                e - s,
                end - start,
                "duration changed by a step of {step} ns"
            );
        }
    }

    #[test]
    fn a_preempted_bracket_is_read_again() {
        let clocks = ScriptedClocks::new(5_000_000_000, START_REAL, 100);
        // The first try is preempted for 5 ms between its realtime read and its second boot
        // read: its midpoint would be 2.5 ms off. The second try is tight and wins.
        let mut c = WallClock::with_source(Box::new(PreemptFirstTry {
            inner: clocks.clone(),
            reads: 0,
        }));
        assert_maps_now(&c, &clocks, 1_000, "after a preempted first try");
        assert!(c.anchor());
        assert_maps_now(&c, &clocks, 1_000, "a later anchor");
    }

    /// Scripted clocks whose first anchoring try is preempted for 5 ms after the realtime read.
    struct PreemptFirstTry {
        inner: ScriptedClocks,
        reads: u32,
    }

    impl ClockSource for PreemptFirstTry {
        fn read_ns(&mut self, clock: ClockId) -> Option<i128> {
            self.reads += 1;
            if self.reads == 3 {
                self.inner.advance(5_000_000);
            }
            self.inner.read_ns(clock)
        }
    }

    #[test]
    fn unreadable_clocks_keep_the_previous_offset() {
        let clocks = ScriptedClocks::new(5_000_000_000, START_REAL, 100);
        let mut c = WallClock::with_source(Box::new(clocks.clone()));
        let before = c.offset_ns();
        clocks.step_real(HOUR_NS);
        clocks.with(|s| s.failing_reads = u32::MAX);
        assert!(!c.anchor(), "no read succeeded");
        assert_eq!(
            c.offset_ns(),
            before,
            "a failed anchor keeps the old offset"
        );
        assert_eq!(c.failed_anchors(), 1);
        // One failed read of three tries still anchors on another try.
        clocks.with(|s| s.failing_reads = 1);
        assert!(c.anchor());
        assert_maps_now(&c, &clocks, 1_000, "after a partly failed anchor");
    }

    #[test]
    fn a_source_whose_boot_time_goes_back_is_not_believed() {
        struct Backwards(i128);
        impl ClockSource for Backwards {
            fn read_ns(&mut self, clock: ClockId) -> Option<i128> {
                self.0 -= 10;
                Some(match clock {
                    ClockId::Boot => self.0,
                    ClockId::Real => START_REAL,
                })
            }
        }
        let mut c = WallClock::with_source(Box::new(Backwards(1_000_000)));
        assert_eq!(c.offset_ns(), 0);
        assert!(!c.anchor());
    }

    proptest! {
        /// Whatever the steps of the wall clock between anchorings (forward, back, to before
        /// 1970, past 2554) and wherever a span's ends fall, a span is never negative and its
        /// duration is its boot-time duration unless it saturates.
        #[test]
        fn never_a_negative_duration(
            steps in proptest::collection::vec(-(1i128 << 66)..(1i128 << 66), 1..20),
            spans in proptest::collection::vec((0u64..1 << 40, 0u64..1 << 34), 1..20),
        ) {
            let clocks = ScriptedClocks::new(1 << 41, START_REAL, 37);
            let mut c = WallClock::with_source(Box::new(clocks.clone()));
            for step in steps {
                clocks.step_real(step);
                c.anchor();
                for &(start, len) in &spans {
                    let end = start + len;
                    let (s, e) = (c.to_unix_ns(start), c.to_unix_ns(end));
                    prop_assert!(e >= s, "end {e} before start {s}");
                    if s > 0 && e < u64::MAX {
                        prop_assert_eq!(e - s, len);
                    }
                }
            }
        }
    }
}
