//! `rowflow check`: every kernel of a backend against the CPU reference on fresh random inputs
//! (sizes that cross workgroup and warp boundaries, empty bags, repeated rows), then whole
//! training against the CPU and the lookahead pipeline against all rows on the device. The
//! parity tests (`tests/parity.rs`) run these same cases and tolerances, so the binary checks a
//! new machine exactly as CI checks the code.
//!
//! Tolerances, by kind of result:
//! - [`EXACT`]: copies, uploads, downloads and anything that only moves bits.
//! - [`SUM`]: f32 sums and products, 1e-5 relative (+1e-6 absolute near zero): the backends may
//!   sum in another order (tree reductions, table windows) or fuse multiply-adds.
//! - [`TRANSCENDENTAL`]: results through exp/log/sqrt, 1e-5 relative + 1e-6 absolute: the GPU's
//!   functions are not correctly rounded.

mod dense;
mod hash;
mod kernels;
mod quantize;
mod training;

pub use dense::{bias_act, interaction};
pub use hash::{dhe, hash_encode};
pub use kernels::{bag_backward, bag_forward, bce_loss, dense_update, gemm, transfers};
pub use quantize::quantize_rows;
pub use training::{lookahead_equals_all_on_device, training, training_as};

use crate::data::Bags;
use crate::device::cpu::CpuDevice;
use crate::device::{Device, HashTransform, Pooling};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Serialize;

/// (relative, absolute) tolerances.
pub type Tol = (f64, f64);
/// Bits moved, not computed.
pub const EXACT: Tol = (0.0, 0.0);
/// Sums and products in f32.
pub const SUM: Tol = (1e-5, 1e-6);
/// Through exp, log or sqrt.
pub const TRANSCENDENTAL: Tol = (1e-5, 1e-6);

/// One kernel's (or check's) result on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// `bag_forward`, `training`, …
    pub kernel: String,
    /// `cpu`, `wgpu`, `cuda`.
    pub backend: String,
    /// Input cases compared.
    pub cases: usize,
    /// Largest |backend − cpu| over every element of every case.
    pub worst_error: f64,
    /// Largest error over what its tolerance allowed (≤ 1 passes).
    pub worst_ratio: f64,
    /// The tolerance, as `rel R + abs A` (the case with the worst ratio).
    pub tolerance: String,
    /// Every element of every case within its tolerance, and no device error.
    pub pass: bool,
    /// The first failing case and element, or the device error.
    pub failure: Option<String>,
}

/// Collects comparisons into one [`Verdict`] per kernel.
pub struct Checker {
    backend: String,
    seed: u64,
    streams: u64,
    verdicts: Vec<Verdict>,
}

fn tolerance(t: Tol) -> String {
    format!("rel {:.0e} + abs {:.0e}", t.0, t.1)
}

impl Checker {
    /// A checker for `backend` drawing its inputs from `seed`.
    pub fn new(backend: &str, seed: u64) -> Self {
        Checker {
            backend: backend.into(),
            seed,
            streams: 0,
            verdicts: Vec::new(),
        }
    }

    /// The seed the inputs come from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A new random stream (each case function takes one, so cases do not share draws).
    pub fn rng(&mut self) -> Pcg64Mcg {
        self.streams += 1;
        Pcg64Mcg::seed_from_u64(crate::rng::mix64(
            self.seed ^ crate::rng::splitmix64(self.streams),
        ))
    }

    fn verdict(&mut self, kernel: &str, tol: Tol) -> &mut Verdict {
        if let Some(i) = self.verdicts.iter().position(|v| v.kernel == kernel) {
            return &mut self.verdicts[i];
        }
        self.verdicts.push(Verdict {
            kernel: kernel.into(),
            backend: self.backend.clone(),
            cases: 0,
            worst_error: 0.0,
            worst_ratio: 0.0,
            tolerance: tolerance(tol),
            pass: true,
            failure: None,
        });
        self.verdicts.last_mut().expect("just pushed")
    }

    /// Compares one case's outputs element by element.
    pub fn compare(&mut self, kernel: &str, case: &str, got: &[f32], want: &[f32], tol: Tol) {
        let v = self.verdict(kernel, tol);
        v.cases += 1;
        if got.len() != want.len() {
            v.pass = false;
            v.failure.get_or_insert(format!(
                "{case}: {} values, the CPU has {}",
                got.len(),
                want.len()
            ));
            return;
        }
        for (i, (g, c)) in got.iter().zip(want).enumerate() {
            let (g, c) = (*g as f64, *c as f64);
            if g.is_nan() && c.is_nan() {
                continue;
            }
            let err = (g - c).abs();
            let allowed = tol.0 * g.abs().max(c.abs()) + tol.1;
            let ratio = if err == 0.0 {
                0.0
            } else if allowed > 0.0 {
                err / allowed
            } else {
                f64::INFINITY
            };
            if err.is_nan() || ratio > 1.0 {
                v.pass = false;
                v.failure.get_or_insert(format!(
                    "{case}[{i}]: backend {g} vs cpu {c} (error {err:.3e})"
                ));
            }
            if err > v.worst_error || err.is_nan() {
                v.worst_error = err;
            }
            if ratio > v.worst_ratio || ratio.is_nan() {
                v.worst_ratio = ratio;
                v.tolerance = tolerance(tol);
            }
        }
    }

    /// Records a check that could not run: a device error fails its kernel with the message.
    pub fn fail(&mut self, kernel: &str, message: String) {
        let v = self.verdict(kernel, EXACT);
        v.pass = false;
        v.failure.get_or_insert(message);
    }

    /// The verdicts so far, one per kernel, in the order first seen.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// Panics with every failure (the parity tests' assertion).
    pub fn assert_pass(&self) {
        let failed: Vec<String> = self
            .verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| {
                format!(
                    "{} on {}: {}",
                    v.kernel,
                    v.backend,
                    v.failure.clone().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            failed.is_empty(),
            "seed {} (replay with ROWFLOW_SEED={}): {}",
            self.seed,
            self.seed,
            failed.join("; ")
        );
    }
}

/// `n` values uniform in `[-1, 1)`.
pub fn uniform(rng: &mut Pcg64Mcg, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `bags` bags over `rows` rows of up to `max_len` lookups: every 7th bag is empty, and half
/// the lookups hit 3 hot rows (duplicates within and across bags).
pub fn random_bags(r: &mut Pcg64Mcg, bags: usize, rows: u32, max_len: usize) -> Bags {
    let mut out = Bags::new();
    for b in 0..bags {
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

/// Every check of `dev` against the CPU: each kernel's cases, then training (`steps` DLRM
/// steps; 200 in full, 30 with `quick`) and the lookahead pipeline's equality with all rows on
/// the device. A device error fails the check it happened in; the others still run.
pub fn run<D: Device>(dev: &D, ck: &mut Checker, quick: bool) {
    let cpu = &CpuDevice::new();
    macro_rules! case {
        ($kernel:expr, $call:expr) => {
            if let Err(e) = $call {
                ck.fail($kernel, e.to_string());
            }
        };
    }
    for pooling in [Pooling::Sum, Pooling::Mean] {
        case!("bag_forward", bag_forward(dev, cpu, pooling, ck));
        case!(
            "bag_backward_sgd",
            bag_backward(dev, cpu, pooling, false, ck)
        );
        case!(
            "bag_backward_adagrad",
            bag_backward(dev, cpu, pooling, true, ck)
        );
    }
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        case!("gemm", gemm(dev, cpu, ta, tb, ck));
    }
    case!("bias_act_forward", bias_act(dev, cpu, false, ck));
    case!("bias_act_backward", bias_act(dev, cpu, true, ck));
    case!("interaction_forward", interaction(dev, cpu, false, ck));
    case!("interaction_backward", interaction(dev, cpu, true, ck));
    case!("bce_loss", bce_loss(dev, cpu, ck));
    case!("dense_update", dense_update(dev, cpu, false, ck));
    case!("dense_update", dense_update(dev, cpu, true, ck));
    for stochastic in [false, true] {
        case!(
            "quantize_rows+dequantize_rows",
            quantize_rows(dev, cpu, stochastic, ck)
        );
    }
    for transform in [HashTransform::Uniform, HashTransform::Gaussian] {
        case!("hash_encode", hash_encode(dev, cpu, transform, ck));
    }
    case!("dhe", dhe(dev, cpu, ck));
    case!("transfers", transfers(dev, ck));
    let steps = if quick { 30 } else { 200 };
    case!("training", training(dev, cpu, steps, ck));
    case!(
        "training",
        training_as(dev, cpu, steps, crate::model::Representation::Hybrid, ck)
    );
    case!(
        "lookahead",
        lookahead_equals_all_on_device(dev, steps.min(60), ck)
    );
}
