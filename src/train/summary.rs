//! The outcome of a run (`--summary-json`): its settings, speed, quality, memory and traffic.

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::device::profile::KernelTime;
use crate::device::{BackendKind, Device};
use crate::embedding::Policy;
use crate::model::{Dlrm, Representation};
use crate::pipeline::{EvalPoint, Recorder};
use crate::precision::{Precision, Rounding};
use serde::Serialize;

/// The outcome of a run (`--summary-json`).
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Backend that ran the kernels.
    pub backend: BackendKind,
    /// Its device name.
    pub device: String,
    /// `synthetic` or the data file.
    pub data: String,
    /// Training steps done, those before a resume included.
    pub steps: u64,
    /// The step the run resumed after (`--resume`; 0 when it started fresh).
    pub start_step: u64,
    /// Training samples consumed.
    pub samples: u64,
    /// `samples` over the training split's size.
    pub epochs: f64,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f32,
    /// Seed.
    pub seed: u64,
    /// Training samples per second (training time only).
    pub samples_per_sec: f64,
    /// Seconds spent training (waiting for data included, evaluation excluded).
    pub train_seconds: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
    /// Final test AUC.
    pub test_auc: Option<f64>,
    /// Final test log loss.
    pub test_logloss: Option<f64>,
    /// The generator's own test AUC (synthetic data; `null` for real data).
    pub teacher_auc: Option<f64>,
    /// Malformed data lines skipped (`--skip-bad-lines`).
    pub skipped_lines: u64,
    /// Samples in the test split.
    pub test_samples: usize,
    /// Mean training loss over the last steps (up to 100).
    pub final_train_loss: Option<f64>,
    /// Fraction of training time the device stage waited for data.
    pub device_idle_fraction: f64,
    /// Threads that prepared batches (`--loader-threads`).
    pub loader_threads: usize,
    /// Threads that ran the CPU backend's kernels (`--compute-threads`); `null` on a GPU backend.
    pub compute_threads: Option<usize>,
    /// Per kernel, launches and seconds over the training loop, evaluations included
    /// (`--profile-kernels`; `null` otherwise).
    pub kernel_profile: Option<Vec<KernelTime>>,
    /// Fraction of steps the host had recorded whole before the device finished the step
    /// before (host and device overlapped; 0 on the CPU, whose kernels finish as they return).
    pub overlap_fraction: f64,
    /// Where embedding rows lived (`all-on-device`, `host-only`, `lru`, `lfu`, `lookahead`).
    pub policy: Policy,
    /// Batches the lookahead planner saw ahead (`null` for other policies).
    pub lookahead: Option<usize>,
    /// Host store precision (`null` for all-on-device).
    pub precision: Option<Precision>,
    /// Rounding of write-backs (`null` for all-on-device).
    pub rounding: Option<Rounding>,
    /// Cache slots over table rows, all tables together (`null` without a cache).
    pub cache_fraction: Option<f64>,
    /// Bytes the embeddings held: host stores, device rows or cache, optimizer state, directory.
    pub embedding_bytes: u64,
    /// The same tables fully in FP32.
    pub fp32_embedding_bytes: u64,
    /// `fp32_embedding_bytes / embedding_bytes`.
    pub memory_reduction: f64,
    /// Unique rows the cache held when a batch was planned (lookahead) or stepped (on demand).
    pub hit_rate: f64,
    /// Unique rows resident when the training step ran (1 for lookahead, counted).
    pub train_hit_rate: f64,
    /// Batches for which the lookahead planner shortened its window (`null` otherwise).
    pub window_shrinks: Option<u64>,
    /// The modelled host↔device link, GB/s (`null`: none simulated).
    pub link_gbps: Option<f64>,
    /// Embedding-row bytes moved host → device during training.
    pub bytes_h2d: u64,
    /// Embedding-row bytes moved device → host during training.
    pub bytes_d2h: u64,
    /// `(bytes_h2d + bytes_d2h) / samples`.
    pub bytes_per_sample: f64,
    /// How the sparse features were represented (`table`, `dhe`, `hybrid`, `select`).
    pub representation: Representation,
    /// The features with a DHE (numbered from 0).
    pub dhe_features: Vec<usize>,
    /// Trainable values of the DHE decoders.
    pub dhe_parameters: u64,
    /// Every trainable value in FP32 (table rows, MLPs, DHE decoders), in bytes.
    pub parameter_bytes: u64,
    /// Forward FLOPs per sample (MLPs, DHEs, pooling, interaction), on the test split.
    pub flops_per_sample: f64,
    /// Every evaluation, in order.
    pub evals: Vec<EvalPoint>,
}

impl TrainSummary {
    /// The summary of a run of `cfg` on `data` that trained `model` for `steps` steps, with the
    /// pipeline's `record`; steps `start_step + 1 ..= steps` ran in this process.
    pub fn new<D: Device>(
        dev: &D,
        cfg: &RunConfig,
        data: &dyn Dataset,
        model: &Dlrm<D>,
        (start_step, steps): (u64, u64),
        record: Recorder,
    ) -> Self {
        let samples = steps * cfg.batch_size as u64;
        let trained = (steps - start_step) * cfg.batch_size as u64;
        let emb = model.embeddings();
        let placement = emb.placement();
        let cached = placement.policy.is_cached();
        let rows: u64 = emb.rows().iter().map(|&r| r as u64).sum();
        let cache_fraction = match placement.policy {
            Policy::AllOnDevice | Policy::HostOnly => None,
            _ => Some(
                placement.cache_rows.iter().map(|&c| c as u64).sum::<u64>() as f64
                    / rows.max(1) as f64,
            ),
        };
        let embedding_bytes = emb.embedding_bytes(dev) + record.transfer_bytes();
        let fp32_embedding_bytes = emb.fp32_bytes();
        let per_second = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
        let c = record.cumulative();
        let last = record.evals().last();
        TrainSummary {
            backend: dev.info().backend,
            device: dev.info().name.clone(),
            data: data.name(),
            steps,
            start_step,
            samples,
            epochs: samples as f64 / data.train_samples() as f64,
            batch_size: cfg.batch_size,
            lr: cfg.lr,
            seed: cfg.seed,
            samples_per_sec: per_second(trained as f64, record.train_seconds()),
            train_seconds: record.train_seconds(),
            eval_seconds: record.eval_seconds(),
            test_auc: last.and_then(|e| e.test_auc),
            test_logloss: last.and_then(|e| e.test_logloss),
            teacher_auc: data.teacher_auc(),
            skipped_lines: data.skipped_lines(),
            test_samples: data.test().len(),
            final_train_loss: record.final_loss(),
            device_idle_fraction: per_second(record.idle_seconds(), record.train_seconds()),
            overlap_fraction: record.overlapped_steps() as f64 / steps.max(1) as f64,
            loader_threads: cfg
                .thread_split(dev.info().backend, crate::config::machine_cores())
                .loader,
            compute_threads: (dev.info().backend == BackendKind::Cpu)
                .then_some(dev.info().parallelism),
            kernel_profile: dev.kernel_profile(),
            policy: placement.policy,
            lookahead: (placement.policy == Policy::Lookahead).then_some(cfg.lookahead),
            precision: cached.then_some(placement.precision),
            rounding: cached.then_some(placement.rounding),
            cache_fraction,
            embedding_bytes,
            fp32_embedding_bytes,
            memory_reduction: fp32_embedding_bytes as f64 / embedding_bytes.max(1) as f64,
            // The cache's own hit rate: rows found resident when the batch was planned
            // (lookahead) or stepped (on demand).
            hit_rate: match c.planner_misses {
                Some(m) if c.unique_rows > 0 => 1.0 - m as f64 / c.unique_rows as f64,
                _ => c.hit_rate(),
            },
            train_hit_rate: c.hit_rate(),
            window_shrinks: record.window_shrinks(),
            link_gbps: record.link_gbps(),
            bytes_h2d: c.bytes_h2d,
            bytes_d2h: c.bytes_d2h,
            bytes_per_sample: (c.bytes_h2d + c.bytes_d2h) as f64 / trained.max(1) as f64,
            representation: cfg.model.representation,
            dhe_features: model.layout().split.hashed.clone(),
            dhe_parameters: model.hashed().parameters(),
            parameter_bytes: model.parameter_bytes(),
            flops_per_sample: model.flops_per_sample(data.test()),
            evals: record.evals().to_vec(),
        }
    }
}
