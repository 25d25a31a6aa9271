//! A log-linear latency histogram in the spirit of HdrHistogram: values in nanoseconds, exact
//! below 128 ns, then 128 sub-buckets per power of two (relative error < 0.8 %), up to 2^40 ns
//! (≈ 18 minutes). Recording is an index computation and an increment; histograms of several
//! threads merge by adding counts.

/// Sub-buckets per power of two (a power of two itself).
const SUB: u64 = 128;
const SUB_BITS: u32 = 7;
/// Largest exponent kept; larger values land in the last bucket.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    let shift = exp - SUB_BITS;
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    // v >> shift is in [SUB, 2·SUB): drop the leading bit.
    let sub = (v >> shift) - SUB;
    ((shift as u64 + 1) * SUB + sub) as usize
}

/// The midpoint of a bucket's value range.
fn value_of(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i % SUB;
    let low = (SUB + sub) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    pub fn mean_ns(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1): the smallest bucket whose cumulative count reaches
    /// `ceil(q · total)`; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        if rank >= self.total {
            return self.max_ns;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for v in (0..200_000u64).chain([1 << 20, 123_456_789, 1 << 39]) {
            let i = index(v);
            assert!(i >= last || v < 200_000, "index not monotonic at {v}");
            last = i;
            let back = value_of(i) as f64;
            let err = (back - v as f64).abs() / (v as f64).max(1.0);
            assert!(err <= 0.008, "{v} → bucket {i} → {back} ({err})");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile_ns(0.5) as f64;
        let p99 = h.quantile_ns(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.01, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.quantile_ns(1.0), 10_000_000);
        let mut g = Histogram::default();
        g.record(20_000_000);
        h.merge(&g);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.max_ns(), 20_000_000);
        assert_eq!(Histogram::default().quantile_ns(0.5), 0);
    }
}
