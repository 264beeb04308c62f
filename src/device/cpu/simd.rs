//! Small building blocks for the CPU kernels' inner loops: fixed-width row accumulators that the
//! compiler keeps in vector registers (the prefetch hint is `hostmem::prefetch`).
//!
//! The helpers are `#[inline(always)]` so that, inlined into a `#[multiversion]` kernel, they are
//! compiled with that kernel's target features (AVX2, AVX-512) and still run anywhere through
//! the kernel's runtime dispatch. Kernels list the same targets, best first:
//! `"x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"`, with the generic build as fallback.
/// `Σ_i scale_i · table[rows_i][col .. col + W]` for `W` columns starting at `col`, accumulated
/// in registers. `scale(i)` is the weight of the `i`-th row.
#[inline(always)]
pub fn sum_rows_block<const W: usize>(
    table: &[f32],
    dim: usize,
    col: usize,
    rows: impl Iterator<Item = (usize, f32)>,
) -> [f32; W] {
    let mut acc = [0f32; W];
    for (r, scale) in rows {
        let src = &table[r * dim + col..][..W];
        for k in 0..W {
            acc[k] += scale * src[k];
        }
    }
    acc
}

/// `Σ table[rows_i][col .. col + W]` (unweighted), accumulated in registers.
#[inline(always)]
pub fn add_rows_block<const W: usize>(
    table: &[f32],
    dim: usize,
    col: usize,
    rows: impl Iterator<Item = usize>,
) -> [f32; W] {
    let mut acc = [0f32; W];
    for r in rows {
        let src = &table[r * dim + col..][..W];
        for k in 0..W {
            acc[k] += src[k];
        }
    }
    acc
}

/// Applies `f(col, width)` to consecutive column blocks of `dim`: widths 64, 32, 16, 8, then 1s.
/// The callee picks the matching const-generic block function.
#[inline(always)]
pub fn for_each_block(dim: usize, mut f: impl FnMut(usize, usize)) {
    let mut col = 0;
    for width in [64, 32, 16, 8] {
        while dim - col >= width {
            f(col, width);
            col += width;
        }
    }
    while col < dim {
        f(col, 1);
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
