//! Per-row access probabilities estimated from a sample of batches.
//!
//! Small tables are counted exactly (4 bytes per row). Tables above `exact_rows_limit` rows use a
//! Count-Min sketch (depth 4, a width set by the caller) for point estimates, plus a bounded set
//! of heavy-hitter candidates: every observed row whose estimate reaches the smallest candidate's
//! is kept, and the set is pruned back to its capacity by estimate when it doubles. Count-Min
//! never under-estimates, so a row that is truly among the `capacity` hottest is kept unless
//! collisions inflate more rows above it than the slack of the prune holds.

use super::ShardError;
use crate::rng::splitmix64;
use hashbrown::HashMap;

/// Count-Min sketch of `u32` keys.
#[derive(Clone, Debug)]
pub struct CountMinSketch {
    width: usize,
    seeds: [u64; 4],
    counts: Vec<u32>,
}

impl CountMinSketch {
    /// A sketch with 4 rows of `width` counters (`width ≥ 1`).
    pub fn new(width: usize, seed: u64) -> Self {
        let width = width.max(1);
        let mut seeds = [0; 4];
        for (i, s) in seeds.iter_mut().enumerate() {
            *s = splitmix64(seed ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        }
        CountMinSketch {
            width,
            seeds,
            counts: vec![0; 4 * width],
        }
    }

    fn slot(&self, i: usize, key: u32) -> usize {
        i * self.width + (splitmix64(self.seeds[i] ^ key as u64) % self.width as u64) as usize
    }

    /// Adds one occurrence of `key` and returns its new estimate.
    pub fn add(&mut self, key: u32) -> u32 {
        let mut est = u32::MAX;
        for i in 0..4 {
            let s = self.slot(i, key);
            self.counts[s] = self.counts[s].saturating_add(1);
            est = est.min(self.counts[s]);
        }
        est
    }

    /// The estimated count of `key` (never below the true count).
    pub fn estimate(&self, key: u32) -> u32 {
        (0..4)
            .map(|i| self.counts[self.slot(i, key)])
            .min()
            .unwrap_or(0)
    }
}

/// One table's counts.
#[derive(Clone, Debug)]
enum Counts {
    Exact(Vec<u32>),
    Sketch {
        cm: CountMinSketch,
        heavy: HashMap<u32, u32>,
        capacity: usize,
        /// The smallest estimate kept by the last prune: rows below it are not candidates.
        floor: u32,
    },
}

/// Access counts of every table over the profiled steps.
#[derive(Clone, Debug)]
pub struct AccessProfile {
    rows: Vec<u32>,
    counts: Vec<Counts>,
    lookups: Vec<u64>,
    steps: u32,
}

impl AccessProfile {
    /// An empty profile for tables of `table_rows` rows. Tables of more than `exact_rows_limit`
    /// rows are sketched with `sketch_width` counters per sketch row and keep `heavy_capacity`
    /// heavy-hitter candidates.
    pub fn new(
        table_rows: &[u32],
        exact_rows_limit: u32,
        sketch_width: usize,
        heavy_capacity: usize,
    ) -> Self {
        let counts = table_rows
            .iter()
            .enumerate()
            .map(|(t, &rows)| {
                if rows <= exact_rows_limit {
                    Counts::Exact(vec![0; rows as usize])
                } else {
                    Counts::Sketch {
                        cm: CountMinSketch::new(sketch_width, t as u64),
                        heavy: HashMap::new(),
                        capacity: heavy_capacity.max(1),
                        floor: 0,
                    }
                }
            })
            .collect();
        AccessProfile {
            rows: table_rows.to_vec(),
            counts,
            lookups: vec![0; table_rows.len()],
            steps: 0,
        }
    }

    /// Counts the lookups `ids` of table `t` (one step's, or part of one).
    pub fn record(&mut self, t: usize, ids: &[u32]) -> Result<(), ShardError> {
        let rows = self.rows[t];
        if let Some(&r) = ids.iter().find(|&&r| r >= rows) {
            return Err(ShardError::Workload(format!(
                "table {t}: row {r} is out of range (the table has {rows} rows)"
            )));
        }
        self.lookups[t] += ids.len() as u64;
        match &mut self.counts[t] {
            Counts::Exact(c) => ids.iter().for_each(|&r| c[r as usize] += 1),
            Counts::Sketch {
                cm,
                heavy,
                capacity,
                floor,
            } => {
                for &r in ids {
                    let est = cm.add(r);
                    if est >= *floor || heavy.contains_key(&r) {
                        heavy.insert(r, est);
                    }
                    if heavy.len() >= 2 * *capacity {
                        let mut v: Vec<(u32, u32)> = heavy.drain().collect();
                        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                        v.truncate(*capacity);
                        *floor = v.last().map_or(0, |x| x.1);
                        heavy.extend(v);
                    }
                }
            }
        }
        Ok(())
    }

    /// Marks the end of one profiled step (estimates are per step).
    pub fn finish_step(&mut self) {
        self.steps += 1;
    }

    /// Steps profiled.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Lookups of table `t` per step (over the whole cluster).
    pub fn table_lookups_per_step(&self, t: usize) -> f64 {
        self.lookups[t] as f64 / self.steps.max(1) as f64
    }

    /// Number of tables.
    pub fn tables(&self) -> usize {
        self.rows.len()
    }

    /// True when table `t` is counted exactly.
    pub fn is_exact(&self, t: usize) -> bool {
        matches!(self.counts[t], Counts::Exact(_))
    }

    /// Expected lookups of row `r` of table `t` per step (over the whole cluster).
    pub fn lookups_per_step(&self, t: usize, r: u32) -> f64 {
        let c = match &self.counts[t] {
            Counts::Exact(c) => c[r as usize],
            Counts::Sketch { cm, .. } => cm.estimate(r),
        };
        c as f64 / self.steps.max(1) as f64
    }

    /// Probability that one lookup of table `t` reads row `r`.
    pub fn probability(&self, t: usize, r: u32) -> f64 {
        match self.lookups[t] {
            0 => 0.0,
            n => self.lookups_per_step(t, r) * self.steps.max(1) as f64 / n as f64,
        }
    }

    /// The rows of table `t` seen at least `min_lookups_per_step` times per step, hottest first
    /// (ties by row id), with their expected lookups per step. A sketched table lists only its
    /// heavy-hitter candidates.
    pub fn hot_rows(&self, t: usize, min_lookups_per_step: f64) -> Vec<(u32, f64)> {
        let steps = self.steps.max(1) as f64;
        let mut v: Vec<(u32, f64)> = match &self.counts[t] {
            Counts::Exact(c) => c
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(r, &n)| (r as u32, n as f64 / steps))
                .collect(),
            Counts::Sketch { cm, heavy, .. } => heavy
                .keys()
                .map(|&r| (r, cm.estimate(r) as f64 / steps))
                .collect(),
        };
        v.retain(|x| x.1 >= min_lookups_per_step);
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_counts_give_probabilities() {
        let mut p = AccessProfile::new(&[4], 100, 16, 4);
        p.record(0, &[1, 1, 1, 2]).unwrap();
        p.finish_step();
        p.record(0, &[1, 3, 3, 1]).unwrap();
        p.finish_step();
        assert_eq!(p.lookups_per_step(0, 1), 2.5);
        assert_eq!(p.probability(0, 3), 0.25);
        assert_eq!(p.hot_rows(0, 0.0), vec![(1, 2.5), (3, 1.0), (2, 0.5)]);
        assert!(p.record(0, &[4]).is_err());
    }

    #[test]
    fn sketch_finds_the_heavy_hitters_of_a_large_table() {
        let rows = 1_000_000u32;
        let mut p = AccessProfile::new(&[rows], 1000, 1 << 14, 64);
        assert!(!p.is_exact(0));
        // Rows 7·k for k < 32 are hot (1000 hits each); a spread of 200,000 cold lookups.
        let mut ids = Vec::new();
        for k in 0..32u32 {
            ids.extend(std::iter::repeat_n(7 * k + 500_000, 1000));
        }
        ids.extend((0..200_000u32).map(|i| splitmix64(i as u64) as u32 % rows));
        // Interleave so hot rows arrive among cold ones.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| splitmix64(i as u64 ^ 99));
        let shuffled: Vec<u32> = order.iter().map(|&i| ids[i]).collect();
        p.record(0, &shuffled).unwrap();
        p.finish_step();
        let hot = p.hot_rows(0, 0.0);
        for k in 0..32u32 {
            assert!(
                hot[..32].iter().any(|h| h.0 == 7 * k + 500_000),
                "hot row {k} missing"
            );
        }
        let est = p.lookups_per_step(0, 500_000);
        assert!((1000.0..1100.0).contains(&est), "estimate {est}");
    }
}
