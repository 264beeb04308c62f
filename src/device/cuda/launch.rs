//! Launching `kernels/*.cu`: each kernel's C signature ([`signature`], which a test compares
//! against the PTX NVRTC produces, so a mismatch is caught without a GPU) and the one launch path
//! every kernel goes through. Every kernel takes its buffers first, then its scalars, so a
//! launcher passes the two lists, each in the signature's order.

use super::compile::{ParamKind, compile_kernel};
use super::memory::lock;
use super::{CudaBuffer, CudaDevice};
use crate::device::{BackendKind, DeviceError, KernelId};
use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};

/// One scalar argument of a kernel launch.
#[derive(Clone, Copy, Debug)]
pub(super) enum Word {
    /// A 32-bit unsigned scalar.
    U32(u32),
    /// A 32-bit float scalar.
    F32(f32),
}

/// How a launch covers its work.
#[derive(Clone, Copy, Debug)]
pub(super) enum Work {
    /// One thread per item.
    Threads(u64),
    /// One warp per item: a bag, a packed row or a unique row.
    Warps(u64),
}

/// Threads per block of every kernel.
const BLOCK: u32 = 256;
/// Warps per block, for the kernels that give each bag, row or unique row one warp.
const WARPS: u64 = (BLOCK / 32) as u64;

use ParamKind::{F32, Ptr, U32};

/// The parameters of `kernel`'s entry point, in order: what `CudaDevice::launch` checks every
/// launch against and the NVRTC test checks every compiled kernel against.
pub fn signature(kernel: KernelId) -> &'static [ParamKind] {
    match kernel {
        KernelId::BagForward => &[Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, U32, U32],
        KernelId::BagBackwardSgd => &[
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, F32, F32, U32, U32, U32,
        ],
        KernelId::BagBackwardAdagrad => &[
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, F32, F32, U32, U32, U32,
        ],
        KernelId::DequantizeRows => &[Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, U32],
        KernelId::QuantizeRows => &[
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, U32, U32, U32, U32,
        ],
        KernelId::BiasActForward => &[Ptr, Ptr, U32, U32, U32],
        KernelId::BiasActBackward => &[Ptr, Ptr, Ptr, U32, U32, U32],
        KernelId::InteractionForward => &[Ptr, Ptr, Ptr, U32, U32, U32, U32],
        KernelId::InteractionBackward => &[Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32],
        KernelId::BceLoss => &[Ptr, Ptr, Ptr, Ptr, U32, F32],
        KernelId::DenseUpdate => &[Ptr, Ptr, Ptr, U32, F32, U32, F32],
        KernelId::HashEncode => &[Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, F32],
        // cuBLAS: no entry point of ours.
        KernelId::Gemm => &[],
    }
}

/// Checks `bufs` then `words` against the kernel's signature (a launcher bug, reported rather
/// than run).
fn check_signature(
    kernel: KernelId,
    bufs: &[&CudaBuffer],
    words: &[Word],
) -> Result<(), DeviceError> {
    let kinds: Vec<ParamKind> = (bufs.iter().map(|_| Ptr))
        .chain(words.iter().map(|w| match w {
            Word::U32(_) => U32,
            Word::F32(_) => F32,
        }))
        .collect();
    if kinds != signature(kernel) {
        return Err(DeviceError::InvalidArgument {
            kernel: kernel.name(),
            message: format!(
                "the launcher passes {kinds:?}, the kernel takes {:?}",
                signature(kernel)
            ),
        });
    }
    Ok(())
}

impl CudaDevice {
    /// The compiled function of `kernel`, compiling its module on first use.
    fn function(&self, kernel: KernelId) -> Result<CudaFunction, DeviceError> {
        let i = kernel as usize;
        let mut functions = lock(&self.functions);
        if let Some(f) = &functions[i] {
            return Ok(f.clone());
        }
        let ptx = compile_kernel(kernel, self.arch)?;
        let module = self
            .ctx
            .load_module(ptx)
            .map_err(|e| DeviceError::ShaderCompile {
                shader: kernel.cuda_file(),
                message: format!("the driver rejected the PTX for {}: {e}", self.arch),
            })?;
        let f = module
            .load_function(kernel.name())
            .map_err(|e| DeviceError::ShaderCompile {
                shader: kernel.cuda_file(),
                message: format!("no entry point `{}`: {e}", kernel.name()),
            })?;
        functions[i] = Some(f.clone());
        Ok(f)
    }

    /// Compiles every kernel now instead of at first use (fails on the first that does not
    /// compile).
    pub fn compile_all(&self) -> Result<(), DeviceError> {
        for k in KernelId::CUDA {
            self.function(k)?;
        }
        Ok(())
    }

    /// Queues `kernel` over `work` on the compute stream, in blocks of [`BLOCK`] threads, with
    /// the arguments `bufs` (passed as their device addresses) then `words`.
    pub(super) fn launch(
        &self,
        kernel: KernelId,
        work: Work,
        bufs: &[&CudaBuffer],
        words: &[Word],
    ) -> Result<(), DeviceError> {
        check_signature(kernel, bufs, words)?;
        let blocks = match work {
            Work::Threads(n) => n.div_ceil(BLOCK as u64),
            Work::Warps(n) => n.div_ceil(WARPS),
        };
        if blocks == 0 {
            return Ok(());
        }
        let f = self.function(kernel)?;
        self.bind()?;
        self.before_compute(bufs)?;
        // Kernels loop over their work with a grid stride, so the grid may be capped.
        let grid = blocks.min(1 << 20) as u32;
        let mut builder = self.compute.launch_builder(&f);
        for b in bufs {
            // The kernel takes the buffer's device address (a 64-bit value).
            builder.arg(&b.ptr);
        }
        for w in words {
            match w {
                Word::U32(v) => builder.arg(v),
                Word::F32(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's C signature (documented in each .cu file and
        // mirrored by `signature`, checked above), and the shapes were validated against the
        // buffers' sizes before this call, so the kernel stays inside its buffers.
        unsafe { builder.launch(cfg) }.map_err(|e| DeviceError::Backend {
            backend: BackendKind::Cuda,
            message: format!("launching {}: {e}", kernel.name()),
        })?;
        self.after_compute(bufs)
    }
}
