//! A training run: a config becomes a dataset, a model and the pipeline's settings; the pipeline
//! trains ([`crate::pipeline`]); the run evaluates on the test split when the pipeline asks and
//! sums everything up in a [`TrainSummary`].
//!
//! Evaluation runs every `eval_every` steps and at the end, on the whole test split, reading
//! through caches without changing them.

mod resume;
mod summary;

pub use crate::pipeline::{EvalPoint, Faults};
pub use resume::{Score, restore_model, score};
pub use summary::TrainSummary;

use crate::config::{ConfigError, RunConfig};
use crate::data::{Batch, DataError, Dataset, SplitDataset};
use crate::device::Device;
use crate::metrics::{auc, log_loss};
use crate::model::{Dlrm, ModelError};
use crate::pipeline::{EvalScore, Link, PipelineError, Settings};
use crate::telemetry::Snapshot;
use std::ops::ControlFlow;
use std::time::Instant;

/// Anything that stops a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A checkpoint that cannot be read or does not fit the run.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A data problem found before training.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model cannot be built (memory, device).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training stopped: the error names the stage or says what failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Steps a run takes: `--steps`, else `epochs` × full batches per epoch.
pub fn planned_steps(cfg: &RunConfig, train_samples: u64) -> Result<u64, DataError> {
    let b = cfg.batch_size as u64;
    if b == 0 || b > train_samples {
        return Err(DataError::Invalid(format!(
            "the batch size {b} exceeds the {train_samples} training samples; lower --batch-size"
        )));
    }
    Ok(cfg.steps.unwrap_or(cfg.epochs * (train_samples / b)))
}

/// Trains the model described by `cfg` on `data` with device `dev`, calling `on_step` with each
/// step's snapshot.
pub fn train<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    data: &dyn Dataset,
    on_step: &mut dyn FnMut(&Snapshot),
) -> Result<TrainSummary, TrainError> {
    let mut each = |s: &Snapshot| {
        on_step(s);
        ControlFlow::Continue(())
    };
    train_model(dev, cfg, data, &Faults::default(), &mut each).map(|(summary, _)| summary)
}

/// [`train`], also returning the trained model (its host stores hold every write-back), with
/// `faults` injected into the lookahead pipeline (none by default; the hazard tests turn the
/// feature `fault-injection` on to ask for some). `on_step` may stop the run after any step by
/// answering `Break` (rowflow-studio's Stop): the step already launched after it (the host
/// records a step while the device runs the one before) still runs and is reported; the summary
/// counts the steps that ran, and its test AUC is the last evaluation's, if any.
pub fn train_model<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    data: &dyn Dataset,
    faults: &Faults,
    on_step: &mut dyn FnMut(&Snapshot) -> ControlFlow<()>,
) -> Result<(TrainSummary, Dlrm<D>), TrainError> {
    cfg.validate()?;
    let steps = planned_steps(cfg, data.train_samples())?;
    let full_schema = data.schema().clone();
    // With DHE features, the pipeline carries batches split by the model's layout: the tables'
    // lookups (which the loader maps, the planner plans and the caches serve) and the DHEs' ids.
    let layout = cfg.model.layout(full_schema.table_rows.len())?;
    let split;
    let data: &dyn Dataset = match layout.tables_only() {
        true => data,
        false => {
            split = SplitDataset::new(data, layout.split.clone())?;
            &split
        }
    };
    let test = data.test();
    let capacity = cfg
        .batch_size
        .max(cfg.eval_batch_size.min(test.len()).max(1));
    let schema = data.schema();
    let placement = cfg.placement(&schema.table_rows)?;
    let cached = placement.policy.is_cached();
    let lookahead =
        (placement.policy == crate::embedding::Policy::Lookahead).then_some(cfg.lookahead);
    let mut model = Dlrm::new(dev, &cfg.model, &full_schema, placement, capacity, cfg.seed)?;
    let start_step = match &cfg.resume {
        Some(dir) => {
            let ckpt = resume::load_for(dir, cfg, steps)?;
            model.restore_from(dev, &ckpt)?;
            ckpt.step
        }
        None => 0,
    };
    // A kernel profile covers the training loop and its evaluations, not the tables' start.
    if dev.kernel_profile().is_some() {
        dev.start_kernel_profile();
    }
    let settings = Settings {
        steps,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        lookahead,
        hotness_every: cfg.hotness_every,
        eval_every: cfg.eval_every,
        link: Link::new(cfg.link_gbps),
        faults: faults.clone(),
        loader_threads: cfg
            .thread_split(dev.info().backend, crate::config::machine_cores())
            .loader,
        first_step: start_step + 1,
        save_every: cfg.save.as_ref().map(|_| cfg.save_every),
    };
    // A cache must hold one batch's rows, so cached runs evaluate in training-sized batches,
    // which are known to fit.
    let eval_batch = if cached {
        cfg.batch_size
    } else {
        cfg.eval_batch_size
    };
    let mut scratch = (
        Batch::new(schema.num_dense, schema.table_rows.len()),
        Vec::new(),
    );
    let mut evaluate = |dev: &D, model: &mut Dlrm<D>| -> Result<EvalScore, ModelError> {
        let t0 = Instant::now();
        let (a, l) = evaluate(dev, model, test, eval_batch, &mut scratch)?;
        Ok((a, l, t0.elapsed().as_secs_f64()))
    };
    let mut save = |dev: &D, model: &Dlrm<D>, step: u64| match &cfg.save {
        Some(dir) => resume::save(dev, model, cfg, dir, step),
        None => Ok(()),
    };
    let record = crate::pipeline::run(
        dev,
        &mut model,
        data,
        &settings,
        &mut evaluate,
        &mut save,
        on_step,
    )?;
    let ran = record.steps().max(start_step);
    let summary = TrainSummary::new(dev, cfg, data, &model, (start_step, ran), record);
    Ok((summary, model))
}

/// AUC and log loss of the model on the whole test split, in batches of `batch_size`.
pub fn evaluate<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    test: &Batch,
    batch_size: usize,
    scratch: &mut (Batch, Vec<f32>),
) -> Result<(Option<f64>, Option<f64>), ModelError> {
    let (chunk, probs) = scratch;
    probs.clear();
    let step = batch_size.min(model.capacity()).max(1);
    let mut start = 0;
    while start < test.len() {
        let len = step.min(test.len() - start);
        test.copy_range_into(start, len, chunk);
        model.predict(dev, chunk, probs)?;
        start += len;
    }
    let a = auc(probs.as_slice(), &test.labels);
    let l = log_loss(probs.as_slice(), &test.labels);
    Ok((a.is_finite().then_some(a), l.is_finite().then_some(l)))
}

/// Opens the dataset `cfg` names: the synthetic generator or a Criteo file.
pub fn open_dataset(cfg: &RunConfig) -> Result<Box<dyn Dataset>, TrainError> {
    cfg.validate()?;
    if cfg.is_synthetic() {
        let rows = cfg.table_rows.per_table(cfg.synthetic.tables)?;
        let ds = crate::data::synthetic::SyntheticDataset::new(&cfg.synthetic, &rows, cfg.seed)?;
        Ok(Box::new(ds))
    } else {
        let rows = cfg.table_rows.per_table(crate::data::criteo::NUM_SPARSE)?;
        let ds = crate::data::criteo::CriteoDataset::open(crate::data::criteo::CriteoOptions {
            path: cfg.data.clone().into(),
            table_rows: rows,
            test_fraction: cfg.test_fraction,
            skip_bad_lines: cfg.skip_bad_lines,
            multi_hot: cfg.multi_hot_columns()?,
        })?;
        Ok(Box::new(ds))
    }
}
