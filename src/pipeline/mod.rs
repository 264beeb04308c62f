//! The training pipeline: stages on their own threads, joined by bounded channels, so host work
//! for the next batches overlaps the device work of the current one — one pipeline and one
//! device loop for every placement policy.
//!
//! ```text
//!  loader ──► planner ──► stager ──────► device step ──────► write-back
//!  batches,   window of   gathers the    quantizes victims   downloads the
//!  row maps,  W batches:  misses' packed into victim         victims, scatters
//!  hotness    hits,       rows, uploads  buffers, expands    them into the
//!             misses,     them to device the uploaded rows,  host store
//!             victims,    staging        trains              │ progress: the stager waits
//!             slots       ◄──────────────────────────────────┘ for a row's write-back
//!                ▲  rows unpin when a step is done               before it reads the row
//!                └───────────────────────────────────┘
//! ```
//! A policy is data the pipeline consults: with `lookahead` every stage above runs; the other
//! policies (`all-on-device`, `host-only`, `lru`, `lfu`) have no planner, stager or write-back
//! work, so the loader feeds the device step directly and the device step makes each batch's
//! rows resident itself ([`crate::embedding::Residency::OnDemand`]). Either way the same loop
//! ([`steps`]) trains, times the stages, produces each step's `Snapshot` (`recorder`) and maps
//! every failure to the stage that failed ([`PipelineError`]). The loop launches step n+1
//! before it waits for step n's loss, so the host records a step while the device runs the one
//! before (each snapshot's `overlapped` says whether it did).
//!
//! Lookahead rules (DESIGN.md, ScratchPipe):
//! - The planner ([`planner`]) pins every row of the batches in its window and in flight, so the
//!   training step finds its rows resident: `train_hit_rate` is 1 — and it is *counted* by the
//!   device step, which checks each row and fetches any missing one synchronously.
//! - A victim's write-back completes before a later fetch of that row reads the host store: each
//!   plan records the step of the evictions its fetches depend on, and the stager waits for the
//!   write-back stage to reach it ([`writeback::Progress`]).
//! - The device step moves no embedding rows between host and device itself: the stager uploads
//!   the fetched rows into circulating device staging and the write-back stage downloads the
//!   victims from circulating victim buffers. On a GPU with a copy engine both transfers run
//!   while the device trains; the device step reads back only the step's loss, and returns a
//!   step's staging to the stager once that loss has landed (its kernels have finished).
//!
//! Imports: `data`, `device`, `embedding`, `model`, `telemetry` and the leaves; never `train` or
//! `config` (a run hands the pipeline its [`Settings`]).

mod device;
mod faults;
mod link;
mod loader;
pub mod planner;
mod priority;
mod recorder;
mod side;
mod stage;
mod stager;
mod steps;
mod window;
mod writeback;

pub use device::run;
pub use faults::Faults;
pub use link::Link;
pub use loader::{Prepared, time_loader};
pub use recorder::{EvalPoint, EvalScore, Recorder};

use crate::data::DataError;
use crate::device::{Device, DeviceError};
use crate::embedding::EmbeddingError;
use crate::embedding::transfer::{DeviceRows, FetchedRows, SlotPlan};
use crate::model::{Dlrm, ModelError};

/// What stops a pipeline, naming the stage where it could not be said better by the error
/// itself.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The loader could not read or generate data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model (or its embeddings, or the device under it) failed in the device step.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The planner or stager found a batch the tables cannot take (a cache too small for one
    /// batch, a row past its table).
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
    /// A transfer of the stager or the write-back stage failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A checkpoint could not be written.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A stage's thread stopped without saying why (it panicked; its message is above).
    #[error("the {stage} stage stopped unexpectedly (it panicked; see the message above)")]
    StageDied {
        /// The stage: `loader`, `planner`, `stager`, `device` or `writeback`.
        stage: &'static str,
    },
    /// The stages disagreed about a batch: a bug in rowflow, not in the run's input.
    #[error(
        "the pipeline's stages disagree at step {step}: {message} (a bug in rowflow; please report it)"
    )]
    Inconsistent {
        /// The step.
        step: u64,
        /// What did not match.
        message: &'static str,
    },
    /// A stage's thread could not be started.
    #[error("cannot start the {stage} stage's thread: {source}")]
    Spawn {
        /// The stage.
        stage: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the pipeline needs to know about a run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Training steps.
    pub steps: u64,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f32,
    /// Batches the lookahead planner sees ahead; `None`: the policy has no planner.
    pub lookahead: Option<usize>,
    /// Steps between row-hotness reports (0: never).
    pub hotness_every: u64,
    /// Evaluate every this many steps (0: only after the last).
    pub eval_every: u64,
    /// The modelled host↔device link.
    pub link: Link,
    /// Faults to inject (tests of the lookahead hazards; none by default).
    pub faults: Faults,
    /// Threads preparing batches (at least 1); the batches are the same for any number.
    pub loader_threads: usize,
    /// The first step to train (1; later when resuming from a checkpoint of step
    /// `first_step - 1`): batches, rounding noise and evaluations follow the step number.
    pub first_step: u64,
    /// Save a checkpoint every this many steps (0: only after the last); `None`: never.
    pub save_every: Option<u64>,
}

impl Settings {
    /// Whether step `step` evaluates on the test split.
    pub fn evaluates(&self, step: u64) -> bool {
        (self.eval_every > 0 && step % self.eval_every == 0) || step == self.steps
    }

    /// Whether step `step` saves a checkpoint.
    pub fn saves(&self, step: u64) -> bool {
        match self.save_every {
            None => false,
            Some(n) => (n > 0 && step % n == 0) || step == self.steps,
        }
    }
}

/// A batch on its way to the device step: prepared by the loader and, with a planner, placed.
pub struct Ready<D: Device> {
    step: u64,
    prepared: Prepared,
    placed: Option<Placed<D>>,
}

/// A batch the planner planned, on its way to the stager.
pub struct Planned<D: Device> {
    ready: Ready<D>,
    plans: Vec<SlotPlan>,
    schedule: Schedule,
}

/// What the planner says of a batch's place in time, carried to the device stage.
#[derive(Clone, Copy)]
struct Schedule {
    /// The latest step whose write-back the fetches depend on (0: none).
    depends_on: u64,
    /// Whether the planner had to shorten its window for this batch.
    shrunk: bool,
}

/// A batch's rows placed ahead: fetched from the stores and uploaded to device staging.
pub struct Placed<D: Device> {
    fetched: Vec<FetchedRows>,
    uploads: Vec<DeviceRows<D>>,
    schedule: Schedule,
}

/// Evaluates a model on the test split (the run's business): called at the steps
/// [`Settings::evaluates`] names, after every write-back so far has landed.
pub type Evaluate<'a, D> = dyn FnMut(&D, &mut Dlrm<D>) -> Result<EvalScore, ModelError> + 'a;

/// Saves a checkpoint of a model after step `step` (the run's business): called at the steps
/// [`Settings::saves`] names, after every write-back so far has landed.
pub type Save<'a, D> = dyn FnMut(&D, &Dlrm<D>, u64) -> Result<(), PipelineError> + 'a;
