//! Bounded histories of one value over a run, and their reduction to what a plot can show.
//!
//! A [`Series`] keeps a recent window at full resolution and the whole run compacted: when the
//! compacted part is full, neighbouring buckets merge in pairs, each keeping the minimum, the
//! maximum and the last value of what it covers. Memory is bounded whatever the run's length,
//! and a spike survives every compaction (a min/max reduction, never sampling).
//!
//! [`decimate`] prepares a series for drawing: it slices to the visible x-range (binary
//! search), then reduces to at most two points per pixel column, the column's minimum and
//! maximum in the order they occurred.

/// Buckets in a series' compacted history (halved when full).
pub const COMPACT: usize = 2048;
/// Points in a series' full-resolution recent window.
pub const RECENT: usize = 1024;

/// Some consecutive points of a series: their extremes and the last one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Step of the last point.
    pub step: f64,
    /// Seconds since the run began at the last point.
    pub time: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// The last value.
    pub last: f64,
    /// Whether the minimum came before the maximum.
    pub min_first: bool,
}

impl Bucket {
    fn point(step: f64, time: f64, y: f64) -> Self {
        Bucket {
            step,
            time,
            min: y,
            max: y,
            last: y,
            min_first: true,
        }
    }

    /// `self` followed by `later`.
    fn merge(self, later: Bucket) -> Bucket {
        let (min, min_later) = if later.min < self.min {
            (later.min, true)
        } else {
            (self.min, false)
        };
        let (max, max_later) = if later.max > self.max {
            (later.max, true)
        } else {
            (self.max, false)
        };
        Bucket {
            step: later.step,
            time: later.time,
            min,
            max,
            last: later.last,
            min_first: match (min_later, max_later) {
                (false, false) => self.min_first,
                (true, true) => later.min_first,
                (false, true) => true,
                (true, false) => false,
            },
        }
    }
}

/// What the x-axis measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum XAxis {
    /// Training steps.
    #[default]
    Step,
    /// Seconds since the run began.
    Time,
}

impl XAxis {
    /// The bucket's x on this axis.
    pub fn of(self, b: &Bucket) -> f64 {
        match self {
            XAxis::Step => b.step,
            XAxis::Time => b.time,
        }
    }
}

/// One value over a run, bounded (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// The whole run, compacted; each bucket covers `span` points (the last one `filled`).
    compact: Vec<Bucket>,
    filled: usize,
    span: usize,
    /// The last `RECENT` to `2 × RECENT` points (trimmed by half when full, so it stays one
    /// slice at amortized constant cost).
    recent: Vec<Bucket>,
    pushed: u64,
}

impl Series {
    /// Appends a point (steps and times increase along a series); non-finite values are
    /// skipped.
    pub fn push(&mut self, step: f64, time: f64, y: f64) {
        if !y.is_finite() {
            return;
        }
        let p = Bucket::point(step, time, y);
        self.pushed += 1;
        if self.recent.len() == 2 * RECENT {
            self.recent.drain(..RECENT);
        }
        self.recent.push(p);
        self.span = self.span.max(1);
        match self.compact.last_mut() {
            Some(last) if self.filled < self.span => {
                *last = last.merge(p);
                self.filled += 1;
            }
            _ => {
                if self.compact.len() == COMPACT {
                    // Every bucket is full: merge them in pairs.
                    self.compact = self
                        .compact
                        .chunks(2)
                        .map(|c| c.iter().skip(1).fold(c[0], |a, b| a.merge(*b)))
                        .collect();
                    self.span *= 2;
                }
                self.compact.push(p);
                self.filled = 1;
            }
        }
    }

    /// The points to draw from x = `from` on, at the best resolution held: the recent window
    /// when it reaches back to `from` (or holds every point), else the compacted history.
    pub fn buckets(&self, axis: XAxis, from: f64) -> &[Bucket] {
        match self.recent.first() {
            Some(first) if axis.of(first) <= from || self.pushed == self.recent.len() as u64 => {
                &self.recent
            }
            _ => &self.compact,
        }
    }

    /// The last point pushed.
    pub fn last(&self) -> Option<&Bucket> {
        self.recent.last()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Buckets held (recent window and compacted history): at most `2 × RECENT + COMPACT`.
    pub fn held(&self) -> usize {
        self.recent.len() + self.compact.len()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        (self.recent.capacity() + self.compact.capacity()) * std::mem::size_of::<Bucket>()
    }

    /// The point at or before x (hover text, replay), from the best resolution held.
    pub fn value_at(&self, axis: XAxis, x: f64) -> Option<Bucket> {
        let s = self.buckets(axis, x);
        let i = s.partition_point(|b| axis.of(b) <= x);
        (i > 0).then(|| s[i - 1])
    }
}

/// At most two points per pixel column over `range` (see the module docs), as `[x, y]`.
pub fn decimate(
    buckets: &[Bucket],
    axis: XAxis,
    range: (f64, f64),
    columns: usize,
    y: impl Fn(f64) -> f64,
) -> Vec<[f64; 2]> {
    let (lo, hi) = range;
    // One point either side of the range, so lines run to the plot's edges.
    let start = buckets
        .partition_point(|b| axis.of(b) < lo)
        .saturating_sub(1);
    let end = (buckets.partition_point(|b| axis.of(b) <= hi) + 1).min(buckets.len());
    let visible = &buckets[start..end.max(start)];
    let columns = columns.max(1);
    if visible.len() <= columns {
        let mut out = Vec::with_capacity(visible.len() * 2);
        for b in visible {
            let x = axis.of(b);
            if b.min == b.max {
                out.push([x, y(b.last)]);
            } else if b.min_first {
                out.extend([[x, y(b.min)], [x, y(b.max)]]);
            } else {
                out.extend([[x, y(b.max)], [x, y(b.min)]]);
            }
        }
        return out;
    }
    let width = (hi - lo).max(f64::MIN_POSITIVE) / columns as f64;
    // Points just outside the range get columns of their own (−1 and `columns`).
    let column = |b: &Bucket| {
        let x = axis.of(b);
        if x > hi {
            columns as i64
        } else {
            (((x - lo) / width).floor().max(-1.0) as i64).min(columns as i64 - 1)
        }
    };
    let mut out = Vec::with_capacity(columns * 2 + 4);
    let mut i = 0;
    while i < visible.len() {
        let c = column(&visible[i]);
        let mut acc = visible[i];
        let mut j = i + 1;
        while j < visible.len() && column(&visible[j]) == c {
            acc = acc.merge(visible[j]);
            j += 1;
        }
        let x = axis.of(&acc);
        if acc.min == acc.max {
            out.push([x, y(acc.min)]);
        } else if acc.min_first {
            out.extend([[x, y(acc.min)], [x, y(acc.max)]]);
        } else {
            out.extend([[x, y(acc.max)], [x, y(acc.min)]]);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: u64, spike_at: u64) -> Series {
        let mut s = Series::default();
        for i in 1..=n {
            let y = if i == spike_at { 100.0 } else { (i % 7) as f64 };
            s.push(i as f64, i as f64 * 0.001, y);
        }
        s
    }

    #[test]
    fn a_spike_survives_compaction_and_decimation() {
        let s = filled(1_000_000, 333_333);
        let from_start = s.buckets(XAxis::Step, 1.0);
        assert!(from_start.len() <= COMPACT);
        let pts = decimate(from_start, XAxis::Step, (1.0, 1e6), 400, |y| y);
        assert!(pts.len() <= 2 * 400 + 4, "{}", pts.len());
        assert!(pts.iter().any(|p| p[1] == 100.0), "the spike is drawn");
        assert!(pts.iter().any(|p| p[1] == 0.0), "the minimum is drawn");
        // Zoomed into the recent window: full resolution.
        let recent = s.buckets(XAxis::Step, 999_990.0);
        let pts = decimate(recent, XAxis::Step, (999_990.0, 1e6), 400, |y| y);
        assert_eq!(pts.len(), 12, "10 points and one either side");
    }

    #[test]
    fn memory_is_bounded_and_the_order_of_extremes_is_kept() {
        let s = filled(1_000_000, 0);
        assert!(s.held() <= 2 * RECENT + COMPACT);
        assert!(s.heap_bytes() <= 4 * (2 * RECENT + COMPACT) * std::mem::size_of::<Bucket>());
        let mut t = Series::default();
        for (i, y) in [5.0, 9.0, 1.0, 4.0].into_iter().enumerate() {
            t.push(i as f64, 0.0, y);
        }
        let pts = decimate(
            t.buckets(XAxis::Step, 0.0),
            XAxis::Step,
            (0.0, 3.0),
            1,
            |y| y,
        );
        let ys: Vec<f64> = pts.iter().map(|p| p[1]).collect();
        assert_eq!(ys, vec![9.0, 1.0], "max came first");
        assert_eq!(t.value_at(XAxis::Step, 2.5).unwrap().last, 1.0);
    }
}
