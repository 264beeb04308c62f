//! Whole training: DLRM steps on the backend and on the CPU from the same seed, and the
//! lookahead pipeline against all rows on the device, on the backend itself.

use super::{Checker, SUM};
use crate::config::RunConfig;
use crate::data::SplitDataset;
use crate::data::synthetic::{SyntheticDataset, SyntheticOptions};
use crate::data::{Batch, Dataset, RowMap, Schema};
use crate::device::cpu::CpuDevice;
use crate::device::{Device, DeviceError, DeviceExt, Optimizer};
use crate::embedding::{Placement, Policy, Residency};
use crate::model::{DheConfig, Dlrm, ModelConfig, Representation};
use std::ops::ControlFlow;

/// A backend error raised while training or comparing (it is not a kernel's).
fn model_error(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Backend {
        backend: crate::device::BackendKind::Cpu,
        message: e.to_string(),
    }
}

/// `steps` DLRM steps (batches of 128, four tables of 50 to 2,000 rows, Adagrad) on the backend
/// and on the CPU: every step's loss within 1e-4 relative, then the final weights and the test
/// predictions within 1e-4.
pub fn training<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    steps: usize,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    training_as(dev, cpu, steps, Representation::Table, ck)
}

/// [`training`] with the features represented as `representation` says (`hybrid`: tables 0
/// and 2 are also DHEs; `select`: tables 1 and 3 are DHEs alone), with small DHEs (k = 32,
/// decoder 32-16-D, gaussian hashes): the decoders' weights are compared too.
pub fn training_as<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    steps: usize,
    representation: Representation,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let seed = ck.seed();
    let opts = SyntheticOptions {
        tables: 4,
        train_samples: steps as u64 * 128,
        test_samples: 300,
        ..Default::default()
    };
    let whole = SyntheticDataset::new(&opts, &[500, 2000, 50, 1000], seed).map_err(model_error)?;
    let schema: Schema = whole.schema().clone();
    let cfg = ModelConfig {
        embedding_optimizer: Optimizer::Adagrad,
        representation,
        dhe_features: match representation {
            Representation::Hybrid => vec![0, 2],
            Representation::Select => vec![1, 3],
            _ => Vec::new(),
        },
        dhe: DheConfig {
            k: 32,
            hidden: vec![16],
            transform: crate::device::HashTransform::Gaussian,
            ..DheConfig::default()
        },
        ..Default::default()
    };
    let layout = cfg.layout(4).map_err(model_error)?;
    let data = SplitDataset::new(&whole, layout.split.clone()).map_err(model_error)?;
    let tables = layout.split.tables.len();
    let all = Placement::all_on_device();
    let mut a = Dlrm::new(dev, &cfg, &schema, all.clone(), 512, seed).map_err(model_error)?;
    let mut b = Dlrm::new(cpu, &cfg, &schema, all, 512, seed).map_err(model_error)?;
    let mut stream = data.open_train().map_err(model_error)?;
    let mut batch = Batch::new(schema.num_dense, tables);
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        stream.next_batch(128, &mut batch).map_err(model_error)?;
        let maps: Vec<RowMap> = batch.sparse.iter().map(RowMap::from_bags).collect();
        la.push(
            a.train_step(dev, &batch, &maps, Residency::OnDemand, 0.05)
                .map_err(model_error)?
                .loss as f32,
        );
        lb.push(
            b.train_step(cpu, &batch, &maps, Residency::OnDemand, 0.05)
                .map_err(model_error)?
                .loss as f32,
        );
    }
    ck.compare("training", "loss per step", &la, &lb, (1e-4, 0.0));
    for (pa, pb) in a.dense_params().iter().zip(b.dense_params()) {
        let (wa, wb) = (
            dev.read_f32(pa.value, 0..pa.len)?,
            cpu.read_f32(pb.value, 0..pb.len)?,
        );
        ck.compare("training", &pa.name, &wa, &wb, (1e-4, 1e-4));
    }
    for t in 0..tables {
        let (wa, wb) = (
            a.embeddings().read_table(dev, t).map_err(model_error)?,
            b.embeddings().read_table(cpu, t).map_err(model_error)?,
        );
        ck.compare("training", &format!("table {t}"), &wa, &wb, (1e-4, 1e-4));
    }
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    a.predict(dev, data.test(), &mut pa).map_err(model_error)?;
    b.predict(cpu, data.test(), &mut pb).map_err(model_error)?;
    ck.compare("training", "test predictions", &pa, &pb, (1e-4, 1e-5));
    Ok(())
}

/// The lookahead pipeline (FP32 store, so nothing is rounded; W = 2) with a cache of 60% of
/// each table against all rows on the device, both on the backend: the final weights agree (a
/// cached run computes what an uncached one does).
pub fn lookahead_equals_all_on_device<D: Device>(
    dev: &D,
    steps: usize,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut cfg = RunConfig {
        steps: Some(steps as u64),
        batch_size: 64,
        eval_every: 0,
        hotness_every: 0,
        lookahead: 2,
        seed: ck.seed(),
        table_rows: crate::config::TableRows::Each(vec![3000, 6000, 2000, 4000]),
        rounding: crate::precision::Rounding::Nearest,
        ..RunConfig::default()
    };
    cfg.synthetic.tables = 4;
    cfg.synthetic.train_samples = steps as u64 * 64;
    cfg.synthetic.test_samples = 300;
    let data = crate::train::open_dataset(&cfg).map_err(model_error)?;
    let mut weights = Vec::new();
    for (policy, cache) in [(Policy::AllOnDevice, None), (Policy::Lookahead, Some(0.6))] {
        let run = RunConfig {
            policy,
            cache_fraction: cache.map(crate::config::Fractions::One),
            ..cfg.clone()
        };
        let mut go = |_: &crate::telemetry::Snapshot| ControlFlow::Continue(());
        let faults = crate::train::Faults::default();
        let (_, model) = crate::train::train_model(dev, &run, data.as_ref(), &faults, &mut go)
            .map_err(model_error)?;
        let mut w = Vec::new();
        for t in 0..4 {
            w.extend(model.embeddings().read_table(dev, t).map_err(model_error)?);
        }
        for p in model.dense_params() {
            w.extend(dev.read_f32(p.value, 0..p.len)?);
        }
        weights.push(w);
    }
    ck.compare(
        "lookahead",
        &format!("weights after {steps} steps, lookahead vs all-on-device"),
        &weights[1],
        &weights[0],
        (SUM.0 / 10.0, SUM.1 / 10.0),
    );
    Ok(())
}
