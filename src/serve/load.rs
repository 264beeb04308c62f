//! The load generator: Poisson arrivals at a rate, heavy-tailed query sizes, samples drawn from
//! the serving half of the test split (so every prediction has a label).

use super::ServeError;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use rand_pcg::Pcg64Mcg;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// The largest query, in samples (the profile's largest size).
pub const MAX_QUERY: usize = 1024;

/// Query sizes, clipped to `1 ..= MAX_QUERY` (`--query-size-dist`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeDist {
    /// `lognormal[:MEDIAN[:SIGMA]]`: e^N(ln MEDIAN, SIGMA²), rounded (default 16 and 1.2: most
    /// queries small, a few of hundreds of samples, as recommendation queries are).
    LogNormal {
        /// The median size.
        median: f64,
        /// The log-space standard deviation.
        sigma: f64,
    },
    /// `uniform:LO:HI`: every size from LO to HI alike.
    Uniform {
        /// Smallest size.
        lo: usize,
        /// Largest size.
        hi: usize,
    },
    /// `fixed:N`: every query N samples.
    Fixed(usize),
}

impl Default for SizeDist {
    fn default() -> Self {
        SizeDist::LogNormal {
            median: 16.0,
            sigma: 1.2,
        }
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::LogNormal { median, sigma } => write!(f, "lognormal:{median}:{sigma}"),
            SizeDist::Uniform { lo, hi } => write!(f, "uniform:{lo}:{hi}"),
            SizeDist::Fixed(n) => write!(f, "fixed:{n}"),
        }
    }
}

impl FromStr for SizeDist {
    type Err = ServeError;
    fn from_str(s: &str) -> Result<Self, ServeError> {
        let bad = |why: &str| {
            ServeError::Invalid(format!(
                "--query-size-dist {s:?}: {why}; use lognormal[:MEDIAN[:SIGMA]], uniform:LO:HI \
                 or fixed:N (sizes 1 to {MAX_QUERY})"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> Result<f64, ServeError> {
            parts[i]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(&format!("{:?} is not a number", parts[i])))
        };
        let size = |i: usize| -> Result<usize, ServeError> {
            parts[i]
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_QUERY).contains(n))
                .ok_or_else(|| {
                    bad(&format!(
                        "{:?} is not a size from 1 to {MAX_QUERY}",
                        parts[i]
                    ))
                })
        };
        let dist = match (parts[0], parts.len()) {
            ("lognormal", 1..=3) => {
                let d = SizeDist::default();
                let SizeDist::LogNormal { median, sigma } = d else {
                    unreachable!("the default is log-normal")
                };
                let median = if parts.len() > 1 { num(1)? } else { median };
                let sigma = if parts.len() > 2 { num(2)? } else { sigma };
                if !(1.0..=MAX_QUERY as f64).contains(&median) || !(0.0..=4.0).contains(&sigma) {
                    return Err(bad("the median must be 1 to 1024 and sigma 0 to 4"));
                }
                SizeDist::LogNormal { median, sigma }
            }
            ("uniform", 3) => {
                let (lo, hi) = (size(1)?, size(2)?);
                if lo > hi {
                    return Err(bad("LO is above HI"));
                }
                SizeDist::Uniform { lo, hi }
            }
            ("fixed", 2) => SizeDist::Fixed(size(1)?),
            _ => return Err(bad("unknown form")),
        };
        Ok(dist)
    }
}

impl SizeDist {
    /// One query size.
    pub fn sample(&self, rng: &mut Pcg64Mcg) -> usize {
        let n = match *self {
            SizeDist::LogNormal { median, sigma } => match LogNormal::new(median.ln(), sigma) {
                Ok(d) => d.sample(rng).round() as usize,
                Err(_) => median.round() as usize,
            },
            SizeDist::Uniform { lo, hi } => rng.random_range(lo..=hi),
            SizeDist::Fixed(n) => n,
        };
        n.clamp(1, MAX_QUERY)
    }

    /// `n` sizes drawn with `seed` (to estimate what a load costs a path).
    pub fn draw(&self, n: usize, seed: u64) -> Vec<usize> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        (0..n).map(|_| self.sample(&mut rng)).collect()
    }
}

/// One query of a load: when it arrives and which test samples it asks about.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// Seconds after the load starts.
    pub at_s: f64,
    /// Indices into the test split.
    pub samples: Vec<u32>,
}

/// An open-loop load: Poisson arrivals at `qps` for `duration_s`, sizes from `sizes`, samples
/// uniform over `pool`.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    /// Offered queries per second.
    pub qps: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// Query sizes.
    pub sizes: SizeDist,
    /// Seed of the arrivals, sizes and samples.
    pub seed: u64,
}

impl Load {
    /// The load's queries, in arrival order.
    pub fn arrivals(&self, pool: Range<u32>) -> Result<Vec<Arrival>, ServeError> {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return Err(ServeError::Invalid(format!(
                "--qps {}: the offered load must be a positive number of queries per second",
                self.qps
            )));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(ServeError::Invalid(format!(
                "--duration-s {}: must be positive",
                self.duration_s
            )));
        }
        if pool.is_empty() {
            return Err(ServeError::Invalid(
                "the test split has no samples left to serve".into(),
            ));
        }
        let mut rng = Pcg64Mcg::seed_from_u64(self.seed);
        let mut out = Vec::new();
        let mut t = 0.0;
        loop {
            // Exponential gaps: 1 − U lies in (0, 1], so the logarithm is finite.
            t += -(1.0 - rng.random::<f64>()).ln() / self.qps;
            if t >= self.duration_s {
                return Ok(out);
            }
            let n = self.sizes.sample(&mut rng);
            let samples = (0..n).map(|_| rng.random_range(pool.clone())).collect();
            out.push(Arrival { at_s: t, samples });
        }
    }
}
