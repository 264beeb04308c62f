//! Row hotness over time, per table: columns of access rates by row-id range or by popularity
//! rank, and their picture (a log-colour heatmap drawn as one texture).
//!
//! By id, a column holds the accesses per step of each of the table's `ID_BUCKETS` equal id
//! ranges during the interval since the previous report (exact counts). By rank, bucket `j`
//! holds the accesses per step of the rows ranked `2^j ..= 2^(j+1) − 1` over the run so far:
//! the ten hottest rows are counted, the rest estimated from rowflow's sampled log histogram.
//! Columns are bounded: when full, neighbours merge in pairs (rates weighted by the steps each
//! covers), so a long run keeps its whole history at a coarser time resolution.

use egui::{Color32, ColorImage};
use rowflow::telemetry::{HotRow, Hotness};

/// Columns kept per table (halved by merging when full).
pub const COLUMNS: usize = 256;
/// Rank buckets: ranks 1 ..= 2^RANK_BUCKETS − 1.
pub const RANK_BUCKETS: usize = 24;

/// How the heatmap's rows are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HotOrder {
    /// By popularity rank (log buckets), hottest at the top.
    #[default]
    Rank,
    /// By row id (equal ranges), id 0 at the top.
    Id,
}

/// One report's worth of hotness.
#[derive(Clone, Debug, PartialEq)]
pub struct HotColumn {
    /// Step of the report.
    pub step: u64,
    /// Seconds since the run began.
    pub time: f64,
    /// Steps the column covers.
    pub steps: u64,
    /// Accesses per step in each id range during the column.
    pub by_id: Vec<f32>,
    /// Accesses per step of a row at each rank bucket, over the run so far.
    pub by_rank: Vec<f32>,
    /// Rows of each id range resident on the device (`None` when all are).
    pub cached_by_id: Option<Vec<u64>>,
    /// The hottest rows and whether each was resident.
    pub top: Vec<HotRow>,
}

/// One table's hotness columns.
#[derive(Clone, Debug, Default)]
pub struct HotTable {
    /// Rows in the table.
    pub rows: u64,
    /// Columns, oldest first.
    pub columns: Vec<HotColumn>,
    prev_ids: Vec<u64>,
    prev_step: u64,
}

impl HotTable {
    /// Adds the report made at `step`.
    pub fn ingest(&mut self, h: &Hotness, step: u64, time: f64) {
        if step <= self.prev_step {
            return;
        }
        let steps = step - self.prev_step;
        self.rows = h.rows;
        self.prev_ids.resize(h.id_buckets.len(), 0);
        let by_id = h
            .id_buckets
            .iter()
            .zip(&self.prev_ids)
            .map(|(now, before)| now.saturating_sub(*before) as f32 / steps as f32)
            .collect();
        self.prev_ids.clone_from(&h.id_buckets);
        self.prev_step = step;
        if self.columns.len() == COLUMNS {
            self.columns = self.columns.chunks(2).map(merge).collect();
        }
        self.columns.push(HotColumn {
            step,
            time,
            steps,
            by_id,
            by_rank: by_rank(&h.histogram, &h.top, step),
            cached_by_id: h.cached_buckets.clone(),
            top: h.top.clone(),
        });
    }

    /// The columns up to `step` (replay's cursor).
    pub fn until(&self, step: u64) -> &[HotColumn] {
        &self.columns[..self.columns.partition_point(|c| c.step <= step)]
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.columns.capacity() * std::mem::size_of::<HotColumn>()
            + self
                .columns
                .iter()
                .map(|c| (c.by_id.len() + c.by_rank.len()) * 4 + c.top.len() * 16 + 64 * 8)
                .sum::<usize>()
    }
}

fn merge(pair: &[HotColumn]) -> HotColumn {
    let last = pair[pair.len() - 1].clone();
    if pair.len() == 1 {
        return last;
    }
    let (a, b) = (&pair[0], &pair[1]);
    let steps = a.steps + b.steps;
    let by_id = a
        .by_id
        .iter()
        .zip(&b.by_id)
        .map(|(x, y)| (x * a.steps as f32 + y * b.steps as f32) / steps as f32)
        .collect();
    HotColumn {
        steps,
        by_id,
        ..last
    }
}

/// Accesses per step of the rows in each rank bucket (see the module docs).
fn by_rank(histogram: &[u64], top: &[HotRow], step: u64) -> Vec<f32> {
    let mut sum = [0.0f64; RANK_BUCKETS];
    let mut n = [0u64; RANK_BUCKETS];
    let mut rank = 1u64;
    for (k, &rows) in histogram.iter().enumerate().rev() {
        // A row in class k was accessed 2^k ..= 2^(k+1) − 1 times: about 1.5 × 2^k.
        let count = if k == 0 {
            1.0
        } else {
            1.5 * (1u64 << k) as f64
        };
        let (lo, hi) = (rank, rank + rows);
        for (j, (s, c)) in sum.iter_mut().zip(n.iter_mut()).enumerate() {
            let overlap = hi.min(2 << j).saturating_sub(lo.max(1 << j));
            *s += count * overlap as f64;
            *c += overlap;
        }
        rank = hi;
    }
    for (j, (s, c)) in sum.iter_mut().zip(n.iter_mut()).enumerate() {
        let ranks = (1usize << j)..(2usize << j);
        if ranks.end - 1 <= top.len() {
            *s = top[ranks.start - 1..ranks.end - 1]
                .iter()
                .map(|r| r.count as f64)
                .sum();
            *c = ranks.len() as u64;
        }
    }
    sum.iter()
        .zip(&n)
        .map(|(s, &c)| {
            if c == 0 {
                0.0
            } else {
                (s / c as f64 / step as f64) as f32
            }
        })
        .collect()
}

/// Inferno-like stops, dark (few accesses) to bright (many).
const STOPS: [[u8; 3]; 6] = [
    [20, 11, 52],
    [87, 16, 110],
    [159, 42, 99],
    [221, 81, 58],
    [249, 142, 9],
    [252, 255, 164],
];

/// The colour of `v` on a log scale from `lo` to `hi` (both positive); zero is the background.
pub fn colour(v: f32, lo: f32, hi: f32) -> Color32 {
    if v <= 0.0 {
        return Color32::from_gray(12);
    }
    let span = (hi.log10() - lo.log10()).max(1e-6);
    let f = ((v.log10() - lo.log10()) / span).clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let w = f - i as f32;
    let mix = |c: usize| (STOPS[i][c] as f32 * (1.0 - w) + STOPS[i + 1][c] as f32 * w) as u8;
    Color32::from_rgb(mix(0), mix(1), mix(2))
}

/// The values a column shows in `order`.
pub fn values(c: &HotColumn, order: HotOrder) -> &[f32] {
    match order {
        HotOrder::Id => &c.by_id,
        HotOrder::Rank => &c.by_rank,
    }
}

/// The heatmap of `columns` (one pixel per column and bucket; time left to right, the first
/// bucket at the top) and its colour range, or `None` with nothing to show.
pub fn image(columns: &[HotColumn], order: HotOrder) -> Option<(ColorImage, f32, f32)> {
    let height = columns.iter().map(|c| values(c, order).len()).max()?;
    let positive = columns
        .iter()
        .flat_map(|c| values(c, order))
        .copied()
        .filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f32::MAX, 0.0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if height == 0 || hi == 0.0 {
        return None;
    }
    let mut img = ColorImage::filled([columns.len(), height], Color32::from_gray(12));
    for (x, c) in columns.iter().enumerate() {
        for (y, v) in values(c, order).iter().enumerate() {
            img.pixels[y * columns.len() + x] = colour(*v, lo, hi);
        }
    }
    Some((img, lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ids: Vec<u64>) -> Hotness {
        Hotness {
            table: 0,
            histogram: vec![1000, 100, 10, 1],
            top: (0..10)
                .map(|i| HotRow {
                    row: i,
                    count: 100 - i as u64,
                    cached: i < 5,
                })
                .collect(),
            rows: 640,
            id_buckets: ids,
            cached_buckets: Some(vec![1; 64]),
        }
    }

    #[test]
    fn columns_hold_interval_rates_and_stay_bounded() {
        let mut t = HotTable::default();
        t.ingest(&report(vec![10; 64]), 10, 1.0);
        t.ingest(&report(vec![30; 64]), 20, 2.0);
        assert_eq!(t.columns[0].by_id[0], 1.0);
        assert_eq!(t.columns[1].by_id[5], 2.0, "20 accesses over 10 steps");
        // Rank 1 is the hottest row, counted: 100 accesses over 20 steps.
        assert_eq!(t.columns[1].by_rank[0], 5.0);
        // Ranks 16..31 fall in the histogram's class 1 (accessed 2..3 times, ~3).
        assert!((t.columns[1].by_rank[4] - 3.0 / 20.0).abs() < 1e-6);
        for k in 3..10_000u64 {
            t.ingest(&report(vec![10 * k; 64]), 10 * k, k as f64);
        }
        assert!(t.columns.len() <= COLUMNS);
        assert_eq!(t.columns.iter().map(|c| c.steps).sum::<u64>(), 99_990);
        let (img, lo, hi) = image(&t.columns, HotOrder::Id).unwrap();
        assert_eq!(img.size, [t.columns.len(), 64]);
        assert!(lo > 0.0 && hi >= lo);
    }

    #[test]
    fn the_colour_scale_is_logarithmic() {
        let mid = colour(10.0, 1.0, 100.0);
        assert_eq!(mid, colour(10.0, 1.0, 100.0));
        assert_ne!(colour(1.0, 1.0, 100.0), colour(100.0, 1.0, 100.0));
        assert_eq!(colour(0.0, 1.0, 100.0), Color32::from_gray(12));
        // 10 sits half-way between 1 and 100: the middle of the stops.
        let half = (STOPS.len() - 1) as f32 / 2.0;
        let i = half.floor() as usize;
        let w = half - i as f32;
        let r = (STOPS[i][0] as f32 * (1.0 - w) + STOPS[i + 1][0] as f32 * w) as u8;
        assert_eq!(mid.r(), r);
    }
}
