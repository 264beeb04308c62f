//! Turns what each step measured into the step's `Snapshot` — the one place snapshots are made —
//! and the run into its totals.

use crate::telemetry::{Hotness, MemoryStats, SCHEMA_VERSION, Snapshot, StageTime, TableStats};
use std::collections::VecDeque;
use std::time::Instant;

/// Steps averaged into `final_train_loss`.
const LOSS_WINDOW: usize = 100;

/// One evaluation on the test split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalPoint {
    /// Steps trained before it.
    pub step: u64,
    /// Exact AUC (`null` if the test split has one class only).
    pub test_auc: Option<f64>,
    /// Mean log loss.
    pub test_logloss: Option<f64>,
}

/// What one evaluation measured: AUC and log loss (each `None` where undefined), and seconds.
pub type EvalScore = (Option<f64>, Option<f64>, f64);

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
    pub eval: Option<EvalScore>,
    /// Whether the planner shortened its window for this batch (lookahead only).
    pub window_shrunk: Option<bool>,
    /// Whether the host had recorded this whole step before the device finished the previous.
    pub overlapped: bool,
}

impl StepRecord {
    /// Sets the device stage's time (`lap`, named `device`): its entry among the stages and
    /// the step's busy and waiting seconds.
    pub fn set_device_time(&mut self, lap: StageTime) {
        self.busy_s = lap.busy_s;
        self.waiting_s = lap.waiting_s;
        match self.stages.iter_mut().find(|s| s.stage == lap.stage) {
            Some(s) => *s = lap,
            None => self.stages.push(lap),
        }
    }
}

/// A run's record: accumulates its steps, makes each step's snapshot, and holds the totals the
/// run's summary is made of.
pub struct Recorder {
    started: Instant,
    batch_size: u64,
    link_gbps: Option<f64>,
    evals: Vec<EvalPoint>,
    cumulative: TableStats,
    losses: VecDeque<f64>,
    busy_total: f64,
    wait_total: f64,
    eval_seconds: f64,
    window_shrinks: Option<u64>,
    overlapped_steps: u64,
    steps: u64,
    pub(super) transfer_bytes: u64,
}

impl Recorder {
    /// An empty record of a run with batches of `batch_size` and the modelled link.
    pub(super) fn new(batch_size: usize, link_gbps: Option<f64>) -> Self {
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
            overlapped_steps: 0,
            steps: 0,
            transfer_bytes: 0,
        }
    }

    /// Folds one step in and returns its snapshot.
    pub(super) fn record(&mut self, r: StepRecord) -> Snapshot {
        self.steps = r.step;
        self.busy_total += r.busy_s;
        self.wait_total += r.waiting_s;
        if self.losses.len() == LOSS_WINDOW {
            self.losses.pop_front();
        }
        self.losses.push_back(r.loss);
        let mut total = TableStats::default();
        r.tables.iter().for_each(|t| total.accumulate(t));
        self.cumulative.add_step(&total);
        self.overlapped_steps += r.overlapped as u64;
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
            overlapped: r.overlapped,
        }
    }

    /// Steps recorded: the run's steps, or fewer when it was stopped.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Every evaluation, in order.
    pub fn evals(&self) -> &[EvalPoint] {
        &self.evals
    }

    /// Lookups, hits, misses and bytes over the run, all tables together.
    pub fn cumulative(&self) -> &TableStats {
        &self.cumulative
    }

    /// Mean training loss over the last steps (up to 100).
    pub fn final_loss(&self) -> Option<f64> {
        (!self.losses.is_empty())
            .then(|| self.losses.iter().sum::<f64>() / self.losses.len() as f64)
    }

    /// Seconds spent training (waiting for data included, evaluation excluded).
    pub fn train_seconds(&self) -> f64 {
        self.busy_total + self.wait_total
    }

    /// Of those, seconds the device stage waited for its input.
    pub fn idle_seconds(&self) -> f64 {
        self.wait_total
    }

    /// Seconds spent evaluating.
    pub fn eval_seconds(&self) -> f64 {
        self.eval_seconds
    }

    /// Batches for which the lookahead planner shortened its window (`None` without one).
    pub fn window_shrinks(&self) -> Option<u64> {
        self.window_shrinks
    }

    /// Steps the host had recorded whole before the device finished the step before.
    pub fn overlapped_steps(&self) -> u64 {
        self.overlapped_steps
    }

    /// The modelled host↔device link, GB/s.
    pub fn link_gbps(&self) -> Option<f64> {
        self.link_gbps
    }

    /// Device bytes of the pipeline's own transfer buffers (lookahead: upload sets and victim
    /// buffers), which carry embedding rows and count as embedding memory.
    pub fn transfer_bytes(&self) -> u64 {
        self.transfer_bytes
    }
}
