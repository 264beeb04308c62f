//! Row precisions, the packed row layouts of DESIGN.md, and the reference (de)quantization that
//! every backend's `quantize_rows` / `dequantize_rows` matches.
//!
//! | precision | row bytes | layout |
//! |---|---|---|
//! | FP32 | 4·D | D × f32 |
//! | FP16 | pad4(2·D) | D × f16 |
//! | INT8 | 8 + pad4(D) | f32 scale, f32 bias, D × u8 |
//! | INT4 | 4 + pad4(⌈D/2⌉) | f16 scale, f16 bias, D × 4 bits, low nibble first |
//!
//! Everything is little-endian and padded to whole 32-bit words (WGSL reads storage as `u32`).
//! Integer formats are row-wise min/max: `bias = min`, `scale = (max − min) / (2^bits − 1)`
//! (`scale = 1` when `max = min`), `value = q·scale + bias`. INT4 stores scale and bias as f16:
//! the bias rounded down, then `scale = (max − bias) / 15` rounded up, so every value still falls
//! in `[bias, bias + 15·scale]` and the round-trip error stays within `scale / 2`. Values beyond
//! f16's range (±65504) saturate in FP16 and INT4 rows.
//!
//! **Rounding.** Nearest rounds `v = (x − bias) / scale` to `floor(v + 0.5)` (FP16: to nearest
//! even); stochastic rounds to `floor(v + u)` (FP16: up to the next f16 with probability equal
//! to the distance from the one below), with `u` uniform in `[0, 1)` from [`rounding_uniform`], a
//! counter-based hash of `(seed, step, row, column)`: the same bits on every backend, no state,
//! any order.

use half::f16;

named_enum! {
    /// How a table's rows are stored in the host backing store.
    pub enum Precision as "lowercase" {
        /// 32-bit floats (no loss).
        Fp32,
        /// IEEE binary16.
        Fp16,
        /// 8-bit row-wise quantization.
        Int8,
        /// 4-bit row-wise quantization.
        Int4,
    }
}

named_enum! {
    /// How values are rounded when quantized.
    #[derive(Default)]
    pub enum Rounding as "lowercase" {
        /// Round to nearest (deterministic, biased for repeated small updates).
        Nearest,
        /// Stochastic rounding: unbiased in expectation.
        #[default]
        Stochastic,
    }
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl Precision {
    /// Bytes of one packed row of `dim` values (a multiple of 4).
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            Precision::Fp32 => 4 * dim,
            Precision::Fp16 => pad4(2 * dim),
            Precision::Int8 => 8 + pad4(dim),
            Precision::Int4 => 4 + pad4(dim.div_ceil(2)),
        }
    }

    /// 32-bit words of one packed row.
    pub fn row_words(self, dim: usize) -> usize {
        self.row_bytes(dim) / 4
    }

    /// Quantization levels minus one (`2^bits − 1`) for the integer formats.
    pub fn max_level(self) -> Option<u32> {
        match self {
            Precision::Int8 => Some(255),
            Precision::Int4 => Some(15),
            _ => None,
        }
    }

    /// The layout's code in the `format` parameter of `shaders/(de)quantize_rows.wgsl` and
    /// `kernels/(de)quantize_rows.cu`.
    pub fn code(self) -> u32 {
        match self {
            Precision::Fp32 => 0,
            Precision::Fp16 => 1,
            Precision::Int8 => 2,
            Precision::Int4 => 3,
        }
    }
}

/// PCG-style 32-bit hash (Jarzynski & Olano, "Hash Functions for GPU Rendering"): written with
/// 32-bit integer operations only, so WGSL and CUDA compute the same bits.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The rounding noise of element `col` of row `row`, at training step `step`: uniform in
/// `[0, 1)` with 24 random bits, exactly representable in f32.
pub fn rounding_uniform(seed: u32, step: u32, row: u32, col: u32) -> f32 {
    uniform_at(row_noise_key(seed, step, row), col)
}

/// The part of [`rounding_uniform`]'s hash chain shared by a row's elements.
pub fn row_noise_key(seed: u32, step: u32, row: u32) -> u32 {
    pcg_hash(pcg_hash(pcg_hash(seed) ^ step) ^ row)
}

/// [`rounding_uniform`] from a row's key.
#[inline]
pub fn uniform_at(row_key: u32, col: u32) -> f32 {
    (pcg_hash(row_key ^ col) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Where a row's rounding noise comes from.
#[derive(Clone, Copy, Debug)]
pub struct NoiseKey {
    /// Run seed (low 32 bits).
    pub seed: u32,
    /// Training step.
    pub step: u32,
    /// Row id in its table.
    pub row: u32,
}

fn f16_next_up(h: f16) -> f16 {
    let b = h.to_bits();
    if h.is_nan() || b == 0x7C00 {
        return h;
    }
    match b {
        0x8000 | 0x0000 => f16::from_bits(0x0001),
        _ if b & 0x8000 == 0 => f16::from_bits(b + 1),
        _ => f16::from_bits(b - 1),
    }
}

fn f16_next_down(h: f16) -> f16 {
    -f16_next_up(-h)
}

/// `x` to f16 rounded toward −∞ (saturating at −65504). `max`/`min` rather than `clamp`: a NaN
/// maps to −65504 instead of propagating, exactly as the shaders do.
#[allow(clippy::manual_clamp)]
fn f16_floor(x: f32) -> f16 {
    let h = f16::from_f32(x.max(-65504.0).min(65504.0));
    if h.to_f32() > x { f16_next_down(h) } else { h }
}

/// `x` to f16 rounded toward +∞ (saturating at 65504); NaN maps to −65504, as in [`f16_floor`].
#[allow(clippy::manual_clamp)]
fn f16_ceil(x: f32) -> f16 {
    let h = f16::from_f32(x.max(-65504.0).min(65504.0));
    if h.to_f32() < x { f16_next_up(h) } else { h }
}

/// `x` to f16: nearest-even, or stochastically between its two f16 neighbours with `u`.
pub fn f16_round(x: f32, u: Option<f32>) -> f16 {
    let x = x.clamp(-65504.0, 65504.0);
    let h = f16::from_f32(x);
    let Some(u) = u else { return h };
    let back = h.to_f32();
    if back == x || x.is_nan() {
        return h;
    }
    let (lo, hi) = if back < x {
        (h, f16_next_up(h))
    } else {
        (f16_next_down(h), h)
    };
    let (l, r) = (lo.to_f32(), hi.to_f32());
    if u < (x - l) / (r - l) { hi } else { lo }
}

/// Row-wise min/max parameters `(scale, bias)` for `levels = 2^bits − 1`.
fn min_max(src: &[f32], levels: f32) -> (f32, f32) {
    if src.is_empty() {
        return (1.0, 0.0);
    }
    let (lo, hi) = extremes(src);
    let scale = if hi > lo { (hi - lo) / levels } else { 1.0 };
    (scale, lo)
}

/// The smallest and largest of `src`, NaNs ignored (as `f32::min`/`max` do). Lanes of
/// independent running extremes written as comparisons vectorize; a single `f32::min` chain
/// does not (its NaN rule makes every step wait for the last) and cost more than the rest of
/// quantization together.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn extremes(src: &[f32]) -> (f32, f32) {
    const LANES: usize = 16;
    let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    let mut chunks = src.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let fold = |l: f32, h: f32, x: f32| (if x < l { x } else { l }, if x > h { x } else { h });
    let (mut l, mut h) = (f32::INFINITY, f32::NEG_INFINITY);
    for i in 0..LANES {
        (l, h) = (fold(l, h, lo[i]).0, fold(l, h, hi[i]).1);
    }
    for &x in chunks.remainder() {
        (l, h) = fold(l, h, x);
    }
    (l, h)
}

/// The levels of a whole row, `bits` bits each, packed little-endian into `dst` (`32 / bits`
/// levels per word): `clamp(floor((x − bias) / scale + u), 0, levels)` with `u = 0.5` (nearest)
/// or the element's noise (stochastic), in loops the compiler vectorizes (the noise hash and
/// the division run in SIMD lanes).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn pack_levels<const BITS: usize>(
    src: &[f32],
    scale: f32,
    bias: f32,
    levels: u32,
    key: Option<u32>,
    dst: &mut [u32],
) {
    const CHUNK: usize = 64;
    let mut q = [0u32; CHUNK];
    let per_word = 32 / BITS;
    for (k, xs) in src.chunks(CHUNK).enumerate() {
        let first = k * CHUNK;
        let q = &mut q[..xs.len()];
        match key {
            None => {
                for (o, &x) in q.iter_mut().zip(xs) {
                    *o = ((x - bias) / scale + 0.5).floor().clamp(0.0, levels as f32) as u32;
                }
            }
            Some(key) => {
                for (c, (o, &x)) in q.iter_mut().zip(xs).enumerate() {
                    let u = uniform_at(key, (first + c) as u32);
                    *o = ((x - bias) / scale + u).floor().clamp(0.0, levels as f32) as u32;
                }
            }
        }
        for (c, &l) in q.iter().enumerate() {
            let e = first + c;
            dst[e / per_word] |= l << (BITS * (e % per_word));
        }
    }
}

/// Packs `src` (one row of `dim = src.len()` values) into `dst` (`row_words` words).
/// `noise` selects stochastic rounding (with that key); `None` rounds to nearest.
pub fn quantize_row(precision: Precision, src: &[f32], dst: &mut [u32], noise: Option<NoiseKey>) {
    let key = noise.map(|k| row_noise_key(k.seed, k.step, k.row));
    let u = |col: usize| key.map(|k| uniform_at(k, col as u32));
    dst.fill(0);
    match precision {
        Precision::Fp32 => dst.iter_mut().zip(src).for_each(|(d, x)| *d = x.to_bits()),
        Precision::Fp16 => {
            for (c, &x) in src.iter().enumerate() {
                dst[c / 2] |= (f16_round(x, u(c)).to_bits() as u32) << (16 * (c % 2));
            }
        }
        Precision::Int8 => {
            let (scale, bias) = min_max(src, 255.0);
            dst[0] = scale.to_bits();
            dst[1] = bias.to_bits();
            pack_levels::<8>(src, scale, bias, 255, key, &mut dst[2..]);
        }
        Precision::Int4 => {
            // Bias first (rounded down), then the scale that reaches the maximum from it
            // (rounded up): f16 spacing can exceed a narrow row's range.
            let (lo, hi) = match src {
                [] => (0.0, f32::NEG_INFINITY),
                _ => extremes(src),
            };
            let b16 = f16_floor(lo);
            let span = hi - b16.to_f32();
            let s16 = if span > 0.0 {
                f16_ceil(span / 15.0)
            } else {
                f16::ONE
            };
            dst[0] = s16.to_bits() as u32 | (b16.to_bits() as u32) << 16;
            let (scale, bias) = (s16.to_f32(), b16.to_f32());
            pack_levels::<4>(src, scale, bias, 15, key, &mut dst[1..]);
        }
    }
}

/// Unpacks one row (`src`, `row_words` words) into `dst` (`dim` values).
pub fn dequantize_row(precision: Precision, src: &[u32], dst: &mut [f32]) {
    match precision {
        Precision::Fp32 => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, w)| *d = f32::from_bits(*w)),
        Precision::Fp16 => {
            for (c, d) in dst.iter_mut().enumerate() {
                *d = f16::from_bits((src[c / 2] >> (16 * (c % 2))) as u16).to_f32();
            }
        }
        Precision::Int8 => {
            let (scale, bias) = (f32::from_bits(src[0]), f32::from_bits(src[1]));
            for (c, d) in dst.iter_mut().enumerate() {
                *d = ((src[2 + c / 4] >> (8 * (c % 4))) & 0xFF) as f32 * scale + bias;
            }
        }
        Precision::Int4 => {
            let scale = f16::from_bits(src[0] as u16).to_f32();
            let bias = f16::from_bits((src[0] >> 16) as u16).to_f32();
            for (c, d) in dst.iter_mut().enumerate() {
                *d = ((src[1 + c / 8] >> (4 * (c % 8))) & 0xF) as f32 * scale + bias;
            }
        }
    }
}

/// The dequantization step of a packed row (the distance between two levels), for error
/// bounds: the stored scale for INT8/INT4, the f16 spacing at the row's largest magnitude for
/// FP16, 0 for FP32.
pub fn row_step(precision: Precision, packed: &[u32], values: &[f32]) -> f32 {
    match precision {
        Precision::Fp32 => 0.0,
        Precision::Fp16 => {
            let m = values.iter().fold(0f32, |m, x| m.max(x.abs()));
            let h = f16::from_f32(m);
            f16_next_up(h).to_f32() - h.to_f32()
        }
        Precision::Int8 => f32::from_bits(packed[0]),
        Precision::Int4 => f16::from_bits(packed[0] as u16).to_f32(),
    }
}

#[cfg(test)]
#[path = "precision_tests.rs"]
mod tests;
