//! One run's histories: every series the views draw, derived from the run's frames.
//!
//! Values per step are differences of running totals between two received frames divided by
//! the steps between them, so a dropped frame widens one interval and changes no total.

use crate::feed::{Eval, Frame};
use crate::history::{Series, XAxis};
use crate::hotness::HotTable;
use rowflow::telemetry::{StageTime, TableStats};

/// Weight of the past in the smoothed loss (TensorBoard's smoothing, debiased).
pub const EMA: f64 = 0.98;

/// One pipeline stage's lanes.
#[derive(Clone, Debug, Default)]
pub struct StageSeries {
    /// `loader`, `planner`, `stager`, `device`, `writeback`.
    pub stage: String,
    /// Milliseconds busy per step.
    pub busy_ms: Series,
    /// Milliseconds waiting per step.
    pub waiting_ms: Series,
}

/// Every history of one run.
#[derive(Clone, Debug, Default)]
pub struct RunHistory {
    /// Train-stage hit rate over all tables.
    pub hit_rate: Series,
    /// Planner hit rate over all tables (lookahead only).
    pub planner_hit_rate: Series,
    /// Train-stage hit rate per table.
    pub table_hit_rate: Vec<Series>,
    /// Planner hit rate per table.
    pub table_planner_hit_rate: Vec<Series>,
    /// Embedding bytes host → device per step.
    pub h2d_per_step: Series,
    /// Embedding bytes device → host per step.
    pub d2h_per_step: Series,
    /// Embedding bytes host → device since the start.
    pub h2d_total: Series,
    /// Embedding bytes device → host since the start.
    pub d2h_total: Series,
    /// Bytes moved (both ways) per training sample.
    pub bytes_per_sample: Series,
    /// Per stage: busy and waiting per step.
    pub stages: Vec<StageSeries>,
    /// Fraction of each interval the device stage waited for input.
    pub device_idle: Series,
    /// Host backing store bytes.
    pub host_store: Series,
    /// Device cache bytes (rows and optimizer state).
    pub device_cache: Series,
    /// The tables fully in FP32, bytes.
    pub fp32_equivalent: Series,
    /// FP32-equivalent bytes over the bytes held (host store + device cache).
    pub memory_reduction: Series,
    /// Mean loss per interval.
    pub loss: Series,
    /// Smoothed loss.
    pub loss_smoothed: Series,
    /// Test AUC at each evaluation.
    pub auc: Series,
    /// Test log loss at each evaluation.
    pub logloss: Series,
    /// Training samples per second so far.
    pub samples_per_sec: Series,
    /// Row hotness per table.
    pub hotness: Vec<HotTable>,
    /// The last frame received (its running totals).
    last: Option<Frame>,
    ema: (f64, f64),
    /// Frames received.
    pub frames: u64,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn diff(later: &TableStats, earlier: Option<&TableStats>) -> TableStats {
    let e = earlier.cloned().unwrap_or_default();
    TableStats {
        lookups: later.lookups - e.lookups.min(later.lookups),
        unique_rows: later.unique_rows - e.unique_rows.min(later.unique_rows),
        hits: later.hits - e.hits.min(later.hits),
        misses: later.misses - e.misses.min(later.misses),
        planner_misses: later
            .planner_misses
            .map(|m| m - e.planner_misses.unwrap_or(0).min(m)),
        bytes_h2d: later.bytes_h2d - e.bytes_h2d.min(later.bytes_h2d),
        bytes_d2h: later.bytes_d2h - e.bytes_d2h.min(later.bytes_d2h),
        ..later.clone()
    }
}

fn stage<'a>(stages: &'a [StageTime], name: &str) -> Option<&'a StageTime> {
    stages.iter().find(|s| s.stage == name)
}

impl RunHistory {
    /// The step of the last frame received.
    pub fn last_step(&self) -> u64 {
        self.last.as_ref().map_or(0, |f| f.step)
    }

    /// The last frame received.
    pub fn last_frame(&self) -> Option<&Frame> {
        self.last.as_ref()
    }

    /// Folds one frame in.
    pub fn ingest(&mut self, f: Frame) {
        let prev = self.last.take();
        let prev_step = prev.as_ref().map_or(0, |p| p.step);
        if f.step <= prev_step {
            // Out of order (cannot happen from one run): ignore rather than draw backwards.
            self.last = prev;
            return;
        }
        let steps = (f.step - prev_step) as f64;
        let (x, t) = (f.step as f64, f.elapsed_s);
        self.frames += 1;

        let total = diff(&f.total, prev.as_ref().map(|p| &p.total));
        push_rates(&mut self.hit_rate, &mut self.planner_hit_rate, &total, x, t);
        let n = f.tables.len();
        self.table_hit_rate.resize_with(n, Series::default);
        self.table_planner_hit_rate.resize_with(n, Series::default);
        for (i, table) in f.tables.iter().enumerate() {
            let d = diff(table, prev.as_ref().and_then(|p| p.tables.get(i)));
            push_rates(
                &mut self.table_hit_rate[i],
                &mut self.table_planner_hit_rate[i],
                &d,
                x,
                t,
            );
        }

        self.h2d_per_step.push(x, t, total.bytes_h2d as f64 / steps);
        self.d2h_per_step.push(x, t, total.bytes_d2h as f64 / steps);
        self.h2d_total.push(x, t, f.total.bytes_h2d as f64);
        self.d2h_total.push(x, t, f.total.bytes_d2h as f64);
        let samples = f.samples - prev.as_ref().map_or(0, |p| p.samples).min(f.samples);
        if let Some(b) = ratio(total.bytes_h2d + total.bytes_d2h, samples) {
            self.bytes_per_sample.push(x, t, b);
        }

        for st in &f.stages {
            let before = prev.as_ref().and_then(|p| stage(&p.stages, &st.stage));
            let (busy0, wait0) = before.map_or((0.0, 0.0), |b| (b.busy_s, b.waiting_s));
            let lane = match self.stages.iter().position(|s| s.stage == st.stage) {
                Some(i) => &mut self.stages[i],
                None => {
                    self.stages.push(StageSeries {
                        stage: st.stage.clone(),
                        ..StageSeries::default()
                    });
                    self.stages.last_mut().expect("just pushed")
                }
            };
            lane.busy_ms.push(x, t, (st.busy_s - busy0) * 1e3 / steps);
            lane.waiting_ms
                .push(x, t, (st.waiting_s - wait0) * 1e3 / steps);
            if st.stage == "device" {
                let cycle = st.busy_s - busy0 + st.waiting_s - wait0;
                if cycle > 0.0 {
                    self.device_idle.push(x, t, (st.waiting_s - wait0) / cycle);
                }
            }
        }

        let m = &f.memory;
        if let Some(h) = m.host_store_bytes {
            self.host_store.push(x, t, h as f64);
        }
        self.device_cache.push(x, t, m.device_cache_bytes as f64);
        self.fp32_equivalent
            .push(x, t, m.fp32_equivalent_bytes as f64);
        let held = m.host_store_bytes.unwrap_or(0) + m.device_cache_bytes;
        if let Some(r) = ratio(m.fp32_equivalent_bytes, held) {
            self.memory_reduction.push(x, t, r);
        }

        let loss = (f.loss_sum - prev.as_ref().map_or(0.0, |p| p.loss_sum)) / steps;
        self.loss.push(x, t, loss);
        // Debiased EMA, one update per step the interval covers.
        let w = EMA.powf(steps);
        self.ema.0 = w * self.ema.0 + (1.0 - w) * loss;
        self.ema.1 = w * self.ema.1 + (1.0 - w);
        self.loss_smoothed.push(x, t, self.ema.0 / self.ema.1);
        for e in &f.evals {
            self.push_eval(e);
        }
        self.samples_per_sec.push(x, t, f.samples_per_sec);

        if let Some(reports) = &f.hotness {
            self.hotness.resize_with(reports.len(), HotTable::default);
            for (h, r) in self.hotness.iter_mut().zip(reports) {
                h.ingest(r, f.step, t);
            }
        }
        self.last = Some(Frame {
            hotness: None,
            evals: Vec::new(),
            ..f
        });
    }

    fn push_eval(&mut self, e: &Eval) {
        if let Some(a) = e.auc {
            self.auc.push(e.step as f64, e.elapsed_s, a);
        }
        if let Some(l) = e.logloss {
            self.logloss.push(e.step as f64, e.elapsed_s, l);
        }
    }

    /// Every series with its name and unit, for export (`table N` series per table).
    pub fn named_series(&self) -> Vec<(String, &'static str, &Series)> {
        let mut out = vec![
            ("hit_rate".to_string(), "fraction", &self.hit_rate),
            (
                "planner_hit_rate".into(),
                "fraction",
                &self.planner_hit_rate,
            ),
        ];
        for (i, s) in self.table_hit_rate.iter().enumerate() {
            out.push((format!("table{i}_hit_rate"), "fraction", s));
        }
        for (i, s) in self.table_planner_hit_rate.iter().enumerate() {
            out.push((format!("table{i}_planner_hit_rate"), "fraction", s));
        }
        out.extend([
            ("h2d_per_step".into(), "bytes", &self.h2d_per_step),
            ("d2h_per_step".into(), "bytes", &self.d2h_per_step),
            ("h2d_total".into(), "bytes", &self.h2d_total),
            ("d2h_total".into(), "bytes", &self.d2h_total),
            ("bytes_per_sample".into(), "bytes", &self.bytes_per_sample),
        ]);
        for s in &self.stages {
            out.push((format!("{}_busy_ms", s.stage), "ms", &s.busy_ms));
            out.push((format!("{}_waiting_ms", s.stage), "ms", &s.waiting_ms));
        }
        out.extend([
            ("device_idle".into(), "fraction", &self.device_idle),
            ("host_store_bytes".into(), "bytes", &self.host_store),
            ("device_cache_bytes".into(), "bytes", &self.device_cache),
            (
                "fp32_equivalent_bytes".into(),
                "bytes",
                &self.fp32_equivalent,
            ),
            ("memory_reduction".into(), "ratio", &self.memory_reduction),
            ("loss".into(), "", &self.loss),
            ("loss_smoothed".into(), "", &self.loss_smoothed),
            ("test_auc".into(), "", &self.auc),
            ("test_logloss".into(), "", &self.logloss),
            ("samples_per_sec".into(), "1/s", &self.samples_per_sec),
        ]);
        out
    }

    /// Heap bytes held by the histories (bounded whatever the run's length).
    pub fn heap_bytes(&self) -> usize {
        self.named_series()
            .iter()
            .map(|(_, _, s)| s.heap_bytes())
            .sum::<usize>()
            + self.hotness.iter().map(HotTable::heap_bytes).sum::<usize>()
    }

    /// The x-range of the run on `axis`.
    pub fn x_range(&self, axis: XAxis) -> Option<(f64, f64)> {
        let first = self.loss.buckets(axis, f64::NEG_INFINITY).first()?;
        let last = self.loss.last()?;
        Some((axis.of(first), axis.of(last)))
    }
}

fn push_rates(train: &mut Series, planner: &mut Series, d: &TableStats, x: f64, t: f64) {
    if d.unique_rows == 0 {
        return;
    }
    let u = d.unique_rows as f64;
    train.push(x, t, d.hits as f64 / u);
    if let Some(m) = d.planner_misses {
        planner.push(x, t, 1.0 - m as f64 / u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Accumulator;
    use rowflow::telemetry::{Hotness, Snapshot};

    #[test]
    fn rates_over_a_dropped_frame_are_the_intervals_and_memory_stays_bounded() {
        let mut acc = Accumulator::default();
        let mut run = RunHistory::default();
        let base = crate::feed::tests::snapshot;
        run.ingest(acc.push(&base(1, 6, false)));
        acc.delivered();
        let _dropped = acc.push(&base(2, 2, false));
        run.ingest(acc.push(&base(3, 8, false)));
        acc.delivered();
        // Steps 2 and 3: 10 hits of 16 unique rows.
        assert_eq!(run.hit_rate.last().unwrap().last, 10.0 / 16.0);
        assert_eq!(run.h2d_per_step.last().unwrap().last, 64.0 * 6.0 / 2.0);
        assert_eq!(run.h2d_total.last().unwrap().last, 64.0 * 8.0);

        // A million steps with hotness reports: the histories stay bounded.
        let mut s: Snapshot = base(4, 4, true);
        s.hotness = Some(vec![Hotness {
            table: 0,
            histogram: vec![100, 10, 1],
            top: Vec::new(),
            rows: 1000,
            id_buckets: vec![1; 64],
            cached_buckets: Some(vec![2; 64]),
        }]);
        let mut bytes_at = Vec::new();
        for step in 4..=1_000_000u64 {
            s.step = step;
            s.samples = step * 4;
            s.elapsed_s = step as f64 * 0.01;
            let report = step % 100 == 0;
            s.test_auc = report.then_some(0.7);
            if let Some(h) = s.hotness.as_mut() {
                h[0].id_buckets.iter_mut().for_each(|c| *c += 3);
            }
            let mut f = acc.push(&s);
            if !report {
                f.hotness = None;
            }
            run.ingest(f);
            acc.delivered();
            if step == 100_000 || step == 1_000_000 {
                bytes_at.push(run.heap_bytes());
            }
        }
        assert!(bytes_at[1] <= bytes_at[0] + bytes_at[0] / 4, "{bytes_at:?}");
        assert!(bytes_at[1] < 8 << 20, "{bytes_at:?}");
    }
}
