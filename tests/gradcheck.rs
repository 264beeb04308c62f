//! Finite-difference check of the whole DLRM's gradients on a tiny instance (CPU backend):
//! tables only, and with DHE features (hashed alone, and hybrids beside their tables), whose
//! multi-hot bags are pooled like a table's.
//!
//! The seed is fixed on purpose: a central difference is only valid away from ReLU kinks, and a
//! fixed instance is one whose kinks we have checked are not crossed by the ±h probes.

use rowflow::data::RowMap;
use rowflow::data::{Bags, Batch, Schema};
use rowflow::device::Optimizer;
use rowflow::device::cpu::CpuDevice;
use rowflow::device::{DeviceExt, Pooling};
use rowflow::embedding::Placement;
use rowflow::model::{DheConfig, DheOutput, Representation};
use rowflow::model::{Dlrm, ModelConfig};

fn tiny_batch() -> Batch {
    let mut b = Batch::new(3, 3);
    let mut x = 0.37f32;
    for _ in 0..6 * 3 {
        x = (x * 7.31 + 0.17).fract();
        b.dense.push(x * 2.0 - 1.0);
    }
    b.labels = vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    // Duplicates inside a bag, a row shared across bags, an empty bag, multi-hot bags.
    let t0: [&[u32]; 6] = [&[0, 2], &[2, 2, 4], &[1], &[], &[3, 0], &[4]];
    let t1: [&[u32]; 6] = [&[1], &[0, 1], &[3, 3], &[2], &[4, 1, 0], &[2]];
    let t2: [&[u32]; 6] = [&[4], &[1], &[], &[0, 3], &[2], &[1, 1]];
    b.sparse = vec![Bags::new(), Bags::new(), Bags::new()];
    for ((a, c), d) in t0.iter().zip(t1.iter()).zip(t2.iter()) {
        b.sparse[0].push(a);
        b.sparse[1].push(c);
        b.sparse[2].push(d);
    }
    b
}

fn check(pooling: Pooling, representation: Representation, dhe_features: &[usize], seed: u64) {
    check_with(
        pooling,
        representation,
        dhe_features,
        seed,
        DheOutput::Linear,
    );
}

fn check_with(
    pooling: Pooling,
    representation: Representation,
    dhe_features: &[usize],
    seed: u64,
    output: DheOutput,
) {
    let dev = CpuDevice::new();
    let cfg = ModelConfig {
        dim: 3,
        bottom_mlp: vec![4],
        top_mlp: vec![5],
        pooling,
        embedding_optimizer: Optimizer::Sgd,
        dense_optimizer: Optimizer::Sgd,
        adagrad_eps: 1e-8,
        adagrad_init: 0.0,
        embedding_lr: None,
        embedding_init_scale: 0.6,
        representation,
        dhe_features: dhe_features.to_vec(),
        // Small, and linear out by default so the checked gradients are not flattened by a
        // saturated sigmoid (the sigmoid itself is checked in the kernel parity suite).
        dhe: DheConfig {
            k: 6,
            m: 1000,
            hidden: vec![4],
            output,
            ..DheConfig::default()
        },
    };
    let schema = Schema {
        num_dense: 3,
        table_rows: vec![5, 5, 5],
    };
    let mut batch = Batch::new(0, 0);
    cfg.layout(3)
        .unwrap()
        .split
        .apply(&tiny_batch(), &mut batch);
    let tables = batch.sparse.len();
    let n = batch.len() as f64;
    let maps: Vec<RowMap> = batch.sparse.iter().map(RowMap::from_bags).collect();
    let mut model = Dlrm::new(&dev, &cfg, &schema, Placement::all_on_device(), 8, seed).unwrap();

    let tables_before: Vec<Vec<f32>> = (0..tables)
        .map(|t| model.embeddings().read_table(&dev, t).unwrap())
        .collect();
    // Analytic gradients of the mean loss; the embeddings get an SGD step with lr = 1, so their
    // gradient is (before - after).
    model.compute_gradients(&dev, &batch, &maps, 1.0).unwrap();
    let mut analytic: Vec<(String, f64)> = Vec::new();
    for p in model.dense_params() {
        let g = dev.read_f32(p.grad, 0..p.len).unwrap();
        analytic.extend(
            g.iter()
                .enumerate()
                .map(|(i, g)| (format!("{}[{i}]", p.name), *g as f64 * n)),
        );
    }
    for (t, before) in tables_before.iter().enumerate() {
        let after = model.embeddings().read_table(&dev, t).unwrap();
        analytic.extend(
            before
                .iter()
                .zip(&after)
                .enumerate()
                .map(|(i, (b, a))| (format!("table{t}[{i}]"), (*b - *a) as f64 * n)),
        );
        model.embeddings().write_table(&dev, t, before).unwrap();
    }

    // Central differences of the summed loss, one coordinate at a time.
    let h = 1e-3f32;
    let mut numeric = Vec::new();
    let params: Vec<_> = model
        .dense_params()
        .iter()
        .map(|p| (p.len, p.name.clone()))
        .collect();
    for (pi, (len, _)) in params.iter().enumerate() {
        for i in 0..*len {
            let value = |m: &Dlrm<CpuDevice>| {
                dev.read_f32(m.dense_params()[pi].value, i..i + 1).unwrap()[0]
            };
            let set = |m: &Dlrm<CpuDevice>, v: f32| {
                dev.upload_elems(m.dense_params()[pi].value, i, &[v])
                    .unwrap()
            };
            let w = value(&model);
            set(&model, w + h);
            let up = model.loss_sum(&dev, &batch).unwrap();
            set(&model, w - h);
            let down = model.loss_sum(&dev, &batch).unwrap();
            set(&model, w);
            numeric.push((up - down) / (2.0 * h as f64));
        }
    }
    for (t, before) in tables_before.iter().enumerate() {
        for i in 0..before.len() {
            let mut v = before.clone();
            v[i] = before[i] + h;
            model.embeddings().write_table(&dev, t, &v).unwrap();
            let up = model.loss_sum(&dev, &batch).unwrap();
            v[i] = before[i] - h;
            model.embeddings().write_table(&dev, t, &v).unwrap();
            let down = model.loss_sum(&dev, &batch).unwrap();
            model.embeddings().write_table(&dev, t, before).unwrap();
            numeric.push((up - down) / (2.0 * h as f64));
        }
    }

    assert_eq!(analytic.len(), numeric.len());
    let mut worst = 0.0f64;
    for ((name, a), f) in analytic.iter().zip(&numeric) {
        let err = (a - f).abs() / (1e-2 + a.abs().max(f.abs()));
        worst = worst.max(err);
        assert!(
            err < 2e-2,
            "{pooling:?} {representation:?} {name}: analytic {a:.6} vs finite difference {f:.6}"
        );
    }
    println!(
        "{pooling:?} {representation:?}: {} gradients checked, worst relative error {worst:.2e}",
        analytic.len()
    );
}

#[test]
fn whole_model_gradients_match_finite_differences_sum_pooling() {
    check(Pooling::Sum, Representation::Table, &[], 7);
}

#[test]
fn whole_model_gradients_match_finite_differences_mean_pooling() {
    check(Pooling::Mean, Representation::Table, &[], 7);
}

/// The instance of the DHE checks (see the module docs on fixed seeds).
const SEED: u64 = 12;

#[test]
fn gradients_with_hybrid_features_match_finite_differences() {
    // Features 1 and 2 are hybrids (a table and a DHE each), 0 a table alone.
    check(Pooling::Sum, Representation::Hybrid, &[1, 2], SEED);
    check(Pooling::Mean, Representation::Hybrid, &[1, 2], SEED);
}

#[test]
fn gradients_with_dhe_features_match_finite_differences() {
    // Features 0 and 2 are DHEs alone, 1 a table.
    check(Pooling::Sum, Representation::Select, &[0, 2], SEED);
    check(Pooling::Mean, Representation::Dhe, &[], SEED);
}

#[test]
fn gradients_through_a_mish_decoder_output_match_finite_differences() {
    // Mish's backward reads the pre-activation the decoder keeps.
    check_with(
        Pooling::Sum,
        Representation::Dhe,
        &[],
        SEED,
        DheOutput::Mish,
    );
    check_with(
        Pooling::Mean,
        Representation::Hybrid,
        &[0, 2],
        SEED,
        DheOutput::Mish,
    );
}
