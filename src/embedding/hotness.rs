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
//! - **Accesses by row id: exact.** Each table's ids are cut into `ID_BUCKETS` equal ranges and
//!   every access is added to its range's count (rowflow-studio draws them over time).
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
/// Equal row-id ranges whose accesses are counted per table.
pub const ID_BUCKETS: usize = 64;

#[derive(Default, Clone)]
struct TableHotness {
    sampled: HashMap<u32, u64>,
    heavy: HashMap<u32, u64>,
    /// The counts being cut (kept to allocate once).
    cut_scratch: Vec<u64>,
    rows: u64,
    id_buckets: Vec<u64>,
}

/// The id bucket of `row` in a table of `rows` rows.
pub fn id_bucket(row: u32, rows: u64) -> usize {
    (row as u64 * ID_BUCKETS as u64 / rows.max(1)).min(ID_BUCKETS as u64 - 1) as usize
}

/// Hotness of every table of a run (see the module docs).
#[derive(Clone)]
pub struct HotnessTracker {
    tables: Vec<TableHotness>,
}

/// One table's hotness before the device adds which rows are resident.
#[derive(Clone, Debug)]
pub struct TableCounts {
    /// Rows in the table.
    pub rows: u64,
    /// The estimated log-scale histogram.
    pub histogram: Vec<u64>,
    /// The hottest rows with their counts.
    pub top: Vec<(u32, u64)>,
    /// Accesses per row-id range.
    pub id_buckets: Vec<u64>,
}

/// A hotness report before the device adds which rows are resident.
pub type HotnessCounts = Vec<TableCounts>;

impl HotnessTracker {
    /// A tracker for tables of `table_rows` rows.
    pub fn new(table_rows: &[u64]) -> Self {
        HotnessTracker {
            tables: table_rows
                .iter()
                .map(|&rows| TableHotness {
                    rows,
                    id_buckets: vec![0; ID_BUCKETS],
                    ..TableHotness::default()
                })
                .collect(),
        }
    }

    /// Counts one batch of table `t`.
    pub fn observe(&mut self, t: usize, map: &RowMap) {
        let h = &mut self.tables[t];
        for (u, &row) in map.unique_rows.iter().enumerate() {
            let c = (map.row_starts[u + 1] - map.row_starts[u]) as u64;
            h.id_buckets[id_bucket(row, h.rows)] += c;
            if splitmix64(Stream::HotnessSample.key(row as u64)) % SAMPLE == 0 {
                *h.sampled.entry(row).or_insert(0) += c;
            }
            *h.heavy.entry(row).or_insert(0) += c;
        }
        if h.heavy.len() > 8 * CAPACITY {
            // Misra–Gries, batched: subtract the CAPACITY-th largest count from every counter
            // and drop those that reach zero. Each such cut takes at least CAPACITY times its
            // size off the total, so the bound holds for any trigger above CAPACITY; a high
            // one makes the cuts rare (the map holds up to 8·CAPACITY rows between them).
            let counts = &mut h.cut_scratch;
            counts.clear();
            counts.extend(h.heavy.values().copied());
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
                TableCounts {
                    rows: h.rows,
                    histogram,
                    top,
                    id_buckets: h.id_buckets.clone(),
                }
            })
            .collect()
    }
}

/// Completes a report with what the device holds: whether each hot row is resident
/// (`resident`), and per table the rows resident in each id range (`resident_rows` lists a
/// table's resident rows, `None` when every row is).
pub fn report<'a, R: Iterator<Item = u32> + 'a>(
    counts: HotnessCounts,
    resident: impl Fn(usize, u32) -> bool,
    resident_rows: impl Fn(usize) -> Option<R>,
) -> Vec<Hotness> {
    counts
        .into_iter()
        .enumerate()
        .map(|(t, c)| Hotness {
            table: t,
            histogram: c.histogram,
            top: c
                .top
                .into_iter()
                .map(|(row, count)| HotRow {
                    row,
                    count,
                    cached: resident(t, row),
                })
                .collect(),
            rows: c.rows,
            cached_buckets: resident_rows(t).map(|rows| {
                let mut cached = vec![0; ID_BUCKETS];
                rows.for_each(|r| cached[id_bucket(r, c.rows)] += 1);
                cached
            }),
            id_buckets: c.id_buckets,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Bags;

    #[test]
    fn finds_the_hot_rows_and_estimates_the_histogram() {
        let mut tracker = HotnessTracker::new(&[6400]);
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
        let (histogram, top) = (&counts[0].histogram, &counts[0].top);
        // Misra–Gries undercounts by at most accesses / CAPACITY.
        let bound = 50 * 250 / CAPACITY as u64;
        assert_eq!((top[0].0, top[1].0), (7, 3));
        assert!(top[0].1 <= 5000 && top[0].1 + bound >= 5000, "{top:?}");
        assert!(top[1].1 <= 2500 && top[1].1 + bound >= 2500, "{top:?}");
        // About 5,000 rows seen once (bucket 0), estimated from a 1/16 sample.
        assert!((4000..=6000).contains(&histogram[0]), "{histogram:?}");
        // Every access lands in its id range: 100 rows per range; rows 3 and 7 in the first.
        let b = &counts[0].id_buckets;
        assert_eq!(b.iter().sum::<u64>(), 50 * 250);
        assert_eq!(b[0], 5000 + 2500 + 90);
        assert_eq!(b[1], 100);
        let r = report(
            counts,
            |_, row| row == 7,
            |_| Some([7u32, 150, 151].into_iter()),
        );
        assert!(r[0].top[0].cached && !r[0].top[1].cached);
        let cached = r[0].cached_buckets.as_ref().unwrap();
        assert_eq!(
            (cached[0], cached[1], cached.iter().sum::<u64>()),
            (1, 2, 3)
        );
    }
}
