//! `gemm` through cuBLAS, the one kernel with no `.cu` file.
//!
//! cuBLAS is column-major; a row-major `m × n` matrix is the column-major `n × m` transpose, so
//! `C = op(A)·op(B)` (row-major) is computed as `Cᵀ = op(B)ᵀ·op(A)ᵀ` (column-major): the operands
//! swap places and keep their transpose flags. The default math mode keeps full FP32 (no TF32),
//! so results match the CPU within float-summation tolerance.

use super::memory::driver;
use super::{CudaBuffer, CudaDevice, lock};
use crate::device::{BackendKind, DeviceError, Gemm};
use cudarc::cublas::sys::cublasOperation_t;

pub(super) fn gemm(dev: &CudaDevice, a: &Gemm<'_, CudaBuffer>) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    if a.m == 0 || a.n == 0 {
        return Ok(());
    }
    let (m, n, k) = (a.m as i32, a.n as i32, a.k as i32);
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    // Leading dimensions of the row-major storage: the stored row length (at least 1, as BLAS
    // requires even when k = 0, where the product is empty and C = beta·C).
    let lda = if a.trans_a { m } else { k }.max(1);
    let ldb = if a.trans_b { k } else { n }.max(1);
    dev.ctx
        .bind_to_thread()
        .map_err(driver("binding the CUDA context"))?;
    dev.before_compute(&[a.a, a.b, a.c])?;
    let blas = lock(&dev.blas);
    // SAFETY: the shapes were validated against the buffers' sizes, the pointers are live
    // device allocations, and the handle's stream is the compute stream the events order.
    unsafe {
        cudarc::cublas::result::sgemm(
            *blas.handle(),
            op(a.trans_b),
            op(a.trans_a),
            n,
            m,
            k,
            &a.alpha,
            a.b.at(0) as *const f32,
            ldb,
            a.a.at(0) as *const f32,
            lda,
            &a.beta,
            a.c.at(0) as *mut f32,
            n,
        )
    }
    .map_err(|e| DeviceError::Backend {
        backend: BackendKind::Cuda,
        message: format!("cuBLAS sgemm ({m}×{n}×{k}): {e:?}"),
    })?;
    drop(blas);
    dev.after_compute(&[a.a, a.b, a.c])
}
