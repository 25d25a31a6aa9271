//! Kernel boot-time nanoseconds → wall clock.
//!
//! The kernel stamps events with `bpf_ktime_get_boot_ns` (CLOCK_BOOTTIME, counts suspend). The
//! offset to CLOCK_REALTIME is re-anchored on every sweep tick, so NTP steps are followed within
//! a tick; the offset is applied to both ends of a span, so a span never ends before it starts.

/// Offset between CLOCK_REALTIME and CLOCK_BOOTTIME, re-read by [`WallClock::anchor`].
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
}

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_BOOTTIME now, in ns (the kernel's event clock).
pub fn boot_now_ns() -> u64 {
    u64::try_from(read(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

impl WallClock {
    pub fn new() -> WallClock {
        let mut c = WallClock { offset_ns: 0 };
        c.anchor();
        c
    }

    /// Re-reads the offset between the two clocks.
    pub fn anchor(&mut self) {
        // Read boot time on both sides of realtime and take the midpoint, so the error is at
        // most half the (sub-microsecond) read time.
        let b1 = read(libc::CLOCK_BOOTTIME);
        let r = read(libc::CLOCK_REALTIME);
        let b2 = read(libc::CLOCK_BOOTTIME);
        self.offset_ns = r - (b1 + b2) / 2;
    }

    /// A fixed offset, for tests.
    pub fn with_offset(offset_ns: i128) -> WallClock {
        WallClock { offset_ns }
    }

    /// Unix-epoch ns of a boot-time ns stamp.
    pub fn to_unix_ns(&self, boot_ns: u64) -> u64 {
        u64::try_from(i128::from(boot_ns) + self.offset_ns).unwrap_or(0)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
