//! Parity: every backend against the CPU reference, kernel by kernel and for whole training.
//!
//! Each test body is written once, generic over the backend, and `parity_tests!` stamps it out
//! per backend (a backend that is absent is skipped with a printed reason, unless CI requires
//! it). Inputs are fresh random draws (seed printed; `ROWFLOW_SEED` replays) at sizes that cross
//! workgroup boundaries: 1, 63, 64, 65 and 1000 rows; D in {1, 3, 16, 64, 100, 128}; empty bags;
//! repeated indices.
//!
//! Tolerances, by kind of result:
//! - `EXACT`: copies, uploads, downloads and anything that only moves bits.
//! - `SUM`: f32 sums and products, 1e-5 relative (+1e-6 absolute near zero): the backends may
//!   sum in another order (tree reductions, table windows) or fuse multiply-adds.
//! - `TRANSCENDENTAL`: results through exp/log/sqrt, 1e-5 relative + 1e-6 absolute: the GPU's
//!   functions are not correctly rounded.

mod common;

use common::{rng, seed, uniform};
use rand::RngExt;
use rowflow::data::RowMap;
use rowflow::data::synthetic::{SyntheticDataset, SyntheticOptions};
use rowflow::data::{Bags, Batch, Dataset, Schema};
use rowflow::device::cpu::CpuDevice;
use rowflow::device::wgpu::WgpuOptions;
use rowflow::device::{
    BagBackward, BagForward, BagShape, BceLoss, DenseUpdate, Device, DeviceExt, Gemm, Optimizer,
    Pooling, RowGradMap, Strided,
};
use rowflow::embedding::{Placement, Residency};
use rowflow::model::{Dlrm, ModelConfig};

/// (relative, absolute) tolerances.
type Tol = (f64, f64);
const EXACT: Tol = (0.0, 0.0);
const SUM: Tol = (1e-5, 1e-6);
const TRANSCENDENTAL: Tol = (1e-5, 1e-6);

fn assert_parity(what: &str, got: &[f32], cpu: &[f32], (rel, abs): Tol) {
    assert_eq!(got.len(), cpu.len(), "{what}: length");
    for (i, (g, c)) in got.iter().zip(cpu).enumerate() {
        let (g, c) = (*g as f64, *c as f64);
        let err = (g - c).abs();
        assert!(
            err <= rel * g.abs().max(c.abs()) + abs || (g.is_nan() && c.is_nan()),
            "{what}[{i}]: backend {g} vs cpu {c} (error {err:.3e})"
        );
    }
}

/// Runs `$body` (which returns the outputs to compare) on the backend and on the CPU.
macro_rules! both {
    ($dev:expr, $cpu:expr, |$d:ident| $body:expr) => {{
        let got = {
            let $d = $dev;
            $body
        };
        let want = {
            let $d = $cpu;
            $body
        };
        (got, want)
    }};
}

fn random_bags(r: &mut rand_pcg::Pcg64Mcg, bags: usize, rows: u32, max_len: usize) -> Bags {
    let mut out = Bags::new();
    for b in 0..bags {
        // Every 7th bag is empty; half the lookups hit 3 hot rows (duplicates within and across bags).
        let len = if b % 7 == 3 {
            0
        } else {
            r.random_range(1..=max_len)
        };
        let bag: Vec<u32> = (0..len)
            .map(|_| {
                if r.random_bool(0.5) {
                    r.random_range(0..rows.min(3))
                } else {
                    r.random_range(0..rows)
                }
            })
            .collect();
        out.push(&bag);
    }
    out
}

const SHAPES: [(usize, usize); 6] = [(1, 1), (63, 3), (64, 16), (65, 64), (1000, 100), (130, 128)];

fn bag_forward_parity<D: Device>(dev: &D, cpu: &CpuDevice, pooling: Pooling) {
    let mut r = rng(seed("bag_forward_parity"));
    for (bags, dim) in SHAPES {
        let rows = r.random_range(1..400u32);
        let table = uniform(&mut r, rows as usize * dim);
        let b = random_bags(&mut r, bags, rows, 8);
        let (got, want) = both!(dev, cpu, |d| {
            let out = d.alloc_elems(bags * 2 * dim).unwrap();
            d.bag_forward(&BagForward {
                table: &d.buffer_from_f32(&table).unwrap(),
                indices: &d.buffer_from_u32(&b.indices).unwrap(),
                offsets: &d.buffer_from_u32(&b.offsets).unwrap(),
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                out: Strided {
                    buffer: &out,
                    stride: 2 * dim as u32,
                    offset: dim as u32,
                },
            })
            .unwrap();
            d.read_f32(&out, 0..bags * 2 * dim).unwrap()
        });
        assert_parity(
            &format!("bag_forward {pooling:?} {bags}x{dim}"),
            &got,
            &want,
            SUM,
        );
    }
}

fn bag_backward_parity<D: Device>(dev: &D, cpu: &CpuDevice, pooling: Pooling, adagrad: bool) {
    let mut r = rng(seed("bag_backward_parity"));
    for (bags, dim) in SHAPES {
        let rows = r.random_range(1..3000u32);
        let table = uniform(&mut r, rows as usize * dim);
        let state: Vec<f32> = (0..rows).map(|_| r.random_range(0.0f32..1.0)).collect();
        let b = random_bags(&mut r, bags, rows, 8);
        let map = RowMap::from_bags(&b);
        let grad = uniform(&mut r, bags * dim);
        let (got, want) = both!(dev, cpu, |d| {
            let t = d.buffer_from_f32(&table).unwrap();
            let s = d.buffer_from_f32(&state).unwrap();
            let (ur, rs, bi) = (
                d.buffer_from_u32(&map.unique_rows).unwrap(),
                d.buffer_from_u32(&map.row_starts).unwrap(),
                d.buffer_from_u32(&map.bag_ids).unwrap(),
            );
            let (o, g) = (
                d.buffer_from_u32(&b.offsets).unwrap(),
                d.buffer_from_f32(&grad).unwrap(),
            );
            let args = BagBackward {
                table: &t,
                map: RowGradMap {
                    unique_rows: &ur,
                    row_starts: &rs,
                    bag_ids: &bi,
                    unique: map.unique() as u32,
                },
                offsets: &o,
                shape: BagShape {
                    rows,
                    dim: dim as u32,
                    bags: bags as u32,
                    pooling,
                },
                grad: Strided::packed(&g, dim as u32),
                lr: 0.25,
            };
            if adagrad {
                d.bag_backward_adagrad(&args, &s, 1e-6).unwrap();
            } else {
                d.bag_backward_sgd(&args).unwrap();
            }
            let mut out = d.read_f32(&t, 0..table.len()).unwrap();
            out.extend(d.read_f32(&s, 0..rows as usize).unwrap());
            out
        });
        let tol = if adagrad { TRANSCENDENTAL } else { SUM };
        assert_parity(
            &format!("bag_backward {pooling:?} adagrad={adagrad} {bags}x{dim}"),
            &got,
            &want,
            tol,
        );
    }
}

fn gemm_parity<D: Device>(dev: &D, cpu: &CpuDevice, ta: bool, tb: bool) {
    let mut r = rng(seed("gemm_parity"));
    for (m, n, k) in [
        (1, 1, 1),
        (63, 64, 65),
        (1000, 17, 33),
        (16, 128, 100),
        (65, 3, 1),
    ] {
        for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, -1.5)] {
            let (a, b) = (uniform(&mut r, m * k), uniform(&mut r, k * n));
            let mut c0 = uniform(&mut r, m * n);
            if beta == 0.0 {
                c0[0] = f32::NAN; // must be ignored
            }
            let (got, want) = both!(dev, cpu, |d| {
                let c = d.buffer_from_f32(&c0).unwrap();
                d.gemm(&Gemm {
                    a: &d.buffer_from_f32(&a).unwrap(),
                    b: &d.buffer_from_f32(&b).unwrap(),
                    c: &c,
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    trans_a: ta,
                    trans_b: tb,
                    alpha,
                    beta,
                })
                .unwrap();
                d.read_f32(&c, 0..m * n).unwrap()
            });
            // A dot of k terms: allow k ulps-worth relative to the terms' size (≤ 1 here).
            let tol = (SUM.0, 1e-6 * (k as f64).sqrt());
            assert_parity(
                &format!("gemm {m}x{n}x{k} ta={ta} tb={tb} a={alpha} b={beta}"),
                &got,
                &want,
                tol,
            );
        }
    }
}

fn bce_parity<D: Device>(dev: &D, cpu: &CpuDevice) {
    let mut r = rng(seed("bce_parity"));
    for batch in [1usize, 63, 64, 65, 1000] {
        let mut z: Vec<f32> = (0..batch).map(|_| r.random_range(-12.0f32..12.0)).collect();
        z[0] = -70.0;
        let y: Vec<f32> = (0..batch).map(|_| r.random_range(0..2u8) as f32).collect();
        let (got, want) = both!(dev, cpu, |d| {
            let (lb, gb) = (d.alloc_elems(batch).unwrap(), d.alloc_elems(batch).unwrap());
            d.bce_loss(&BceLoss {
                logits: &d.buffer_from_f32(&z).unwrap(),
                labels: &d.buffer_from_f32(&y).unwrap(),
                loss: &lb,
                dlogits: &gb,
                batch: batch as u32,
                scale: 1.0 / batch as f32,
            })
            .unwrap();
            let mut out = d.read_f32(&lb, 0..batch).unwrap();
            out.extend(d.read_f32(&gb, 0..batch).unwrap());
            out
        });
        assert_parity(&format!("bce_loss {batch}"), &got, &want, TRANSCENDENTAL);
    }
}

fn dense_update_parity<D: Device>(dev: &D, cpu: &CpuDevice, adagrad: bool) {
    let mut r = rng(seed("dense_update_parity"));
    for len in [1usize, 63, 64, 65, 1000, 100_000] {
        let (w, g) = (uniform(&mut r, len), uniform(&mut r, len));
        let s: Vec<f32> = (0..len).map(|_| r.random_range(0.0f32..2.0)).collect();
        let optimizer = if adagrad {
            Optimizer::Adagrad
        } else {
            Optimizer::Sgd
        };
        let (got, want) = both!(dev, cpu, |d| {
            let (wb, sb) = (
                d.buffer_from_f32(&w).unwrap(),
                d.buffer_from_f32(&s).unwrap(),
            );
            let gb = d.buffer_from_f32(&g).unwrap();
            let state = adagrad.then_some(&sb);
            d.dense_update(&DenseUpdate {
                param: &wb,
                grad: &gb,
                state,
                len: len as u32,
                lr: 0.05,
                optimizer,
                eps: 1e-8,
            })
            .unwrap();
            let mut out = d.read_f32(&wb, 0..len).unwrap();
            out.extend(d.read_f32(&sb, 0..len).unwrap());
            out
        });
        assert_parity(
            &format!("dense_update adagrad={adagrad} {len}"),
            &got,
            &want,
            TRANSCENDENTAL,
        );
    }
}

fn transfers_are_exact<D: Device>(dev: &D) {
    let mut r = rng(seed("transfers"));
    let data = uniform(&mut r, 50_001);
    let b = dev.alloc_elems(60_000).unwrap();
    dev.upload_elems(&b, 3, &data).unwrap();
    assert_eq!(dev.read_f32(&b, 3..3 + data.len()).unwrap(), data);
    assert_eq!(dev.read_f32(&b, 1000..1000 + 7).unwrap(), data[997..1004]);
    let c = dev.alloc_elems(60_000).unwrap();
    dev.copy_buffer(&b, 12, &c, 0, 4 * 50_000).unwrap();
    assert_parity(
        "copy_buffer",
        &dev.read_f32(&c, 0..50_000).unwrap(),
        &data[..50_000],
        EXACT,
    );
}

/// Thirty DLRM steps from the same seed on the backend and on the CPU: the losses agree within
/// 1e-4 relative at every step and the final weights within 1e-4.
fn training_parity<D: Device>(dev: &D, cpu: &CpuDevice) {
    let seed = seed("training_parity");
    let opts = SyntheticOptions {
        tables: 4,
        train_samples: 30 * 128,
        test_samples: 300,
        ..Default::default()
    };
    let data = SyntheticDataset::new(&opts, &[500, 2000, 50, 1000], seed).unwrap();
    let schema: Schema = data.schema().clone();
    let cfg = ModelConfig {
        embedding_optimizer: Optimizer::Adagrad,
        ..Default::default()
    };
    let mut a = Dlrm::new(dev, &cfg, &schema, Placement::all_on_device(), 512, seed).unwrap();
    let mut b = Dlrm::new(cpu, &cfg, &schema, Placement::all_on_device(), 512, seed).unwrap();
    let mut stream = data.open_train().unwrap();
    let mut batch = Batch::new(schema.num_dense, 4);
    for step in 0..30 {
        stream.next_batch(128, &mut batch).unwrap();
        let maps: Vec<RowMap> = batch.sparse.iter().map(RowMap::from_bags).collect();
        let la = a
            .train_step(dev, &batch, &maps, Residency::OnDemand, 0.05)
            .unwrap()
            .loss;
        let lb = b
            .train_step(cpu, &batch, &maps, Residency::OnDemand, 0.05)
            .unwrap()
            .loss;
        assert!(
            (la - lb).abs() <= 1e-4 * lb.abs(),
            "step {step}: loss {la} vs cpu {lb}"
        );
    }
    for (pa, pb) in a.dense_params().iter().zip(b.dense_params()) {
        let (wa, wb) = (
            dev.read_f32(pa.value, 0..pa.len).unwrap(),
            cpu.read_f32(pb.value, 0..pb.len).unwrap(),
        );
        assert_parity(&pa.name, &wa, &wb, (1e-4, 1e-4));
    }
    for t in 0..4 {
        let (wa, wb) = (
            a.embeddings().read_table(dev, t).unwrap(),
            b.embeddings().read_table(cpu, t).unwrap(),
        );
        assert_parity(&format!("table {t}"), &wa, &wb, (1e-4, 1e-4));
    }
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    a.predict(dev, data.test(), &mut pa).unwrap();
    b.predict(cpu, data.test(), &mut pb).unwrap();
    assert_parity("test predictions", &pa, &pb, (1e-4, 1e-5));
}

#[path = "parity/cache.rs"]
mod cached;
use cached::{cached_training_parity, quantize_parity};
#[path = "parity/dense.rs"]
mod dense;
use dense::{bias_act_parity, interaction_parity};

macro_rules! parity_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            macro_rules! with_dev {
                (|$d:ident, $c:ident| $body:expr) => {
                    if let Some(dev) = $make {
                        let ($d, $c) = (&dev, &CpuDevice::new());
                        $body
                    }
                };
            }
            #[test]
            fn bag_forward_sum_matches_cpu() {
                with_dev!(|d, c| bag_forward_parity(d, c, Pooling::Sum));
            }
            #[test]
            fn bag_forward_mean_matches_cpu() {
                with_dev!(|d, c| bag_forward_parity(d, c, Pooling::Mean));
            }
            #[test]
            fn bag_backward_sgd_sum_matches_cpu() {
                with_dev!(|d, c| bag_backward_parity(d, c, Pooling::Sum, false));
            }
            #[test]
            fn bag_backward_sgd_mean_matches_cpu() {
                with_dev!(|d, c| bag_backward_parity(d, c, Pooling::Mean, false));
            }
            #[test]
            fn bag_backward_adagrad_sum_matches_cpu() {
                with_dev!(|d, c| bag_backward_parity(d, c, Pooling::Sum, true));
            }
            #[test]
            fn bag_backward_adagrad_mean_matches_cpu() {
                with_dev!(|d, c| bag_backward_parity(d, c, Pooling::Mean, true));
            }
            #[test]
            fn gemm_nn_matches_cpu() {
                with_dev!(|d, c| gemm_parity(d, c, false, false));
            }
            #[test]
            fn gemm_tn_matches_cpu() {
                with_dev!(|d, c| gemm_parity(d, c, true, false));
            }
            #[test]
            fn gemm_nt_matches_cpu() {
                with_dev!(|d, c| gemm_parity(d, c, false, true));
            }
            #[test]
            fn gemm_tt_matches_cpu() {
                with_dev!(|d, c| gemm_parity(d, c, true, true));
            }
            #[test]
            fn bias_act_forward_matches_cpu() {
                with_dev!(|d, c| bias_act_parity(d, c, false));
            }
            #[test]
            fn bias_act_backward_matches_cpu() {
                with_dev!(|d, c| bias_act_parity(d, c, true));
            }
            #[test]
            fn interaction_forward_matches_cpu() {
                with_dev!(|d, c| interaction_parity(d, c, false));
            }
            #[test]
            fn interaction_backward_matches_cpu() {
                with_dev!(|d, c| interaction_parity(d, c, true));
            }
            #[test]
            fn bce_loss_matches_cpu() {
                with_dev!(|d, c| bce_parity(d, c));
            }
            #[test]
            fn dense_update_sgd_matches_cpu() {
                with_dev!(|d, c| dense_update_parity(d, c, false));
            }
            #[test]
            fn dense_update_adagrad_matches_cpu() {
                with_dev!(|d, c| dense_update_parity(d, c, true));
            }
            #[test]
            fn uploads_downloads_and_copies_are_exact() {
                with_dev!(|d, _c| transfers_are_exact(d));
            }
            #[test]
            fn thirty_training_steps_match_cpu() {
                with_dev!(|d, c| training_parity(d, c));
            }
            #[test]
            fn quantize_and_dequantize_nearest_match_cpu() {
                with_dev!(|d, c| quantize_parity(d, c, false));
            }
            #[test]
            fn quantize_and_dequantize_stochastic_match_cpu() {
                with_dev!(|d, c| quantize_parity(d, c, true));
            }
            #[test]
            fn thirty_cached_int8_training_steps_match_cpu() {
                with_dev!(|d, c| cached_training_parity(d, c));
            }
        }
    };
}

parity_tests!(wgpu, common::wgpu_device());
parity_tests!(cuda, common::cuda_device());

#[path = "parity/split.rs"]
mod wgpu_split;
