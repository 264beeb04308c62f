//! What a run sends the UI: `Frame`s of cumulative counters, made from rowflow's per-step
//! `Snapshot` stream by an [`Accumulator`].
//!
//! Every count in a frame is a total since the run began, so a frame the UI never receives
//! (the worker drops frames rather than wait) costs resolution, never totals: the next frame
//! carries the sums. What is not a running total is carried until delivered: evaluations are
//! queued, and the latest row-hotness report waits for the next delivered frame.

use rowflow::telemetry::{Hotness, MemoryStats, Snapshot, StageTime, TableStats};

/// One evaluation on the test split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eval {
    /// Steps trained before it.
    pub step: u64,
    /// Seconds since training began.
    pub elapsed_s: f64,
    /// Test AUC (`None` with one class only).
    pub auc: Option<f64>,
    /// Test log loss.
    pub logloss: Option<f64>,
}

/// The state of a run after a step, as running totals.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// 1-based step.
    pub step: u64,
    /// Training samples so far.
    pub samples: u64,
    /// Seconds since training began.
    pub elapsed_s: f64,
    /// Training samples per second so far.
    pub samples_per_sec: f64,
    /// This step's loss.
    pub loss: f64,
    /// Sum of every step's loss so far.
    pub loss_sum: f64,
    /// Per table, counts since the run began.
    pub tables: Vec<TableStats>,
    /// All tables, counts since the run began.
    pub total: TableStats,
    /// Per stage, busy and waiting seconds since the run began.
    pub stages: Vec<StageTime>,
    /// Memory held now.
    pub memory: MemoryStats,
    /// Evaluations not yet delivered, in order.
    pub evals: Vec<Eval>,
    /// The latest row-hotness report not yet delivered (counts since the run began).
    pub hotness: Option<Vec<Hotness>>,
}

/// Turns snapshots into frames; keeps what a dropped frame must not lose.
#[derive(Default)]
pub struct Accumulator {
    tables: Vec<TableStats>,
    stages: Vec<StageTime>,
    loss_sum: f64,
    evals: Vec<Eval>,
    hotness: Option<Vec<Hotness>>,
}

impl Accumulator {
    /// The frame after `s`. Evaluations and hotness stay pending until [`Self::delivered`].
    pub fn push(&mut self, s: &Snapshot) -> Frame {
        if self.tables.len() < s.tables.len() {
            self.tables.resize(s.tables.len(), TableStats::default());
        }
        for (sum, t) in self.tables.iter_mut().zip(&s.tables) {
            sum.table = t.table;
            sum.add_step(t);
        }
        for st in &s.stages {
            match self.stages.iter_mut().find(|x| x.stage == st.stage) {
                Some(x) => {
                    x.busy_s += st.busy_s;
                    x.waiting_s += st.waiting_s;
                }
                None => self.stages.push(st.clone()),
            }
        }
        self.loss_sum += s.loss;
        if s.test_auc.is_some() || s.test_logloss.is_some() {
            self.evals.push(Eval {
                step: s.step,
                elapsed_s: s.elapsed_s,
                auc: s.test_auc,
                logloss: s.test_logloss,
            });
        }
        if s.hotness.is_some() {
            self.hotness = s.hotness.clone();
        }
        // The total over tables, from the tables' running totals (rowflow's `cumulative`, summed
        // the same way).
        let mut total = TableStats::default();
        self.tables.iter().for_each(|t| total.accumulate(t));
        Frame {
            step: s.step,
            samples: s.samples,
            elapsed_s: s.elapsed_s,
            samples_per_sec: s.samples_per_sec,
            loss: s.loss,
            loss_sum: self.loss_sum,
            tables: self.tables.clone(),
            total,
            stages: self.stages.clone(),
            memory: s.memory.clone(),
            evals: self.evals.clone(),
            hotness: self.hotness.clone(),
        }
    }

    /// The last frame made reached the UI: its evaluations and hotness are no longer pending.
    pub fn delivered(&mut self) {
        self.evals.clear();
        self.hotness = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rowflow::telemetry::SCHEMA_VERSION;

    pub(crate) fn snapshot(step: u64, hits: u64, eval: bool) -> Snapshot {
        let t = TableStats {
            table: Some(0),
            lookups: 10,
            unique_rows: 8,
            hits,
            misses: 8 - hits,
            bytes_h2d: 64 * (8 - hits),
            ..TableStats::default()
        };
        Snapshot {
            schema: SCHEMA_VERSION,
            step,
            samples: step * 4,
            elapsed_s: step as f64 * 0.01,
            step_s: 0.01,
            samples_per_sec: 400.0,
            loss: 0.5,
            test_auc: eval.then_some(0.7),
            test_logloss: eval.then_some(0.5),
            tables: vec![t.clone()],
            total: t.clone(),
            cumulative: TableStats { table: None, ..t },
            hotness: None,
            stages: vec![StageTime {
                stage: "device".into(),
                busy_s: 0.008,
                waiting_s: 0.002,
            }],
            device_idle_fraction: Some(0.2),
            memory: MemoryStats::default(),
            link_gbps: None,
            window_shrinks: None,
            overlapped: false,
        }
    }

    #[test]
    fn a_dropped_frame_loses_resolution_not_totals_or_evaluations() {
        let mut acc = Accumulator::default();
        let first = acc.push(&snapshot(1, 6, false));
        acc.delivered();
        // Frame 2 (with an evaluation) is dropped; frame 3 is delivered.
        let _dropped = acc.push(&snapshot(2, 4, true));
        let third = acc.push(&snapshot(3, 8, false));
        assert_eq!(first.tables[0].hits, 6);
        assert_eq!(third.tables[0].hits, 6 + 4 + 8);
        assert_eq!(third.tables[0].unique_rows, 24);
        assert!((third.stages[0].busy_s - 0.024).abs() < 1e-12);
        assert!((third.loss_sum - 1.5).abs() < 1e-12);
        assert_eq!(
            third.evals.len(),
            1,
            "the dropped frame's evaluation is carried"
        );
        assert_eq!(third.evals[0].step, 2);
        acc.delivered();
        assert!(acc.push(&snapshot(4, 8, false)).evals.is_empty());
    }
}
