//! Host side of the dense kernels: `gemm` through cuBLAS, and `kernels/{bias_act,interaction}_*`,
//! `bce_loss.cu` and `dense_update.cu`, one thread per element with their arguments in the order
//! of each kernel's C signature.

use super::launch::{Word::*, Work};
use super::memory::lock;
use super::{CudaBuffer, CudaDevice};
use crate::device::{
    BackendKind, BceLoss, BiasActBackward, BiasActForward, DenseUpdate, DeviceError, Gemm,
    InteractionBackward, InteractionForward, KernelId,
};
use cudarc::cublas::sys::cublasOperation_t;

/// `gemm` through cuBLAS, the one kernel with no `.cu` file. cuBLAS is column-major; a row-major
/// `m × n` matrix is the column-major `n × m` transpose, so `C = op(A)·op(B)` (row-major) is
/// computed as `Cᵀ = op(B)ᵀ·op(A)ᵀ` (column-major): the operands swap places and keep their
/// transpose flags. The default math mode keeps full FP32 (no TF32), so results match the CPU
/// within float-summation tolerance.
pub(super) fn gemm(dev: &CudaDevice, a: &Gemm<'_, CudaBuffer>) -> Result<(), DeviceError> {
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
    dev.bind()?;
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

pub(super) fn bias_act_forward(
    dev: &CudaDevice,
    a: &BiasActForward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let words = a.shape.words().map(U32);
    let work = Work::Threads(a.shape.elems());
    dev.launch(KernelId::BiasActForward, work, &[a.x, a.bias], &words)
}

pub(super) fn bias_act_backward(
    dev: &CudaDevice,
    a: &BiasActBackward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let words = a.shape.words().map(U32);
    let work = Work::Threads(a.shape.cols as u64);
    dev.launch(
        KernelId::BiasActBackward,
        work,
        &[a.y, a.dy, a.dbias],
        &words,
    )
}

pub(super) fn interaction_forward(
    dev: &CudaDevice,
    a: &InteractionForward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let work = Work::Threads(a.shape.out_len());
    let bufs = [a.dense, a.emb, a.out];
    let words = a.shape.words().map(U32);
    dev.launch(KernelId::InteractionForward, work, &bufs, &words)
}

pub(super) fn interaction_backward(
    dev: &CudaDevice,
    a: &InteractionBackward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    // One thread per gradient element, of `ddense` and `demb` together.
    let work = Work::Threads(a.shape.dense_len() + a.shape.emb_len());
    let bufs = [a.dense, a.emb, a.dout, a.ddense, a.demb];
    let words = a.shape.words().map(U32);
    dev.launch(KernelId::InteractionBackward, work, &bufs, &words)
}

pub(super) fn bce_loss(dev: &CudaDevice, a: &BceLoss<'_, CudaBuffer>) -> Result<(), DeviceError> {
    let bufs = [a.logits, a.labels, a.loss, a.dlogits];
    let work = Work::Threads(a.batch as u64);
    dev.launch(
        KernelId::BceLoss,
        work,
        &bufs,
        &[U32(a.batch), F32(a.scale)],
    )
}

pub(super) fn dense_update(
    dev: &CudaDevice,
    a: &DenseUpdate<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    // `validate` rejected Adagrad without state; SGD passes a stand-in it never touches.
    let (adagrad, eps, state) = a.rule_or(&dev.dummy[0]);
    let words = [U32(a.len), F32(a.lr), U32(adagrad), F32(eps)];
    let work = Work::Threads(a.len as u64);
    dev.launch(
        KernelId::DenseUpdate,
        work,
        &[a.param, a.grad, state],
        &words,
    )
}
