//! `rowflow eval`: scores a saved model (`rowflow train --save DIR`) on a test set.

use super::{choice, on_device, select};
use anyhow::{Context, Result};
use clap::Args;
use rowflow::config::{RunConfig, machine_cores};
use rowflow::device::BackendChoice;
use rowflow::train::score;
use std::path::PathBuf;

/// `rowflow eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint directory written by `rowflow train --save DIR`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// `synthetic` or a Criteo TSV file whose test split (its last --test-fraction of lines)
    /// is scored [default: the data the model was trained on].
    #[arg(long, value_name = "synthetic|PATH")]
    data: Option<String>,
    /// Fraction of a data file's lines, at its end, scored [default: the training run's].
    #[arg(long, value_name = "F")]
    test_fraction: Option<f64>,
    /// Backend to score on.
    #[arg(long, value_parser = choice::<BackendChoice>(), default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also write each test sample's predicted click probability, one per line in test-split
    /// order, to this file.
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
}

/// Loads the checkpoint, rebuilds its run's model on the chosen backend and scores it.
pub fn run(args: EvalArgs) -> Result<()> {
    let ckpt = rowflow::checkpoint::load(&args.model)?;
    let mut cfg: RunConfig = serde_json::from_value(ckpt.config.clone()).with_context(|| {
        format!(
            "{}: the manifest's config is not this version's: retrain, or score it with the \
             rowflow that saved it",
            args.model.display()
        )
    })?;
    if let Some(d) = args.data {
        cfg.data = d;
    }
    if let Some(f) = args.test_fraction {
        cfg.test_fraction = f;
    }
    (cfg.save, cfg.resume, cfg.save_every) = (None, None, 0);
    let backend = select(args.backend)?;
    let s = on_device!(backend, cpu_threads: Some(machine_cores()), |dev| score(
        dev, &cfg, &ckpt
    )?);
    if let Some(path) = &args.predictions {
        let mut text = String::with_capacity(s.predictions.len() * 12);
        for p in &s.predictions {
            // `{}` prints the shortest text that reads back as the same f32.
            text.push_str(&format!("{p}\n"));
        }
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the predictions to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
        println!(
            "{} (step {}) on {} ({} test samples, {}): test AUC {}  test log loss {}",
            args.model.display(),
            s.step,
            s.data,
            s.test_samples,
            s.backend,
            f(s.test_auc),
            f(s.test_logloss)
        );
    }
    Ok(())
}
