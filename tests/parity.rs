//! Parity: every backend against the CPU reference, kernel by kernel and for whole training.
//!
//! The kernel and training cases live in the library (`rowflow::check`), so `rowflow check`
//! runs exactly these on a new machine; here each is stamped out per backend by
//! `parity_tests!` (a backend that is absent is skipped with a printed reason, unless CI
//! requires it). Inputs are fresh random draws (seed printed; `ROWFLOW_SEED` replays) at sizes
//! that cross workgroup boundaries: 1, 63, 64, 65 and 1000 rows; D in {1, 3, 16, 64, 100, 128};
//! empty bags; repeated indices. Tolerances are `rowflow::check`'s: `EXACT`, `SUM`,
//! `TRANSCENDENTAL`. The wgpu-only cases (windows, split buffers) and cached training stay here.

mod common;

use common::{rng, seed, uniform};
use rowflow::check::{Checker, SUM, TRANSCENDENTAL, Tol, random_bags};
use rowflow::data::RowMap;
use rowflow::data::synthetic::{SyntheticDataset, SyntheticOptions};
use rowflow::data::{Batch, Dataset, Schema};
use rowflow::device::cpu::CpuDevice;
use rowflow::device::wgpu::WgpuOptions;
use rowflow::device::{
    BagBackward, BagForward, BagShape, Device, DeviceError, DeviceExt, Optimizer, Pooling,
    RowGradMap, Strided,
};
use rowflow::embedding::{Placement, Residency};
use rowflow::model::{Dlrm, ModelConfig};

fn assert_parity(what: &str, got: &[f32], cpu: &[f32], tol: Tol) {
    let mut ck = Checker::new("backend", 0);
    ck.compare(what, what, got, cpu, tol);
    ck.assert_pass();
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

/// One library check case on the backend, asserted.
fn check<D: Device>(
    dev: &D,
    name: &str,
    case: impl FnOnce(&D, &CpuDevice, &mut Checker) -> Result<(), DeviceError>,
) {
    let mut ck = Checker::new(dev.info().backend.to_string().as_str(), seed(name));
    case(dev, &CpuDevice::new(), &mut ck).unwrap();
    assert!(!ck.verdicts().is_empty(), "{name}: nothing was compared");
    ck.assert_pass();
}

#[path = "parity/cache.rs"]
mod cached;
use cached::cached_training_parity;

macro_rules! parity_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            use rowflow::check::{
                bag_backward, bag_forward, bce_loss, bias_act, dense_update, dhe, gemm,
                hash_encode, interaction, lookahead_equals_all_on_device, quantize_rows, training,
                training_as, transfers,
            };
            use rowflow::device::HashTransform;
            use rowflow::model::Representation;
            macro_rules! with_dev {
                (|$d:ident| $body:expr) => {
                    if let Some(dev) = $make {
                        let $d = &dev;
                        $body
                    }
                };
            }
            #[test]
            fn bag_forward_sum_matches_cpu() {
                with_dev!(|d| check(d, "bag_forward", |d, c, k| bag_forward(
                    d,
                    c,
                    Pooling::Sum,
                    k
                )));
            }
            #[test]
            fn bag_forward_mean_matches_cpu() {
                with_dev!(|d| check(d, "bag_forward", |d, c, k| bag_forward(
                    d,
                    c,
                    Pooling::Mean,
                    k
                )));
            }
            #[test]
            fn bag_backward_sgd_sum_matches_cpu() {
                with_dev!(|d| check(d, "bag_backward", |d, c, k| bag_backward(
                    d,
                    c,
                    Pooling::Sum,
                    false,
                    k
                )));
            }
            #[test]
            fn bag_backward_sgd_mean_matches_cpu() {
                with_dev!(|d| check(d, "bag_backward", |d, c, k| bag_backward(
                    d,
                    c,
                    Pooling::Mean,
                    false,
                    k
                )));
            }
            #[test]
            fn bag_backward_adagrad_sum_matches_cpu() {
                with_dev!(|d| check(d, "bag_backward", |d, c, k| bag_backward(
                    d,
                    c,
                    Pooling::Sum,
                    true,
                    k
                )));
            }
            #[test]
            fn bag_backward_adagrad_mean_matches_cpu() {
                with_dev!(|d| check(d, "bag_backward", |d, c, k| bag_backward(
                    d,
                    c,
                    Pooling::Mean,
                    true,
                    k
                )));
            }
            #[test]
            fn gemm_nn_matches_cpu() {
                with_dev!(|d| check(d, "gemm", |d, c, k| gemm(d, c, false, false, k)));
            }
            #[test]
            fn gemm_tn_matches_cpu() {
                with_dev!(|d| check(d, "gemm", |d, c, k| gemm(d, c, true, false, k)));
            }
            #[test]
            fn gemm_nt_matches_cpu() {
                with_dev!(|d| check(d, "gemm", |d, c, k| gemm(d, c, false, true, k)));
            }
            #[test]
            fn gemm_tt_matches_cpu() {
                with_dev!(|d| check(d, "gemm", |d, c, k| gemm(d, c, true, true, k)));
            }
            #[test]
            fn bias_act_forward_matches_cpu() {
                with_dev!(|d| check(d, "bias_act", |d, c, k| bias_act(d, c, false, k)));
            }
            #[test]
            fn bias_act_backward_matches_cpu() {
                with_dev!(|d| check(d, "bias_act", |d, c, k| bias_act(d, c, true, k)));
            }
            #[test]
            fn interaction_forward_matches_cpu() {
                with_dev!(|d| check(d, "interaction", |d, c, k| interaction(d, c, false, k)));
            }
            #[test]
            fn interaction_backward_matches_cpu() {
                with_dev!(|d| check(d, "interaction", |d, c, k| interaction(d, c, true, k)));
            }
            #[test]
            fn bce_loss_matches_cpu() {
                with_dev!(|d| check(d, "bce_loss", bce_loss));
            }
            #[test]
            fn dense_update_sgd_matches_cpu() {
                with_dev!(|d| check(d, "dense_update", |d, c, k| dense_update(d, c, false, k)));
            }
            #[test]
            fn dense_update_adagrad_matches_cpu() {
                with_dev!(|d| check(d, "dense_update", |d, c, k| dense_update(d, c, true, k)));
            }
            #[test]
            fn hash_encode_uniform_is_bit_identical_to_cpu() {
                with_dev!(|d| check(d, "hash_encode", |d, c, k| hash_encode(
                    d,
                    c,
                    HashTransform::Uniform,
                    k
                )));
            }
            #[test]
            fn hash_encode_gaussian_matches_cpu() {
                with_dev!(|d| check(d, "hash_encode", |d, c, k| hash_encode(
                    d,
                    c,
                    HashTransform::Gaussian,
                    k
                )));
            }
            #[test]
            fn a_whole_dhe_forward_and_backward_matches_cpu() {
                with_dev!(|d| check(d, "dhe", dhe));
            }
            #[test]
            fn uploads_downloads_and_copies_are_exact() {
                with_dev!(|d| check(d, "transfers", |d, _c, k| transfers(d, k)));
            }
            #[test]
            fn lookahead_training_equals_all_on_device() {
                with_dev!(
                    |d| check(d, "lookahead", |d, _c, k| lookahead_equals_all_on_device(
                        d, 30, k
                    ))
                );
            }
            #[test]
            fn thirty_training_steps_match_cpu() {
                with_dev!(|d| check(d, "training", |d, c, k| training(d, c, 30, k)));
            }
            #[test]
            fn hybrid_training_matches_cpu() {
                with_dev!(|d| check(d, "training", |d, c, k| training_as(
                    d,
                    c,
                    20,
                    Representation::Hybrid,
                    k
                )));
            }
            #[test]
            fn dhe_training_matches_cpu() {
                with_dev!(|d| check(d, "training", |d, c, k| training_as(
                    d,
                    c,
                    20,
                    Representation::Select,
                    k
                )));
            }
            #[test]
            fn quantize_and_dequantize_nearest_match_cpu() {
                with_dev!(|d| check(d, "quantize", |d, c, k| quantize_rows(d, c, false, k)));
            }
            #[test]
            fn quantize_and_dequantize_stochastic_match_cpu() {
                with_dev!(|d| check(d, "quantize", |d, c, k| quantize_rows(d, c, true, k)));
            }
            #[test]
            fn thirty_cached_int8_training_steps_match_cpu() {
                with_dev!(|d| cached_training_parity(d, &CpuDevice::new()));
            }
        }
    };
}

parity_tests!(wgpu, common::wgpu_device());
parity_tests!(cuda, common::cuda_device());

#[path = "parity/split.rs"]
mod wgpu_split;
