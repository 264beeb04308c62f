//! `hash_encode` against the CPU: the uniform transform bit for bit (so every hash integer is
//! equal: the map from hash to value is one-to-one), the gaussian one within transcendental
//! tolerance (backends' `log`, `cos`, `sin` differ in the last bits).

use super::kernels::both;
use super::{Checker, EXACT, SUM, TRANSCENDENTAL};
use crate::device::cpu::CpuDevice;
use crate::device::kernels::hash::{MAX_HASH_RANGE, first_prime_above};
use crate::device::{Device, DeviceError, DeviceExt, HashEncode, HashShape, HashTransform};
use rand::RngExt;

/// Ids × hashes × range: one id, a workgroup's 64 and its neighbours, DHE's default
/// k = 1024 and m = 1,000,000, the largest range, tiny ranges.
const SHAPES: [(usize, u32, u32); 6] = [
    (1, 2, 2),
    (63, 7, 17),
    (64, 16, 1_000_000),
    (65, 64, MAX_HASH_RANGE),
    (300, 1024, 1_000_000),
    (1000, 8, 1000),
];

/// `hash_encode` with `transform` over [`SHAPES`] (even `k` for gaussian), ids across the
/// whole 64-bit range (0, `u64::MAX` and random).
pub fn hash_encode<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    transform: HashTransform,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for (batch, k, m) in SHAPES {
        let k = if transform == HashTransform::Gaussian {
            k + k % 2
        } else {
            k
        };
        let p = first_prime_above(m);
        let mut ids: Vec<u32> = (0..2 * batch).map(|_| r.random()).collect();
        ids[..2].copy_from_slice(&[0, 0]);
        if batch > 1 {
            ids[2..4].copy_from_slice(&[u32::MAX, u32::MAX]);
        }
        let coeffs: Vec<u32> = (0..k)
            .flat_map(|_| [r.random_range(1..p), r.random_range(0..p)])
            .collect();
        let shape = HashShape {
            batch: batch as u32,
            k,
            m,
            p,
            transform,
        };
        let n = batch * k as usize;
        let (got, want) = both!(dev, cpu, |d| {
            let out = d.alloc_elems(n)?;
            d.hash_encode(&HashEncode {
                ids: &d.buffer_from_u32(&ids)?,
                coeffs: &d.buffer_from_u32(&coeffs)?,
                out: &out,
                shape,
            })?;
            d.read_f32(&out, 0..n)?
        });
        let tol = match transform {
            HashTransform::Uniform => EXACT,
            // cos and sin of angles up to 2π: an ulp of the angle (4.8e-7) times a radius up
            // to ~5.3 moves a value near a zero crossing by ~2.5e-6 before any difference in
            // the backends' sin/cos: an absolute allowance on top of the relative one.
            HashTransform::Gaussian => (TRANSCENDENTAL.0, 5e-5),
        };
        let what = format!("hash_encode {transform:?} {batch}×{k} m={m}");
        ck.compare("hash_encode", &what, &got, &want, tol);
    }
    Ok(())
}

/// A whole DHE (hash, decoder forward, decoder backward) against the CPU: the outputs and every
/// decoder gradient, for a batch crossing a workgroup boundary.
pub fn dhe<D: Device>(dev: &D, cpu: &CpuDevice, ck: &mut Checker) -> Result<(), DeviceError> {
    use crate::model::{Dhe, DheConfig, DheOutput, ModelError};
    let mut r = ck.rng();
    let batch = 65;
    let ids: Vec<u64> = (0..batch).map(|_| r.random()).collect();
    let dout: Vec<f32> = (0..batch * 16)
        .map(|_| r.random_range(-1.0f32..1.0))
        .collect();
    let model_err = |e: ModelError| match e {
        ModelError::Device(d) => d,
        other => DeviceError::InvalidArgument {
            kernel: "dhe",
            message: other.to_string(),
        },
    };
    for output in [DheOutput::Sigmoid, DheOutput::Linear, DheOutput::Mish] {
        let cfg = DheConfig {
            k: 64,
            hidden: vec![32],
            output,
            ..DheConfig::default()
        };
        let rule = crate::device::OptimizerRule {
            optimizer: crate::device::Optimizer::Sgd,
            eps: 1e-8,
            init: 0.0,
        };
        let (got, want) = both!(dev, cpu, |d| {
            let mut m = Dhe::new(d, &cfg, 16, batch, rule, 11, 3).map_err(model_err)?;
            m.forward(d, &ids).map_err(model_err)?;
            let mut out = d.read_f32(m.output(), 0..batch * 16)?;
            d.upload_elems(m.output_grad(), 0, &dout)?;
            m.backward(d, batch).map_err(model_err)?;
            for p in m.params() {
                out.extend(d.read_f32(p.grad, 0..p.len)?);
            }
            out
        });
        let what = format!("dhe {output:?}: output and decoder gradients");
        ck.compare(
            "dhe",
            &what,
            &got,
            &want,
            (SUM.0, SUM.1 * (batch as f64).sqrt()),
        );
    }
    Ok(())
}
