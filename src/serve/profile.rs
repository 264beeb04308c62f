//! A path's measured latency against query size, and its online correction.

use super::ServeError;
use serde::Serialize;

/// Median service seconds of a path at measured query sizes (the profile a server takes at
/// start), interpolated between them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyProfile {
    /// `(query size, median seconds)`, by increasing size.
    points: Vec<(usize, f64)>,
}

impl LatencyProfile {
    /// A profile from measured `(size, seconds)` points (any order; sizes distinct, at least
    /// 1; seconds finite and positive).
    pub fn new(mut points: Vec<(usize, f64)>) -> Result<Self, ServeError> {
        points.sort_by_key(|p| p.0);
        let bad = points.is_empty()
            || points.windows(2).any(|w| w[0].0 == w[1].0)
            || points
                .iter()
                .any(|&(n, s)| n == 0 || !s.is_finite() || s <= 0.0);
        if bad {
            return Err(ServeError::Invalid(format!(
                "a latency profile needs distinct sizes of at least 1 with positive seconds, \
                 got {points:?}"
            )));
        }
        Ok(LatencyProfile { points })
    }

    /// The measured points, by increasing size.
    pub fn points(&self) -> &[(usize, f64)] {
        &self.points
    }

    /// Predicted seconds for a query of `size` samples: linear between the measured sizes
    /// around it; below the smallest, the smallest's; above the largest, the largest's
    /// scaled by size (the work grows with the samples).
    pub fn seconds(&self, size: usize) -> f64 {
        let first = self.points[0];
        let last = self.points[self.points.len() - 1];
        if size <= first.0 {
            return first.1;
        }
        if size >= last.0 {
            return last.1 * size as f64 / last.0 as f64;
        }
        let i = self.points.partition_point(|p| p.0 < size);
        let (lo, hi) = (self.points[i - 1], self.points[i]);
        let t = (size - lo.0) as f64 / (hi.0 - lo.0) as f64;
        lo.1 + t * (hi.1 - lo.1)
    }

    /// Queries per second the path sustains when sizes follow `sizes` (a sample of them):
    /// one over the mean predicted service time.
    pub fn capacity_qps(&self, sizes: &[usize]) -> f64 {
        let mean = sizes.iter().map(|&n| self.seconds(n)).sum::<f64>() / sizes.len().max(1) as f64;
        1.0 / mean
    }
}

/// Observed over predicted service time, smoothed: corrects a path's profile online for what
/// it was not profiled under (other paths sharing its cores, a machine busier than at start).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Correction {
    ratio: f64,
}

impl Default for Correction {
    fn default() -> Self {
        Correction { ratio: 1.0 }
    }
}

impl Correction {
    /// Weight of the newest observation.
    const ALPHA: f64 = 0.2;

    /// The factor profiled times are multiplied by.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Takes in one query's profiled and observed service seconds. One outlier (a page fault,
    /// a descheduled thread) moves the factor at most by `ALPHA` × 8.
    pub fn observe(&mut self, profiled_s: f64, observed_s: f64) {
        if profiled_s > 0.0 && observed_s.is_finite() && observed_s >= 0.0 {
            let r = (observed_s / profiled_s).clamp(0.25, 8.0);
            self.ratio = (1.0 - Self::ALPHA) * self.ratio + Self::ALPHA * r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_and_scales_beyond() {
        let p = LatencyProfile::new(vec![(16, 2.0), (1, 1.0), (4, 1.5)]).unwrap();
        assert_eq!(p.seconds(1), 1.0);
        assert!((p.seconds(10) - 1.75).abs() < 1e-12);
        assert_eq!(p.seconds(32), 4.0);
        assert!(LatencyProfile::new(vec![]).is_err());
        assert!(LatencyProfile::new(vec![(1, 1.0), (1, 2.0)]).is_err());
        assert!(LatencyProfile::new(vec![(0, 1.0)]).is_err());
    }

    #[test]
    fn correction_follows_observations_and_bounds_outliers() {
        let mut c = Correction::default();
        for _ in 0..50 {
            c.observe(1.0, 2.0);
        }
        assert!((c.ratio() - 2.0).abs() < 1e-3);
        c.observe(1.0, 1e9);
        assert!(c.ratio() <= 0.8 * 2.0 + 0.2 * 8.0 + 1e-9);
    }
}
