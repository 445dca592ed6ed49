//! A small, mergeable log-linear histogram of microsecond durations.
//!
//! Values below 16 µs have a bin each; above, every power of two is split into
//! 16 equal bins, so a bin is at most 1/16 as wide as its lower bound. A
//! quantile is reported as the middle of the bin holding the requested rank,
//! clamped to the observed min and max: **within 1/32 (3.125 %) of the exact
//! nearest-rank value**. Values are clamped to 2^36 µs (about 19 hours).
//!
//! Bins are stored sparsely (only bins that received a sample), so a bucket of
//! a few hundred samples clustered within an octave or two holds a few dozen
//! entries; the worst case is [`BINS`] entries.

/// Sub-bins per power of two, as a power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Largest value kept distinct, in µs; larger ones are clamped to it.
pub const MAX_VALUE_US: u64 = (1 << 36) - 1;
/// Number of distinct bins.
pub const BINS: usize = (SUB + (36 - SUB_BITS as u64) * SUB) as usize;

/// Bin of a value (µs).
pub fn bin_of(value_us: u64) -> u16 {
    let v = value_us.min(MAX_VALUE_US);
    if v < SUB {
        return v as u16;
    }
    let e = 63 - v.leading_zeros();
    let shift = e - SUB_BITS;
    let sub = (v >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + sub) as u16
}

/// `[low, high)` of a bin, in µs.
pub fn bin_bounds(bin: u16) -> (u64, u64) {
    let b = u64::from(bin);
    if b < SUB {
        return (b, b + 1);
    }
    let shift = (b - SUB) / SUB;
    let sub = (b - SUB) % SUB;
    ((SUB + sub) << shift, (SUB + sub + 1) << shift)
}

/// Sparse bin counts: `(bin, count)` sorted by bin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    bins: Vec<(u16, u32)>,
}

impl Sparse {
    pub fn record(&mut self, value_us: u64) {
        let bin = bin_of(value_us);
        match self.bins.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(i) => self.bins[i].1 = self.bins[i].1.saturating_add(1),
            Err(i) => self.bins.insert(i, (bin, 1)),
        }
    }

    /// Adds these counts into a dense array of [`BINS`] counters.
    pub fn add_to(&self, dense: &mut [u64]) {
        for &(bin, count) in &self.bins {
            if let Some(slot) = dense.get_mut(usize::from(bin)) {
                *slot += u64::from(count);
            }
        }
    }

    /// Entries held (for memory accounting).
    pub fn len(&self) -> usize {
        self.bins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }
}

/// Summary statistics of one duration over a window: exact count, sum, min,
/// max, and merged bins for quantiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    pub count: u64,
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    /// Non-empty bins, ascending, each with the samples in it and every
    /// bin below (so a quantile is a binary search, not a walk).
    bins: Vec<(u16, u64)>,
}

impl Distribution {
    /// Builds a distribution from a dense array of counts and exact stats.
    pub fn from_dense(dense: &[u64], count: u64, sum_us: u64, min_us: u64, max_us: u64) -> Self {
        let mut seen = 0u64;
        let bins = dense
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                seen = seen.saturating_add(*c);
                (i as u16, seen)
            })
            .collect();
        Self {
            count,
            sum_us,
            min_us,
            max_us,
            bins,
        }
    }

    /// Mean in µs.
    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us as f64 / self.count as f64)
    }

    /// Nearest-rank quantile `p` (0 to 100) in µs: the value at rank
    /// `max(1, ceil(p/100 · n))` of the sorted samples, within 1/32.
    /// `p` = 0 is the exact minimum and `p` = 100 the exact maximum.
    pub fn quantile_us(&self, p: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=100.0).contains(&p) {
            return None;
        }
        if p <= 0.0 {
            return Some(self.min_us as f64);
        }
        if p >= 100.0 {
            return Some(self.max_us as f64);
        }
        let total = self.bins.last().map_or(0, |(_, seen)| *seen);
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        // The first bin whose running count reaches the rank.
        let at = self.bins.partition_point(|(_, seen)| *seen < rank);
        let Some(&(bin, _)) = self.bins.get(at) else {
            return Some(self.max_us as f64);
        };
        let (lo, hi) = bin_bounds(bin);
        let mid = if hi - lo <= 1 {
            lo as f64
        } else {
            (lo + hi) as f64 / 2.0
        };
        Some(mid.clamp(self.min_us as f64, self.max_us as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_contiguous_and_narrow() {
        let mut prev_high = 0;
        for bin in 0..BINS as u16 {
            let (lo, hi) = bin_bounds(bin);
            assert_eq!(lo, prev_high, "bin {bin} starts where the previous ended");
            assert!(hi > lo);
            if lo >= SUB {
                assert!(
                    (hi - lo) * 16 <= lo,
                    "bin {bin} is at most 1/16 of its low bound"
                );
            }
            prev_high = hi;
        }
        assert_eq!(prev_high, MAX_VALUE_US + 1);
        for v in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            1000,
            123_456,
            9_999_999,
            MAX_VALUE_US,
        ] {
            let (lo, hi) = bin_bounds(bin_of(v));
            assert!(lo <= v && v < hi, "{v} in [{lo}, {hi})");
        }
        assert_eq!(bin_of(u64::MAX), bin_of(MAX_VALUE_US));
    }

    #[test]
    fn quantiles_match_nearest_rank_within_a_32nd() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..50 {
            let n = 1 + rng.usize(..2000);
            let spread = 10u64.pow(1 + (round % 6) as u32);
            let mut samples: Vec<u64> = (0..n).map(|_| rng.u64(..spread) + rng.u64(..50)).collect();
            let mut sparse = Sparse::default();
            for &s in &samples {
                sparse.record(s);
            }
            let mut dense = vec![0u64; BINS];
            sparse.add_to(&mut dense);
            samples.sort_unstable();
            let dist = Distribution::from_dense(
                &dense,
                n as u64,
                samples.iter().sum(),
                samples[0],
                samples[n - 1],
            );
            for p in [0.0, 1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
                let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
                let exact = samples[rank - 1] as f64;
                let got = dist.quantile_us(p).unwrap_or(f64::NAN);
                assert!(
                    (got - exact).abs() <= exact / 32.0 + 1e-9,
                    "p{p} of {n} samples: got {got}, exact {exact}"
                );
            }
        }
    }
}
