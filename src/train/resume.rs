//! Checkpoints of a run: what `--save` writes after a step, and what `--resume` checks before
//! it continues — the checkpoint must come from a run of the same model, data and placement,
//! or the resumed run would not be the one that was saved.

use super::TrainError;
use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::config::{ConfigError, RunConfig};
use crate::device::Device;
use crate::model::Dlrm;
use crate::pipeline::PipelineError;
use std::path::Path;

/// Settings a resumed run must share with the saved one: they shape the model, the data it
/// sees, or where its rows live.
const SAME: [&str; 15] = [
    "data",
    "batch_size",
    "seed",
    "table_rows",
    "test_fraction",
    "multi_hot",
    "multi_hot_separator",
    "policy",
    "precision",
    "rounding",
    "cache_fraction",
    "cache_rows",
    "lookahead",
    "model",
    "synthetic",
];

/// Loads the checkpoint `dir` for `cfg`, whose `steps` must exceed its step; refuses one
/// saved with other settings, naming the first that differs.
pub fn load_for(dir: &Path, cfg: &RunConfig, steps: u64) -> Result<Checkpoint, TrainError> {
    let ckpt = checkpoint::load(dir)?;
    let now = serde_json::to_value(cfg).unwrap_or_default();
    for key in SAME {
        let (saved, mine) = (&ckpt.config[key], &now[key]);
        if saved != mine {
            return Err(invalid(format!(
                "{} was saved by a run with `{key}` = {saved}; this run has {mine}: resume with \
                 the saved run's settings",
                dir.display()
            )));
        }
    }
    if ckpt.step >= steps {
        return Err(invalid(format!(
            "{} holds step {}; --steps counts every step, resumed or not, so it must exceed {} \
             (this run has {steps})",
            dir.display(),
            ckpt.step,
            ckpt.step
        )));
    }
    Ok(ckpt)
}

fn invalid(message: String) -> TrainError {
    TrainError::Config(ConfigError::Invalid {
        key: "resume",
        flag: Some("--resume"),
        message,
    })
}

/// Writes the checkpoint of `model` after `step` to `dir`, atomically.
pub fn save<D: Device>(
    dev: &D,
    model: &Dlrm<D>,
    cfg: &RunConfig,
    dir: &Path,
    step: u64,
) -> Result<(), PipelineError> {
    let mut ckpt = Checkpoint {
        step,
        config: serde_json::to_value(cfg).map_err(|e| CheckpointError::Format {
            path: dir.to_path_buf(),
            message: format!("cannot encode the run's settings: {e}"),
        })?,
        ..Checkpoint::default()
    };
    model.save_into(dev, &mut ckpt)?;
    checkpoint::save(dir, &ckpt)?;
    Ok(())
}

/// What `rowflow eval` reports of a saved model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Score {
    /// The checkpoint's step.
    pub step: u64,
    /// `synthetic` or the data file scored.
    pub data: String,
    /// Backend that ran the forward passes.
    pub backend: crate::device::BackendKind,
    /// Samples scored (the data's test split).
    pub test_samples: usize,
    /// AUC on them.
    pub test_auc: Option<f64>,
    /// Log loss on them.
    pub test_logloss: Option<f64>,
    /// The predicted click probability of each test sample, in order (`eval --predictions`).
    #[serde(skip)]
    pub predictions: Vec<f32>,
}

/// Scores the model saved in `ckpt` on the test split of the data `cfg` names (the saved run's
/// settings, its data possibly replaced), reading through its caches as training's evaluations
/// do.
pub fn score<D: Device>(dev: &D, cfg: &RunConfig, ckpt: &Checkpoint) -> Result<Score, TrainError> {
    let data = super::open_dataset(cfg)?;
    let (mut model, test) = restore_model(dev, cfg, ckpt, data.as_ref(), None)?;
    let batch = model.capacity();
    let mut scratch = (crate::data::Batch::new(0, 0), Vec::new());
    let (test_auc, test_logloss) = super::evaluate(dev, &mut model, &test, batch, &mut scratch)?;
    Ok(Score {
        step: ckpt.step,
        data: data.name(),
        backend: dev.info().backend,
        test_samples: test.len(),
        test_auc,
        test_logloss,
        predictions: scratch.1,
    })
}

/// The model saved in `ckpt` (made by the run `cfg`) rebuilt on `dev`, and `data`'s test split
/// as that model reads it (its DHE features' ids set apart). The model takes batches of up to
/// `capacity` samples (`None`: the run's evaluation batch); a cached placement takes at most the
/// run's training batch, the size its caches are known to hold.
pub fn restore_model<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    ckpt: &Checkpoint,
    data: &dyn crate::data::Dataset,
    capacity: Option<usize>,
) -> Result<(Dlrm<D>, crate::data::Batch), TrainError> {
    cfg.validate()?;
    let full = data.schema().clone();
    let layout = cfg.model.layout(full.table_rows.len())?;
    let split = crate::data::SplitDataset::new(data, layout.split.clone())?;
    let test = crate::data::Dataset::test(&split);
    let placement = cfg.placement(&layout.split.schema(&full).table_rows)?;
    let batch = match placement.policy.is_cached() {
        true => cfg.batch_size,
        false => capacity.unwrap_or(cfg.eval_batch_size),
    }
    .min(capacity.unwrap_or(usize::MAX))
    .min(test.len())
    .max(1);
    let mut model = Dlrm::new(dev, &cfg.model, &full, placement, batch, cfg.seed)?;
    model.restore_from(dev, ckpt)?;
    Ok((model, test.clone()))
}
