//! Row hotness, cheap enough to leave on: per table, an access histogram on a log scale and the
//! hottest rows.
//!
//! - **Histogram: sampled counts.** Exact access counts are kept for the rows whose hash falls
//!   in a 1-in-`SAMPLE` subset; each sampled row stands for `SAMPLE` rows, so bucket `k` (rows
//!   accessed `2^k ..= 2^(k+1) − 1` times) is estimated as `SAMPLE ×` the sampled rows in it.
//!   Memory grows with the distinct sampled rows seen, not with the table.
//! - **Hottest rows: Misra–Gries.** `CAPACITY` counters over every access; each reported count
//!   is a lower bound, short of the truth by at most `accesses / CAPACITY`, and every row with
//!   more than that many accesses is present.
//!
//! It observes the batches' unique-row maps (each unique row with its number of occurrences), so
//! its cost per step is proportional to the batch's unique rows, and it runs in the loader
//! thread, off the device's path.

use crate::data::RowMap;
use crate::rng::{Stream, splitmix64};
use crate::telemetry::{HotRow, Hotness};
use hashbrown::HashMap;

/// One row in `SAMPLE` is counted exactly for the histogram.
pub const SAMPLE: u64 = 16;
/// Misra–Gries counters per table.
pub const CAPACITY: usize = 512;
/// Hottest rows reported per table.
pub const TOP: usize = 10;

#[derive(Default, Clone)]
struct TableHotness {
    sampled: HashMap<u32, u64>,
    heavy: HashMap<u32, u64>,
}

/// Hotness of every table of a run (see the module docs).
#[derive(Clone)]
pub struct HotnessTracker {
    tables: Vec<TableHotness>,
}

/// A hotness report before the device adds which rows are resident.
pub type HotnessCounts = Vec<(Vec<u64>, Vec<(u32, u64)>)>;

impl HotnessTracker {
    /// A tracker for `tables` tables.
    pub fn new(tables: usize) -> Self {
        HotnessTracker {
            tables: vec![TableHotness::default(); tables],
        }
    }

    /// Counts one batch of table `t`.
    pub fn observe(&mut self, t: usize, map: &RowMap) {
        let h = &mut self.tables[t];
        for (u, &row) in map.unique_rows.iter().enumerate() {
            let c = (map.row_starts[u + 1] - map.row_starts[u]) as u64;
            if splitmix64(Stream::HotnessSample.key(row as u64)) % SAMPLE == 0 {
                *h.sampled.entry(row).or_insert(0) += c;
            }
            *h.heavy.entry(row).or_insert(0) += c;
        }
        if h.heavy.len() > 2 * CAPACITY {
            // Misra–Gries, batched: subtract the CAPACITY-th largest count from every counter
            // and drop those that reach zero.
            let mut counts: Vec<u64> = h.heavy.values().copied().collect();
            let (_, &mut cut, _) = counts.select_nth_unstable_by(CAPACITY, |a, b| b.cmp(a));
            h.heavy.retain(|_, c| {
                *c = c.saturating_sub(cut);
                *c > 0
            });
        }
    }

    /// Per table: the estimated histogram and the hottest rows with their counts.
    pub fn counts(&self) -> HotnessCounts {
        self.tables
            .iter()
            .map(|h| {
                let mut histogram = Vec::new();
                for &c in h.sampled.values() {
                    let k = 63 - c.leading_zeros() as usize;
                    if histogram.len() <= k {
                        histogram.resize(k + 1, 0);
                    }
                    histogram[k] += SAMPLE;
                }
                let mut top: Vec<(u32, u64)> = h.heavy.iter().map(|(r, c)| (*r, *c)).collect();
                top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                top.truncate(TOP);
                (histogram, top)
            })
            .collect()
    }
}

/// Completes a report with whether each hot row is resident on the device.
pub fn report(counts: HotnessCounts, resident: impl Fn(usize, u32) -> bool) -> Vec<Hotness> {
    counts
        .into_iter()
        .enumerate()
        .map(|(t, (histogram, top))| Hotness {
            table: t,
            histogram,
            top: top
                .into_iter()
                .map(|(row, count)| HotRow {
                    row,
                    count,
                    cached: resident(t, row),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Bags;

    #[test]
    fn finds_the_hot_rows_and_estimates_the_histogram() {
        let mut tracker = HotnessTracker::new(1);
        // Row 7 in every bag, row 3 in every other one, 5,000 cold rows once each.
        for step in 0..50u32 {
            let mut bags = Bags::new();
            for b in 0..100u32 {
                let cold = step * 100 + b + 10;
                if b % 2 == 0 {
                    bags.push(&[7, 3, cold])
                } else {
                    bags.push(&[7, cold])
                }
            }
            tracker.observe(0, &RowMap::from_bags(&bags));
        }
        let counts = tracker.counts();
        let (histogram, top) = &counts[0];
        // Misra–Gries undercounts by at most accesses / CAPACITY.
        let bound = 50 * 250 / CAPACITY as u64;
        assert_eq!((top[0].0, top[1].0), (7, 3));
        assert!(top[0].1 <= 5000 && top[0].1 + bound >= 5000, "{top:?}");
        assert!(top[1].1 <= 2500 && top[1].1 + bound >= 2500, "{top:?}");
        // About 5,000 rows seen once (bucket 0), estimated from a 1/16 sample.
        assert!((4000..=6000).contains(&histogram[0]), "{histogram:?}");
        let r = report(counts, |_, row| row == 7);
        assert!(r[0].top[0].cached && !r[0].top[1].cached);
    }
}
