//! Small building blocks for the CPU kernels' inner loops: fixed-width row accumulators that the
//! compiler keeps in vector registers (the prefetch hint is `hostmem::prefetch`).
//!
//! The helpers are `#[inline(always)]` so that, inlined into a `#[multiversion]` kernel, they are
//! compiled with that kernel's target features (AVX2, AVX-512) and still run anywhere through
//! the kernel's runtime dispatch. Kernels list the same targets, best first:
//! `"x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"`, with the generic build as fallback.

/// A sum of table rows that can be computed a block of `W` columns at a time, the block kept in
/// vector registers. [`write_blocks`] writes any such sum, whatever its weighting.
pub trait BlockSum {
    /// Columns `col .. col + W` of the sum.
    fn block<const W: usize>(&self, col: usize) -> [f32; W];
}

/// `Σ table[r][offset + c]` over the rows `r` that `rows()` yields, in that order.
pub struct AddRows<'a, R> {
    /// Row-major values, `width` per row.
    pub table: &'a [f32],
    /// Values per row of `table`.
    pub width: usize,
    /// First column summed.
    pub offset: usize,
    /// The rows, as a fresh iterator per block.
    pub rows: R,
}

impl<R: Fn() -> I, I: Iterator<Item = usize>> BlockSum for AddRows<'_, R> {
    #[inline(always)]
    fn block<const W: usize>(&self, col: usize) -> [f32; W] {
        let mut acc = [0f32; W];
        for r in (self.rows)() {
            let src = &self.table[r * self.width + self.offset + col..][..W];
            for k in 0..W {
                acc[k] += src[k];
            }
        }
        acc
    }
}

/// `Σ scale · table[r][offset + c]` over the `(r, scale)` pairs that `rows()` yields, in order.
pub struct SumRows<'a, R> {
    /// Row-major values, `width` per row.
    pub table: &'a [f32],
    /// Values per row of `table`.
    pub width: usize,
    /// First column summed.
    pub offset: usize,
    /// The rows and their weights, as a fresh iterator per block.
    pub rows: R,
}

impl<R: Fn() -> I, I: Iterator<Item = (usize, f32)>> BlockSum for SumRows<'_, R> {
    #[inline(always)]
    fn block<const W: usize>(&self, col: usize) -> [f32; W] {
        let mut acc = [0f32; W];
        for (r, scale) in (self.rows)() {
            let src = &self.table[r * self.width + self.offset + col..][..W];
            for k in 0..W {
                acc[k] += scale * src[k];
            }
        }
        acc
    }
}

/// Writes `sum` into `out` (`out.len()` columns) block by block: widths 64, 32, 16, 8, then
/// single columns, each block summed over all rows before the next.
#[inline(always)]
pub fn write_blocks(out: &mut [f32], sum: &impl BlockSum) {
    let dim = out.len();
    let mut col = 0;
    for width in [64, 32, 16, 8] {
        while dim - col >= width {
            match width {
                64 => out[col..col + 64].copy_from_slice(&sum.block::<64>(col)),
                32 => out[col..col + 32].copy_from_slice(&sum.block::<32>(col)),
                16 => out[col..col + 16].copy_from_slice(&sum.block::<16>(col)),
                _ => out[col..col + 8].copy_from_slice(&sum.block::<8>(col)),
            }
            col += width;
        }
    }
    while col < dim {
        out[col] = sum.block::<1>(col)[0];
        col += 1;
    }
}

/// Dot product with eight partial sums (so it vectorises), combined in a fixed order: the same
/// result on every run and thread count.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n8 = n / 8 * 8;
    let mut acc = [0f32; 8];
    for (x, y) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for k in n8..n {
        s += a[k] * b[k];
    }
    s
}
