//! Zipf popularity ranks, drawn cheaply: the generator's hottest cost was `pow`.
//!
//! `P(rank = k) ∝ k^-s` for `k` in `1..=n`, exactly (no approximation), as a mixture of two
//! parts split at rank `H` (`HEAD`, or `n` when smaller):
//! - the **head** `1..=H`, which holds most draws (84% for `s = 1.05`, `n = 100,000`):
//!   Walker's alias table, one uniform and one lookup in a table that stays in cache;
//! - the **tail** `H+1..=n`: rejection from the continuous envelope `x^-s` on `[H, n]`, sampled
//!   by inverting its CDF (as `rand_distr::Zipf` does over the whole range), accepted with
//!   probability `(x / k)^s`, nearly always without computing it (a squeeze): about one `pow`
//!   per draw.
//!
//! The part is chosen by the head's exact share of the mass, summed once at construction.

use rand::{Rng, RngExt};

/// Ranks in the alias table: 192 KiB of table, which stays in a core's L2.
const HEAD: usize = 16384;

/// Zipf(`s`) over ranks `1..=n` (see the module docs).
#[derive(Clone, Debug)]
pub struct ZipfRanks {
    s: f64,
    /// Share of the mass on the head.
    p_head: f64,
    /// Per head column, the probability of keeping the column's own rank.
    keep: Vec<f64>,
    /// Per head column, the 0-based rank drawn otherwise.
    alias: Vec<u32>,
    /// The tail's envelope: `H` and `n` as reals, and `F(x) = x^(1-s)` (or `ln x` for s = 1)
    /// at both ends.
    lo: f64,
    hi: f64,
    f_lo: f64,
    f_hi: f64,
}

impl ZipfRanks {
    /// Zipf(`s`) over `1..=n`; `s ≥ 0`, `n ≥ 1` (else a message naming the bad value).
    pub fn new(n: u64, s: f64) -> Result<Self, String> {
        if n == 0 {
            return Err("a Zipf distribution needs at least one rank".into());
        }
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!("the exponent must be finite and >= 0, got {s}"));
        }
        let h = (n as usize).min(HEAD);
        let weights: Vec<f64> = (1..=h).map(|k| (k as f64).powf(-s)).collect();
        let head_mass: f64 = weights.iter().sum();
        // Summed exactly, smallest terms first: tables have at most a few million rows and
        // the sum is made once per distinct (n, s).
        let tail_mass: f64 = (h as u64 + 1..=n).rev().map(|k| (k as f64).powf(-s)).sum();
        let (keep, alias) = alias_table(&weights);
        let (lo, hi) = (h as f64, n as f64);
        let f = |x: f64| if s == 1.0 { x.ln() } else { x.powf(1.0 - s) };
        Ok(ZipfRanks {
            s,
            p_head: head_mass / (head_mass + tail_mass),
            keep,
            alias,
            lo,
            hi,
            f_lo: f(lo),
            f_hi: f(hi),
        })
    }

    /// Draws a 0-based rank (`k - 1`).
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        if u < self.p_head {
            // u / p_head is uniform on [0, 1): its integer part over the columns picks one,
            // its fraction decides between the column's rank and its alias.
            let v = u / self.p_head * self.keep.len() as f64;
            let col = (v as usize).min(self.keep.len() - 1);
            return if v - (col as f64) < self.keep[col] {
                col as u64
            } else {
                self.alias[col] as u64
            };
        }
        let mut p = (u - self.p_head) / (1.0 - self.p_head);
        loop {
            // x on [H, n) with density ∝ x^-s; k = ⌊x⌋ + 1 in H+1..=n, kept with (x / k)^s.
            let g = self.f_lo + p * (self.f_hi - self.f_lo);
            let x = if self.s == 1.0 {
                g.exp()
            } else {
                g.powf(1.0 / (1.0 - self.s))
            };
            let x = x.clamp(self.lo, self.hi);
            let k = (x.floor() + 1.0).min(self.hi);
            // (x / k)^s ≥ 1 − max(s, 1)·(1 − x/k) (Bernoulli's inequality; for s < 1,
            // (x / k)^s ≥ x / k): most tries are accepted without the second pow.
            let y: f64 = rng.random();
            let squeeze = 1.0 - self.s.max(1.0) * (1.0 - x / k);
            if y < squeeze || y < (x / k).powf(self.s) {
                // 0-based.
                return k as u64 - 1;
            }
            p = rng.random();
        }
    }
}

/// Vose's alias method over `weights`: per column the probability of keeping it and the
/// column used otherwise. Exact up to rounding of the `f64` probabilities.
fn alias_table(weights: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
    let mut keep = vec![1.0; n];
    let mut alias: Vec<u32> = (0..n as u32).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        keep[s] = scaled[s];
        alias[s] = l as u32;
        scaled[l] -= 1.0 - scaled[s];
        if scaled[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    // What is left holds probability 1 up to rounding.
    (keep, alias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    /// Draws `draws` ranks and compares the counts of `buckets` (rank ranges) with the exact
    /// probabilities: every bucket within 5 standard deviations.
    fn matches_exact_pmf(n: u64, s: f64, buckets: &[(u64, u64)], draws: usize) {
        let z = ZipfRanks::new(n, s).unwrap();
        let total: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        let mut counts = vec![0usize; buckets.len()];
        for _ in 0..draws {
            let r = z.sample(&mut rng);
            assert!(r < n, "rank {r} of {n}");
            if let Some(b) = buckets.iter().position(|&(a, b)| (a..b).contains(&r)) {
                counts[b] += 1;
            }
        }
        for (&(a, b), &c) in buckets.iter().zip(&counts) {
            let p: f64 = (a + 1..=b).map(|k| (k as f64).powf(-s)).sum::<f64>() / total;
            let expect = p * draws as f64;
            let sd = (draws as f64 * p * (1.0 - p)).sqrt().max(1.0);
            assert!(
                (c as f64 - expect).abs() < 5.0 * sd,
                "n={n} s={s} ranks {a}..{b}: {c} draws, expected {expect:.0} ± {sd:.0}"
            );
        }
    }

    #[test]
    fn head_and_tail_follow_the_exact_distribution() {
        let h = HEAD as u64;
        let buckets = [
            (0, 1),
            (1, 2),
            (2, 10),
            (10, 100),
            (100, h - 100),
            (h - 100, h),
            (h, h + 1),
            (h + 1, h + 1000),
            (h + 1000, 50_000),
            (50_000, 100_000),
        ];
        matches_exact_pmf(100_000, 1.05, &buckets, 2_000_000);
        matches_exact_pmf(100_000, 1.0, &buckets, 1_000_000);
        matches_exact_pmf(100_000, 0.5, &buckets, 1_000_000);
    }

    #[test]
    fn small_tables_are_all_head() {
        matches_exact_pmf(10, 1.2, &[(0, 1), (1, 2), (2, 5), (5, 10)], 200_000);
        matches_exact_pmf(1, 1.05, &[(0, 1)], 1000);
        let h = HEAD as u64;
        matches_exact_pmf(h + 1, 1.1, &[(0, 1), (1, h), (h, h + 1)], 400_000);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(ZipfRanks::new(0, 1.0).is_err());
        assert!(ZipfRanks::new(10, -1.0).is_err());
        assert!(ZipfRanks::new(10, f64::NAN).is_err());
    }
}
