//! `rowflow bench kernels | memory | pipeline | data`: flags for the library's benchmarks. Defaults
//! come from the library's option structs, so `--help` and a library caller agree.

use super::{choice, on_device, overlay, select};
use anyhow::Result;
use clap::{Args, Subcommand};
use rowflow::bench::data::{DataBenchOptions, run_data_bench};
use rowflow::bench::kernels::{KernelBenchOptions, run_kernel_bench};
use rowflow::bench::memory::{MemoryBenchOptions, run_memory_bench};
use rowflow::bench::pipeline::{PipelineBenchOptions, run_pipeline_bench};
use rowflow::bench::repr::{ReprBenchOptions, run_repr_bench};
use rowflow::device::{BackendChoice, Optimizer};
use rowflow::embedding::Policy;
use rowflow::model::Representation;
use rowflow::precision::{Precision, Rounding};
use serde::Serialize;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time every kernel at a realistic size (median of repeated runs).
    Kernels(KernelBenchArgs),
    /// Memory saved by low-precision stores under a cache, and the AUC it costs.
    Memory(MemoryBenchArgs),
    /// Throughput of every placement policy (lookahead windows, caches, links) on one workload.
    Pipeline(PipelineBenchArgs),
    /// Samples/s of batch preparation alone (loader threads), for the synthetic default,
    /// assets/large.toml and a Criteo file.
    Data(DataBenchArgs),
    /// Table, DHE and hybrid representations: AUC, parameter bytes, FLOPs per sample and
    /// inference latency per batch size on each backend present (MP-Rec's comparison).
    Repr(ReprBenchArgs),
}

/// Runs one benchmark on the backend its `--backend` resolves to.
pub fn run(which: BenchCommand) -> Result<()> {
    // The CPU backend runs its kernels as training does: on every core, this thread among them.
    let cpu = Some(rowflow::config::machine_cores());
    match which {
        BenchCommand::Kernels(a) => {
            let options = overlay(&KernelBenchOptions::default(), &a)?;
            on_device!(select(a.target.backend)?, cpu_threads: cpu, |dev| run_kernel_bench(
                dev, &options
            )?);
        }
        BenchCommand::Memory(a) => {
            let options = overlay(&MemoryBenchOptions::default(), &a)?;
            on_device!(select(a.target.backend)?, cpu_threads: cpu, |dev| run_memory_bench(
                dev, &options
            )?);
        }
        BenchCommand::Data(a) => {
            let options = overlay(&DataBenchOptions::default(), &a)?;
            run_data_bench(&options, a.json)?;
        }
        BenchCommand::Repr(a) => {
            let mut options = overlay(&ReprBenchOptions::default(), &a)?;
            if let Some(k) = a.dhe_k {
                options.run.model.dhe.k = k;
            }
            run_repr_bench(&options)?;
        }
        BenchCommand::Pipeline(a) => {
            let options = overlay(&PipelineBenchOptions::default(), &a)?;
            on_device!(select(a.target.backend)?, cpu_threads: cpu, |dev| run_pipeline_bench(
                dev, &options
            )?);
        }
    }
    Ok(())
}

/// Where a benchmark runs and how it reports.
#[derive(Args, Serialize)]
pub struct Target {
    /// Backend to run on.
    #[arg(long, value_parser = choice::<BackendChoice>(), default_value_t = BackendChoice::Auto)]
    #[serde(skip)]
    backend: BackendChoice,
    /// One JSON line per row (kernel, configuration) instead of a table.
    #[arg(long)]
    json: bool,
}

/// The workload flags of `bench kernels` and `bench pipeline`; each defaults to its bench's own
/// workload (`--rows` is 1,000,000 for kernels, 5,000,000 for pipeline).
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
pub struct WorkloadArgs {
    /// Embedding tables (T) [default: 8].
    #[arg(long)]
    tables: Option<usize>,
    /// Rows per table (E) [default: 1000000 for kernels, 5000000 for pipeline].
    #[arg(long)]
    rows: Option<u32>,
    /// Embedding dimension (D) [default: 64].
    #[arg(long)]
    dim: Option<usize>,
    /// Samples per batch (B) [default: 2048].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Rows per bag (L) [default: 20].
    #[arg(long)]
    pooling: Option<usize>,
    /// Zipf exponent of row popularity [default: 1.05].
    #[arg(long)]
    alpha: Option<f64>,
    /// Seed of the data and of the weights [default: 1].
    #[arg(long)]
    seed: Option<u64>,
}

fn kernels() -> KernelBenchOptions {
    KernelBenchOptions::default()
}

/// `rowflow bench kernels`.
#[derive(Args, Serialize)]
pub struct KernelBenchArgs {
    #[command(flatten)]
    #[serde(flatten)]
    target: Target,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Timed runs per kernel (the median is reported).
    #[arg(long, default_value_t = kernels().reps)]
    reps: usize,
    /// Size of the copied buffer for the `copy` row, in MiB.
    #[arg(long, default_value_t = kernels().copy_mib)]
    copy_mib: usize,
}

fn memory() -> MemoryBenchOptions {
    MemoryBenchOptions::default()
}

/// `rowflow bench memory`.
#[derive(Args, Serialize)]
pub struct MemoryBenchArgs {
    #[command(flatten)]
    #[serde(flatten)]
    target: Target,
    #[command(flatten)]
    sweep: MemorySweepArgs,
    #[command(flatten)]
    run: MemoryRunArgs,
}

/// The axes `bench memory` sweeps.
#[derive(Args, Serialize)]
struct MemorySweepArgs {
    /// Embedding dimensions to compare at.
    #[arg(long, value_delimiter = ',', default_values_t = memory().sweep.dims)]
    dims: Vec<usize>,
    /// Store precisions (each compared with FP32 all-on-device).
    #[arg(long, value_parser = choice::<Precision>(), value_delimiter = ',',
          default_values_t = memory().sweep.precisions)]
    precisions: Vec<Precision>,
    /// Cache sizes, as fractions of each table.
    #[arg(long, value_delimiter = ',', default_values_t = memory().sweep.fractions)]
    fractions: Vec<f64>,
    /// Roundings.
    #[arg(long, value_parser = choice::<Rounding>(), value_delimiter = ',',
          default_values_t = memory().sweep.roundings)]
    roundings: Vec<Rounding>,
    /// Also run FP16 and a 10% cache (stochastic rounding) at each dimension.
    #[arg(long, default_value_t = memory().sweep.extras, action = clap::ArgAction::Set)]
    extras: bool,
}

/// The run every configuration of `bench memory` trains (keys of the run config).
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
struct MemoryRunArgs {
    /// `synthetic` or the path of a Criteo TSV file [default: synthetic].
    #[arg(long)]
    data: Option<String>,
    /// Samples per step [default: 256].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Passes over the training data [default: 1].
    #[arg(long)]
    epochs: Option<u64>,
    /// Seed of the data and of the initial weights [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Rows per table [default: 100000].
    #[arg(long)]
    table_rows: Option<u32>,
    #[command(flatten)]
    synthetic: SyntheticSizeArgs,
    #[command(flatten)]
    model: EmbeddingRuleArgs,
}

/// The synthetic splits' sizes (keys of `[synthetic]`).
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
struct SyntheticSizeArgs {
    /// Synthetic training samples [default: 1000000].
    #[arg(long)]
    train_samples: Option<u64>,
    /// Synthetic test samples [default: 100000].
    #[arg(long)]
    test_samples: Option<u64>,
}

/// How the embeddings learn (keys of `[model]`).
#[serde_with::skip_serializing_none]
#[derive(Args, Serialize)]
struct EmbeddingRuleArgs {
    /// Optimizer of the embeddings [default: sgd].
    #[arg(long = "optimizer", value_parser = choice::<Optimizer>())]
    embedding_optimizer: Option<Optimizer>,
    /// Learning rate of the embeddings [default: 2].
    #[arg(long)]
    embedding_lr: Option<f32>,
}

fn pipeline() -> PipelineBenchOptions {
    PipelineBenchOptions::default()
}

/// `rowflow bench pipeline`.
#[derive(Args, Serialize)]
pub struct PipelineBenchArgs {
    #[command(flatten)]
    #[serde(flatten)]
    target: Target,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Host store precision of the cached policies.
    #[arg(long, value_parser = choice::<Precision>(), default_value_t = pipeline().precision)]
    precision: Precision,
    #[command(flatten)]
    sweep: PipelineSweepArgs,
    /// Training steps per configuration.
    #[arg(long, default_value_t = pipeline().steps)]
    steps: u64,
    /// Steps left out of the means (the cache fills).
    #[arg(long, default_value_t = pipeline().warmup)]
    warmup: u64,
}

/// The axes `bench pipeline` sweeps.
#[derive(Args, Serialize)]
struct PipelineSweepArgs {
    /// Cache sizes, as fractions of each table.
    #[arg(long, value_delimiter = ',', default_values_t = pipeline().sweep.fractions)]
    fractions: Vec<f64>,
    /// Lookahead windows.
    #[arg(long, value_delimiter = ',', default_values_t = pipeline().sweep.windows)]
    windows: Vec<usize>,
    /// Policies to compare.
    #[arg(long, value_parser = choice::<Policy>(), value_delimiter = ',',
          default_values_t = pipeline().sweep.policies)]
    policies: Vec<Policy>,
    /// The modelled link each configuration also runs with (GB/s; 0 = only without).
    #[arg(long, default_value_t = pipeline().sweep.link_gbps)]
    link_gbps: f64,
}

fn data() -> DataBenchOptions {
    DataBenchOptions::default()
}

/// `rowflow bench data`.
#[derive(Args, Serialize)]
pub struct DataBenchArgs {
    /// One JSON line per (dataset, threads) instead of a table.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    /// Batches prepared per measurement.
    #[arg(long, default_value_t = data().steps)]
    steps: u64,
    /// Loader thread counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = data().threads)]
    threads: Vec<usize>,
    /// A Criteo TSV file (plain or .gz); default: the sample in ../shared/data when present.
    #[arg(long, value_name = "PATH")]
    criteo: Option<std::path::PathBuf>,
    /// Rows per table for the Criteo file's hashing.
    #[arg(long, default_value_t = data().criteo_table_rows)]
    criteo_table_rows: u32,
}

fn repr() -> ReprBenchOptions {
    ReprBenchOptions::default()
}

/// `rowflow bench repr`.
#[derive(Args, Serialize)]
pub struct ReprBenchArgs {
    /// One JSON line per (data, representation) instead of a table.
    #[arg(long)]
    json: bool,
    /// Representations to compare.
    #[arg(long, value_parser = choice::<Representation>(), value_delimiter = ',',
          default_values_t = repr().representations)]
    representations: Vec<Representation>,
    /// Batch sizes whose inference latency is measured.
    #[arg(long, value_delimiter = ',', default_values_t = repr().batch_sizes)]
    batch_sizes: Vec<usize>,
    /// Timed runs per latency (the median is reported, after two warm-ups).
    #[arg(long, default_value_t = repr().reps)]
    reps: usize,
    /// Backends whose latency is measured [default: every backend present, but a software
    /// wgpu adapter (lavapipe): name it to time it].
    #[arg(long, value_delimiter = ',', value_parser = ["cpu", "wgpu", "cuda"])]
    backends: Vec<String>,
    /// Training samples of the synthetic runs (one epoch).
    #[arg(long, default_value_t = repr().synthetic_samples)]
    synthetic_samples: u64,
    /// Test samples of the synthetic data.
    #[arg(long, default_value_t = repr().synthetic_test_samples)]
    synthetic_test_samples: u64,
    /// A Criteo TSV file (plain or .gz); default: the sample in ../shared/data when present.
    #[arg(long, value_name = "PATH")]
    criteo: Option<std::path::PathBuf>,
    /// Rows per table for the Criteo file's hashing.
    #[arg(long, default_value_t = repr().criteo_table_rows)]
    criteo_table_rows: u32,
    /// Passes over the Criteo file's training split.
    #[arg(long, default_value_t = repr().criteo_epochs)]
    criteo_epochs: u64,
    /// Hashes per id of the DHEs [default: 1024, the artifact's].
    #[arg(long = "dhe-k", value_name = "K")]
    #[serde(skip)]
    dhe_k: Option<usize>,
}
