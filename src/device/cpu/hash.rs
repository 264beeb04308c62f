//! `hash_encode` on the CPU: the integer hashes of [`dhe_hash`], then the transform, each id on
//! one worker (the same result for any thread count).

use crate::device::kernels::hash::dhe_hash;
use crate::device::{HashShape, HashTransform};
use rayon::prelude::*;

/// Ids per rayon task.
const IDS_PER_TASK: usize = 64;

/// `out[i·k + j] = transform(dhe_hash(id_i, a_j, b_j, p, m))` (see
/// [`HashEncode`](crate::device::HashEncode)); `ids` holds `[lo, hi]` per id, `coeffs`
/// `[a, b]` per hash. The shape was validated.
pub fn hash_encode(ids: &[u32], coeffs: &[u32], out: &mut [f32], shape: &HashShape) {
    let (k, m, p) = (shape.k as usize, shape.m, shape.p);
    if k == 0 {
        return;
    }
    let scale = shape.scale();
    let n = shape.batch as usize;
    out[..n * k]
        .par_chunks_mut(k * IDS_PER_TASK)
        .enumerate()
        .for_each(|(task, rows)| {
            for (r, row) in rows.chunks_exact_mut(k).enumerate() {
                let i = task * IDS_PER_TASK + r;
                let x = ids[2 * i] as u64 | (ids[2 * i + 1] as u64) << 32;
                let h = |j: usize| dhe_hash(x, coeffs[2 * j], coeffs[2 * j + 1], p, m);
                match shape.transform {
                    HashTransform::Uniform => {
                        for (j, v) in row.iter_mut().enumerate() {
                            // 2h − (m − 1) is an exact integer below 2^24: one rounding.
                            *v = (2 * h(j) as i32 - (m as i32 - 1)) as f32 * scale;
                        }
                    }
                    HashTransform::Gaussian => {
                        for (c, pair) in row.chunks_exact_mut(2).enumerate() {
                            let u1 = (h(2 * c) + 1) as f32 * scale;
                            let u2 = (h(2 * c + 1) + 1) as f32 * scale;
                            let radius = (-2.0 * u1.ln()).sqrt();
                            let angle = std::f32::consts::TAU * u2;
                            pair[0] = radius * angle.cos();
                            pair[1] = radius * angle.sin();
                        }
                    }
                }
            }
        });
}

/// [`Device`](crate::device::Device)'s `hash_encode` on the CPU: lock the buffers, run it.
pub(super) mod launch {
    use super::super::{CpuBuffer, CpuDevice, f32s_mut};
    use crate::device::{DeviceError, HashEncode};

    pub fn hash_encode(_: &CpuDevice, a: &HashEncode<'_, CpuBuffer>) -> Result<(), DeviceError> {
        let (ids, coeffs) = (a.ids.read(), a.coeffs.read());
        let mut out = a.out.write();
        super::hash_encode(&ids, &coeffs, f32s_mut(&mut out), &a.shape);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::kernels::hash::first_prime_above;

    #[test]
    fn uniform_values_are_the_hashes_over_the_range_and_gaussian_ones_are_normal() {
        let m = 1_000_000;
        let p = first_prime_above(m);
        let ids: Vec<u64> = (0..2000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let words: Vec<u32> = ids
            .iter()
            .flat_map(|&x| [x as u32, (x >> 32) as u32])
            .collect();
        let coeffs: Vec<u32> = (0..8u32)
            .flat_map(|j| [1 + j * 7919, j * 104_729])
            .collect();
        let mut shape = HashShape {
            batch: ids.len() as u32,
            k: 8,
            m,
            p,
            transform: HashTransform::Uniform,
        };
        let mut out = vec![0f32; ids.len() * 8];
        hash_encode(&words, &coeffs, &mut out, &shape);
        for (i, &x) in ids.iter().enumerate() {
            for j in 0..8 {
                let h = dhe_hash(x, coeffs[2 * j], coeffs[2 * j + 1], p, m) as f64;
                let want = h / (m as f64 - 1.0) * 2.0 - 1.0;
                assert!(
                    (out[i * 8 + j] as f64 - want).abs() < 1e-6,
                    "id {x} hash {j}"
                );
            }
        }
        shape.transform = HashTransform::Gaussian;
        hash_encode(&words, &coeffs, &mut out, &shape);
        let n = out.len() as f64;
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = out.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }
}
