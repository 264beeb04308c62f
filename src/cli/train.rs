//! `rowflow train`: flags over a config file, the run, and its summary.

use super::{choice, on_device, overlay};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rowflow::config::{Fractions, RunConfig, TableRows, machine_cores};
use rowflow::device::profile::KernelTime;
use rowflow::device::{BackendChoice, BackendKind, Device};
use rowflow::embedding::Policy;
use rowflow::model::Representation;
use rowflow::precision::{Precision, Rounding};
use rowflow::telemetry::{Snapshot, TelemetryWriter};
use rowflow::train::{TrainSummary, open_dataset, planned_steps, train};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `rowflow train`: a config file plus flags that override its keys (each flag is named after
/// its key; the flags not given are left out of the overlay).
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
pub struct TrainArgs {
    /// TOML config file (see assets/default.toml); flags override its values.
    #[arg(long, value_name = "FILE.toml")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Backend to train on.
    #[arg(long, value_parser = choice::<BackendChoice>())]
    backend: Option<BackendChoice>,
    /// `synthetic` or the path of a Criteo TSV file (plain or .gz).
    #[arg(long, value_name = "synthetic|PATH")]
    data: Option<String>,
    /// Training steps (wins over --epochs; data wraps around).
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
    /// Passes over the training split.
    #[arg(long, value_name = "N")]
    epochs: Option<u64>,
    /// Samples per step (a partial last batch of an epoch is dropped).
    #[arg(long, value_name = "B")]
    batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Seed of the data and of the initial weights.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Evaluate every N steps (0: only at the end).
    #[arg(long, value_name = "N")]
    eval_every: Option<u64>,
    /// Rows per table: one value, or a comma-separated list (one per table).
    #[arg(long, value_name = "N|N,N,…", value_parser = TableRows::parse)]
    table_rows: Option<TableRows>,
    /// Fraction of a data file's last lines held out for testing.
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    test_fraction: Option<f64>,
    /// Write one JSON line per step (the telemetry Snapshot) to this file.
    #[arg(long, value_name = "FILE.jsonl")]
    telemetry: Option<PathBuf>,
    /// Write the run's summary as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Skip and count malformed data lines instead of failing.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip_bad_lines: bool,
    /// Criteo fields holding comma-separated lists of values (multi-hot), e.g. `C3,C12`.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    multi_hot: Option<Vec<String>>,
    /// Where embedding rows live.
    #[arg(long, value_parser = choice::<Policy>())]
    policy: Option<Policy>,
    /// Precision of the host backing store (cached policies).
    #[arg(long, value_parser = choice::<Precision>())]
    precision: Option<Precision>,
    /// Rounding of rows written back to the store.
    #[arg(long, value_parser = choice::<Rounding>())]
    rounding: Option<Rounding>,
    /// Cache size as a fraction of each table: one value, or one per table.
    #[arg(long, value_name = "F|F,F,…", value_parser = Fractions::parse, allow_negative_numbers = true)]
    cache_fraction: Option<Fractions>,
    /// Cache size in rows: one global budget (shared in proportion to table sizes), or one per table.
    #[arg(long, value_name = "N|N,N,…", value_parser = TableRows::parse)]
    cache_rows: Option<TableRows>,
    /// Batches the lookahead planner sees ahead (--policy lookahead).
    #[arg(long, value_name = "W")]
    lookahead: Option<usize>,
    /// Threads preparing batches (default: one per core, at most 8; printed).
    #[arg(long, value_name = "N")]
    loader_threads: Option<usize>,
    /// Threads running the CPU backend's kernels (default: one per core; printed).
    #[arg(long, value_name = "N")]
    compute_threads: Option<usize>,
    /// Time every kernel launch and report where the step's time goes (cpu backend).
    #[arg(long)]
    #[serde(skip)]
    profile_kernels: bool,
    /// Charge host-device bytes to a modelled link of X GB/s (machines without one).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    link_gbps: Option<f64>,
    /// Save a checkpoint to DIR after the last step (and every --save-every steps); written
    /// atomically, so a run killed mid-save leaves the previous one loadable.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Steps between checkpoints (0: only after the last).
    #[arg(long, value_name = "N")]
    save_every: Option<u64>,
    /// Continue the run saved in DIR, with the same settings (--steps counts all steps).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    #[serde(skip)]
    dist: super::distributed::DistArgs,
}

/// The flags that set `[model]` keys.
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
struct ModelFlags {
    /// How each sparse feature is represented: a table, a DHE (deep hash embedding), both
    /// (hybrid), or a DHE for the features of --dhe-features and tables for the rest (select).
    #[arg(long, value_parser = choice::<Representation>())]
    representation: Option<Representation>,
    /// Learning rate of the embeddings (default: --lr).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    embedding_lr: Option<f32>,
    /// Features (numbered from 0) that are DHEs (select) or hybrids (hybrid; default all).
    #[arg(long, value_delimiter = ',', value_name = "F,F,…")]
    dhe_features: Option<Vec<usize>>,
    #[command(flatten)]
    dhe: DheFlags,
}

/// The flags that set `[model.dhe]` keys.
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
struct DheFlags {
    /// Hashes per id, the DHE decoder's input size (default 1024).
    #[arg(long = "dhe-k", value_name = "K")]
    k: Option<usize>,
}

impl TrainArgs {
    /// The config file (or the defaults) with the flags given laid over its keys, validated.
    fn into_config(self) -> Result<RunConfig> {
        let mut base = match &self.config {
            Some(path) => RunConfig::from_file(path)?,
            None => RunConfig::default(),
        };
        // An explicit --epochs replaces a config file's `steps`; a cache size in rows replaces
        // one in fractions, and the other way round.
        if self.epochs.is_some() {
            base.steps = None;
        }
        if self.cache_fraction.is_some() {
            base.cache_rows = None;
        }
        if self.cache_rows.is_some() {
            base.cache_fraction = None;
        }
        let cfg: RunConfig = overlay(&base, &self)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `rowflow train`: validates the config, checks that every output can be written, trains on
/// the backend `--backend` resolves to, then prints and writes the summary.
pub fn run(mut args: TrainArgs) -> Result<()> {
    let profile = args.profile_kernels;
    let dist = std::mem::take(&mut args.dist);
    let distributed = dist.distributed;
    let cfg = args.into_config()?;
    if distributed {
        return super::distributed::run(cfg, dist);
    }
    dist.refuse_without_distributed()?;
    let summary_out = cfg.summary_json.as_deref().map(Output::claim).transpose()?;
    let trained = (|| -> Result<TrainSummary> {
        let backend = super::select(cfg.backend)?;
        if backend != BackendKind::Cpu && cfg.compute_threads.is_some() {
            bail!(
                "--compute-threads sets the cpu backend's kernel threads, but this run trains on \
                 {backend}: drop it, or add `--backend cpu`"
            );
        }
        if backend != BackendKind::Cpu && profile {
            bail!(
                "--profile-kernels times the cpu backend's kernels, but this run trains on \
                 {backend}: drop it, or add `--backend cpu`"
            );
        }
        let split = cfg.thread_split(backend, machine_cores());
        Ok(on_device!(backend, cpu_threads: split.compute, |dev| {
            if profile && !dev.start_kernel_profile() {
                bail!("--profile-kernels cannot time this backend's kernels; use `--backend cpu`");
            }
            train_on(dev, &cfg)?
        }))
    })();
    let summary = match trained {
        Ok(summary) => summary,
        Err(e) => {
            if let Some(out) = summary_out {
                out.abandon();
            }
            return Err(e);
        }
    };
    print_summary(&summary);
    if let Some(profile) = &summary.kernel_profile {
        print_kernel_profile(profile, &summary);
    }
    if let Some(out) = summary_out {
        out.write(serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    Ok(())
}

/// An output file claimed before a long run: opened for writing up front, so a path that cannot
/// be written fails before training instead of after it; removed again if the run fails and
/// the file did not exist before.
struct Output {
    path: PathBuf,
    created: bool,
}

impl Output {
    fn claim(path: &Path) -> Result<Output> {
        let existed = path.exists();
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("{}: cannot write the summary", path.display()))?;
        Ok(Output {
            path: path.to_path_buf(),
            created: !existed,
        })
    }

    fn write(self, text: String) -> Result<()> {
        std::fs::write(&self.path, text)
            .with_context(|| format!("{}: cannot write the summary", self.path.display()))
    }

    fn abandon(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn train_on<D: Device>(dev: &D, cfg: &RunConfig) -> Result<TrainSummary> {
    let data = open_dataset(cfg)?;
    if data.skipped_lines() > 0 {
        eprintln!(
            "skipped {} malformed lines (--skip-bad-lines); the first:",
            data.skipped_lines()
        );
        for e in data.skipped_examples() {
            eprintln!("  {e}");
        }
    }
    if let Some(auc) = data.teacher_auc() {
        eprintln!("synthetic data: teacher AUC {auc:.4} on the test split (the ceiling)");
    }
    let steps = planned_steps(cfg, data.train_samples())?;
    let cores = machine_cores();
    let split = cfg.thread_split(dev.info().backend, cores);
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let threads = split.loader;
    match split.compute {
        Some(compute) => eprintln!(
            "threads: {threads} preparing batches, {compute} computing ({cores} cores; \
             --loader-threads, --compute-threads to change)"
        ),
        None => eprintln!(
            "loader: {threads} thread{} preparing batches ({cores} cores; --loader-threads to \
             change)",
            plural(threads)
        ),
    }
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut telemetry = match &cfg.telemetry {
        Some(p) => Some(
            TelemetryWriter::create(p)
                .with_context(|| format!("{}: cannot create", p.display()))?,
        ),
        None => None,
    };
    let mut write_error = None;
    let mut smoothed = None::<f64>;
    let mut last_auc = None::<f64>;
    let mut on_step = |s: &Snapshot| {
        smoothed = Some(smoothed.map_or(s.loss, |m| 0.98 * m + 0.02 * s.loss));
        if s.test_auc.is_some() {
            last_auc = s.test_auc;
        }
        bar.set_position(s.step);
        bar.set_message(format!(
            "{:.0} samples/s  loss {:.4}  AUC {}",
            s.samples_per_sec,
            smoothed.unwrap_or(s.loss),
            last_auc.map_or("-".into(), |a| format!("{a:.4}"))
        ));
        if let (Some(w), None) = (telemetry.as_mut(), write_error.as_ref()) {
            if let Err(e) = w.write(s) {
                write_error = Some(format!(
                    "{}: cannot write telemetry: {e}",
                    w.path().display()
                ));
            }
        }
    };
    let summary = train(dev, cfg, data.as_ref(), &mut on_step)?;
    bar.finish_and_clear();
    if let Some(e) = write_error {
        bail!(e);
    }
    if let Some(w) = telemetry {
        w.finish().context("cannot flush the telemetry file")?;
    }
    Ok(summary)
}

/// The per-kernel table of `--profile-kernels`: time per step and share of the kernels' sum.
fn print_kernel_profile(profile: &[KernelTime], s: &TrainSummary) {
    let total: f64 = profile.iter().map(|k| k.seconds).sum();
    println!(
        "kernel time (training steps and evaluations): {:.3} s of {:.3} s training",
        total, s.train_seconds
    );
    println!(
        "{:<24} {:>9} {:>11} {:>7}",
        "kernel", "launches", "ms / step", "share"
    );
    for k in profile {
        println!(
            "{:<24} {:>9} {:>11.4} {:>6.1}%",
            k.kernel,
            k.launches,
            1e3 * k.seconds / s.steps.max(1) as f64,
            100.0 * k.seconds / total.max(f64::MIN_POSITIVE)
        );
    }
}

fn print_summary(s: &TrainSummary) {
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!(
        "trained {} steps ({} samples, {:.2} epochs) on {} ({}) in {:.1} s: {:.0} samples/s",
        s.steps, s.samples, s.epochs, s.backend, s.device, s.train_seconds, s.samples_per_sec
    );
    println!(
        "test AUC {}  test log loss {}  teacher AUC {}  ({} test samples)",
        f(s.test_auc),
        f(s.test_logloss),
        f(s.teacher_auc),
        s.test_samples
    );
    println!(
        "{} representation{}: {:.1} MB of parameters in FP32 ({} in DHE decoders), {:.0} forward \
         FLOPs per sample",
        s.representation.name(),
        match s.dhe_features.is_empty() {
            true => String::new(),
            false => format!(" (DHE on features {:?})", s.dhe_features),
        },
        s.parameter_bytes as f64 / 1e6,
        s.dhe_parameters,
        s.flops_per_sample
    );
    if s.policy.is_cached() {
        println!(
            "{} {} store, {} rounding, cache {}: hit rate {:.4}, {:.0} bytes moved per sample",
            s.policy.name(),
            s.precision.map_or("?", |p| p.name()),
            s.rounding.map_or("?", |r| r.name()),
            s.cache_fraction
                .map_or("none".into(), |f| format!("{:.2}% of the rows", 100.0 * f)),
            s.hit_rate,
            s.bytes_per_sample
        );
    }
    if let Some(w) = s.lookahead {
        println!(
            "lookahead W={w}: train-stage hit rate {:.4}, window shrinks {}",
            s.train_hit_rate,
            s.window_shrinks.unwrap_or(0)
        );
    }
    if let Some(g) = s.link_gbps {
        println!("simulated link {g} GB/s: host-device bytes were charged at that rate");
    }
    println!(
        "embeddings: {:.1} MB ({} {:.1} MB in FP32)",
        s.embedding_bytes as f64 / 1e6,
        ratio(s.fp32_embedding_bytes, s.embedding_bytes),
        s.fp32_embedding_bytes as f64 / 1e6
    );
    if s.skipped_lines > 0 {
        println!("skipped_lines {}", s.skipped_lines);
    }
}

/// `reference / used` in words, whichever way it goes: "3.07x less than", "1.06x more than",
/// "as much as".
fn ratio(reference: u64, used: u64) -> String {
    let (r, u) = (reference as f64, used.max(1) as f64);
    if (r - u).abs() < 0.005 * u {
        "as much as".into()
    } else if r > u {
        format!("{:.2}x less than", r / u)
    } else {
        format!("{:.2}x more than", u / r.max(1.0))
    }
}
