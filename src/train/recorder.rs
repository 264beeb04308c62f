//! Turns what each step measured into the step's `Snapshot`, and the run into its summary;
//! shared by the on-demand loop and the lookahead pipeline, so both report the same way.

use super::{EvalPoint, TrainSummary};
use crate::telemetry::{Hotness, MemoryStats, SCHEMA_VERSION, Snapshot, StageTime, TableStats};
use std::collections::VecDeque;
use std::time::Instant;

/// Steps averaged into `final_train_loss`.
const LOSS_WINDOW: usize = 100;

/// What one training step measured.
pub(crate) struct StepRecord {
    pub step: u64,
    pub loss: f64,
    /// Per table, counted at the training step (hits and misses are the train stage's).
    pub tables: Vec<TableStats>,
    pub stages: Vec<StageTime>,
    pub hotness: Option<Vec<Hotness>>,
    pub memory: MemoryStats,
    /// Device-stage seconds working and waiting for its input.
    pub busy_s: f64,
    pub waiting_s: f64,
    /// `(AUC, log loss, seconds)` when the step evaluated.
    pub eval: Option<(Option<f64>, Option<f64>, f64)>,
    /// Whether the planner shortened its window for this batch (lookahead only).
    pub window_shrunk: Option<bool>,
}

/// Accumulates a run's steps.
pub(crate) struct Recorder {
    started: Instant,
    batch_size: u64,
    link_gbps: Option<f64>,
    pub evals: Vec<EvalPoint>,
    pub cumulative: TableStats,
    losses: VecDeque<f64>,
    pub busy_total: f64,
    pub wait_total: f64,
    pub eval_seconds: f64,
    pub window_shrinks: Option<u64>,
}

impl Recorder {
    pub fn new(batch_size: usize, link_gbps: Option<f64>) -> Self {
        Recorder {
            started: Instant::now(),
            batch_size: batch_size as u64,
            link_gbps,
            evals: Vec::new(),
            cumulative: TableStats::default(),
            losses: VecDeque::with_capacity(LOSS_WINDOW),
            busy_total: 0.0,
            wait_total: 0.0,
            eval_seconds: 0.0,
            window_shrinks: None,
        }
    }

    /// Folds one step in and returns its snapshot.
    pub fn record(&mut self, r: StepRecord) -> Snapshot {
        self.busy_total += r.busy_s;
        self.wait_total += r.waiting_s;
        if self.losses.len() == LOSS_WINDOW {
            self.losses.pop_front();
        }
        self.losses.push_back(r.loss);
        let mut total = TableStats::default();
        r.tables.iter().for_each(|t| total.accumulate(t));
        self.cumulative.add_step(&total);
        if let Some(shrunk) = r.window_shrunk {
            *self.window_shrinks.get_or_insert(0) += shrunk as u64;
        }
        let (mut test_auc, mut test_logloss) = (None, None);
        if let Some((a, l, seconds)) = r.eval {
            self.eval_seconds += seconds;
            (test_auc, test_logloss) = (a, l);
            self.evals.push(EvalPoint {
                step: r.step,
                test_auc: a,
                test_logloss: l,
            });
        }
        let samples = r.step * self.batch_size;
        let train_s = self.busy_total + self.wait_total;
        let cycle = r.busy_s + r.waiting_s;
        Snapshot {
            schema: SCHEMA_VERSION,
            step: r.step,
            samples,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            step_s: r.busy_s,
            samples_per_sec: if train_s > 0.0 {
                samples as f64 / train_s
            } else {
                0.0
            },
            loss: r.loss,
            test_auc,
            test_logloss,
            tables: r.tables,
            total,
            cumulative: self.cumulative.clone(),
            hotness: r.hotness,
            stages: r.stages,
            device_idle_fraction: Some(if cycle > 0.0 {
                r.waiting_s / cycle
            } else {
                0.0
            }),
            memory: r.memory,
            link_gbps: self.link_gbps,
            window_shrinks: self.window_shrinks,
        }
    }

    /// Mean training loss over the last steps.
    pub fn final_loss(&self) -> Option<f64> {
        (!self.losses.is_empty())
            .then(|| self.losses.iter().sum::<f64>() / self.losses.len() as f64)
    }

    /// Seconds spent training (waiting for data included, evaluation excluded).
    pub fn train_seconds(&self) -> f64 {
        self.busy_total + self.wait_total
    }

    /// Fills the fields of `summary` this recorder knows.
    pub fn complete(&self, summary: &mut TrainSummary) {
        let train_seconds = self.train_seconds();
        let samples = summary.samples;
        let last = self.evals.last();
        summary.samples_per_sec = if train_seconds > 0.0 {
            samples as f64 / train_seconds
        } else {
            0.0
        };
        summary.train_seconds = train_seconds;
        summary.eval_seconds = self.eval_seconds;
        summary.test_auc = last.and_then(|e| e.test_auc);
        summary.test_logloss = last.and_then(|e| e.test_logloss);
        summary.final_train_loss = self.final_loss();
        summary.device_idle_fraction = if train_seconds > 0.0 {
            self.wait_total / train_seconds
        } else {
            0.0
        };
        let c = &self.cumulative;
        summary.train_hit_rate = c.hit_rate();
        // The cache's own hit rate: rows found resident when the batch was planned (lookahead) or
        // stepped (on demand).
        summary.hit_rate = match c.planner_misses {
            Some(m) if c.unique_rows > 0 => 1.0 - m as f64 / c.unique_rows as f64,
            _ => c.hit_rate(),
        };
        summary.bytes_h2d = c.bytes_h2d;
        summary.bytes_d2h = c.bytes_d2h;
        summary.bytes_per_sample = (c.bytes_h2d + c.bytes_d2h) as f64 / samples.max(1) as f64;
        summary.window_shrinks = self.window_shrinks;
        summary.link_gbps = self.link_gbps;
        summary.evals = self.evals.clone();
    }
}
