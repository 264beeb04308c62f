//! `gemm` on the CPU: `matrixmultiply`'s packed SIMD kernels, split over rows of `C` with rayon.
//!
//! Splitting only over rows of `C` keeps every element's k-summation exactly as in a single call,
//! so results are bit-identical whatever the thread count.
#![allow(unsafe_code)] // FFI-like boundary: matrixmultiply takes raw pointers and strides.

use crate::device::DeviceError;
use rayon::prelude::*;

/// Below this many multiply-adds a single call beats the cost of splitting.
const PARALLEL_MACS: usize = 1 << 16;

/// `c = alpha * op(a) * op(b) + beta * c`, row-major; `op(a)` is `m × k`, `op(b)` is `k × n`,
/// `c` is exactly `m × n`. `a` is stored `k × m` when `trans_a`, `b` is stored `n × k` when
/// `trans_b`. With `beta == 0` the previous contents of `c` are ignored (even NaN).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
) -> Result<(), DeviceError> {
    if a.len() < m * k || b.len() < k * n || c.len() != m * n {
        return Err(DeviceError::InvalidArgument {
            kernel: "gemm",
            message: format!(
                "m={m} n={n} k={k} need a ≥ {}, b ≥ {}, c = {} elements; got {}, {}, {}",
                m * k,
                k * n,
                m * n,
                a.len(),
                b.len(),
                c.len()
            ),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // matrixmultiply handles k = 0, but be explicit: C = beta * C.
        for x in c.iter_mut() {
            *x = if beta == 0.0 { 0.0 } else { beta * *x };
        }
        return Ok(());
    }
    let (rsa, csa) = if trans_a {
        (1isize, m as isize)
    } else {
        (k as isize, 1isize)
    };
    let (rsb, csb) = if trans_b {
        (1isize, k as isize)
    } else {
        (n as isize, 1isize)
    };
    // Element (i, 0) of op(A) for the first row of a block starting at row i.
    let a_row = |i: usize| if trans_a { i } else { i * k };
    let call = |i0: usize, rows: usize, c_block: &mut [f32]| {
        debug_assert_eq!(c_block.len(), rows * n);
        // SAFETY: op(A) rows i0..i0+rows address a[a_row(i0) + r*rsa + l*csa] for r < rows,
        // l < k, all below m*k <= a.len() (checked above); op(B) addresses b[l*rsb + j*csb] below
        // k*n <= b.len(); C addresses c_block[r*n + j] below rows*n == c_block.len(). Strides of
        // C are (n, 1), so no two elements of C alias. The slices outlive the call.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                alpha,
                a.as_ptr().add(a_row(i0)),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                beta,
                c_block.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    };
    let threads = rayon::current_num_threads();
    if m * n * k < PARALLEL_MACS || threads == 1 || m < 16 {
        call(0, m, c);
        return Ok(());
    }
    // Blocks of whole rows, a multiple of 8 (the microkernel's height), about 4 per thread.
    let rows_per_block = m.div_ceil(4 * threads).next_multiple_of(8);
    c.par_chunks_mut(rows_per_block * n)
        .enumerate()
        .for_each(|(blk, c_block)| {
            let i0 = blk * rows_per_block;
            call(i0, c_block.len() / n, c_block);
        });
    Ok(())
}
