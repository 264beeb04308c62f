//! The one place where backends meet the training core.
//!
//! A [`Device`] owns opaque buffers and runs kernels on them. The host sees data only through
//! explicit [`Device::upload`] and [`Device::download`]; kernel launches are asynchronous and
//! ordered (a GPU backend enqueues them and returns), and [`Device::synchronize`] waits for all of
//! them. A backend never reads buffers back to the host inside a kernel method.
//!
//! Every kernel has one name ([`KernelId`]) used three times: `shaders/NAME.wgsl`,
//! `kernels/NAME.cu` and the CPU function `NAME` in [`cpu`], so a reader finds all
//! implementations of an op at once. Kernel arguments are buffers plus shapes ([`kernels`]),
//! never host slices. Each backend keeps the same file per area (`embedding.rs`, `dense.rs`,
//! `quantize.rs`), and its `impl Device` forwards to them through one macro
//! (`forward_kernels!`), which validates every launch first.
//!
//! Backends: [`cpu`] (the reference and oracle for parity tests), [`wgpu`] (WGSL compute
//! shaders on Vulkan, Metal, DX12 or GL) and [`cuda`] (NVRTC-compiled `kernels/*.cu` and cuBLAS
//! through cudarc) are always built: CUDA's libraries are loaded at run time, so a machine without
//! them gets [`DeviceError::Unavailable`] from it, never a link error, and callers need no
//! `#[cfg]`.

pub mod cpu;
pub mod cuda;
pub mod kernels;
mod on_device;
pub mod profile;

/// The `Device::alloc` contract every backend checks first: buffers hold 4-byte words.
pub fn check_alloc(bytes: u64) -> Result<(), DeviceError> {
    if bytes % 4 != 0 {
        return Err(DeviceError::InvalidArgument {
            kernel: "alloc",
            message: format!("{bytes} bytes is not a multiple of 4"),
        });
    }
    Ok(())
}

/// The `Device::finish_read` contract every backend checks first: a copy was started, and
/// `dst` is as long as it (`started` is its length, `None` when there is none).
pub fn check_finish_read(started: Option<u64>, dst: usize) -> Result<u64, DeviceError> {
    let invalid = |message: String| DeviceError::InvalidArgument {
        kernel: "finish_read",
        message,
    };
    match started {
        None => Err(invalid(
            "no read_async was started into this readback".into(),
        )),
        Some(len) if len != dst as u64 => Err(invalid(format!(
            "the copy holds {len} bytes; the destination has {dst}"
        ))),
        Some(len) => Ok(len),
    }
}

/// The `Device::read_async` contract: the copy fits its readback (`capacity` bytes).
pub fn check_read_fits(len: u64, capacity: u64) -> Result<(), DeviceError> {
    if len > capacity {
        return Err(DeviceError::InvalidArgument {
            kernel: "read_async",
            message: format!("{len} bytes do not fit a readback of {capacity} bytes"),
        });
    }
    Ok(())
}
mod select;
pub mod vec;
pub mod wgpu;

pub use kernels::{
    Activation, BagBackward, BagForward, BagShape, BceLoss, BiasActBackward, BiasActForward,
    BiasActShape, DenseUpdate, DequantizeRows, Gemm, HashEncode, HashShape, HashTransform,
    InteractionBackward, InteractionForward, InteractionShape, KernelId, Optimizer, OptimizerRule,
    Pooling, QuantizeRows, RowGradMap, RowMove, StateRows, Strided, sigmoid,
};
pub use select::{
    BackendChoice, BackendKind, BackendReport, Selection, probe_backends, select_backend,
};
pub use vec::DeviceVec;

use std::ops::Range;

/// Short alias for a device's buffer type, to keep signatures readable.
pub type Buf<D> = <D as Device>::Buffer;

/// What a device is: shown by `rowflow info`, recorded in summaries.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceInfo {
    /// Which backend runs it.
    pub backend: BackendKind,
    /// Human-readable device name (CPU model, adapter name, GPU name).
    pub name: String,
    /// Worker threads (CPU) or compute units where known.
    pub parallelism: usize,
    /// The largest single buffer this device can allocate, in bytes.
    pub max_buffer_bytes: u64,
}

/// Everything that can go wrong on a device. Messages say what, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The backend exists in this build but no usable device was found.
    #[error("backend `{backend}` is unavailable: {reason}")]
    Unavailable {
        /// The backend that was asked for.
        backend: BackendKind,
        /// Why it cannot be used, and what to do about it.
        reason: String,
    },
    /// The backend was not compiled into this build.
    #[error(
        "backend `{0}` is not part of this build of rowflow; use `--backend cpu` or `--backend auto`"
    )]
    NotCompiled(BackendKind),
    /// An allocation larger than the device allows, or that failed.
    #[error("cannot allocate {requested} bytes on {device}: {reason}")]
    OutOfMemory {
        /// Bytes requested.
        requested: u64,
        /// The device's name.
        device: String,
        /// Why (limit exceeded, allocator failure).
        reason: String,
    },
    /// An upload or download outside a buffer.
    #[error("{op}: bytes {offset}..{end} are outside the {len}-byte buffer")]
    OutOfBounds {
        /// `upload` or `download`.
        op: &'static str,
        /// First byte touched.
        offset: u64,
        /// One past the last byte touched.
        end: u64,
        /// The buffer's size in bytes.
        len: u64,
    },
    /// A kernel was given shapes or buffers that do not fit together.
    #[error("kernel `{kernel}`: {message}")]
    InvalidArgument {
        /// The kernel's name (as in `shaders/NAME.wgsl`).
        kernel: &'static str,
        /// What does not fit.
        message: String,
    },
    /// A shader or kernel source that does not compile; the message is the compiler's.
    #[error("{shader} does not compile: {message}")]
    ShaderCompile {
        /// The source file (`shaders/NAME.wgsl`, `kernels/NAME.cu`).
        shader: String,
        /// The compiler's diagnostic.
        message: String,
    },
    /// A failure reported by the backend's driver or runtime while running work.
    #[error("{backend} backend error: {message}")]
    Backend {
        /// The backend.
        backend: BackendKind,
        /// The driver's message.
        message: String,
    },
    /// An embedding index past the end of its table.
    #[error(
        "kernel `{kernel}`: index {index} at position {position} is past the table's {rows} rows; \
         check the data's table sizes (`--table-rows`)"
    )]
    IndexOutOfRange {
        /// The kernel's name.
        kernel: &'static str,
        /// The offending index.
        index: u32,
        /// Its position in the index buffer.
        position: usize,
        /// Rows in the table.
        rows: u32,
    },
}

/// A compute device: memory, transfers and the kernels DLRM training needs.
///
/// Kernel methods enqueue work and return; results are visible to later kernels on the same
/// device (launches are ordered) and to the host after [`Device::download`], which waits for the
/// work before it. Buffers are not `Clone`: device memory has one owner.
pub trait Device: Send + Sync + 'static {
    /// An opaque handle to device memory.
    type Buffer: Send + Sync;

    /// Name, backend and limits.
    fn info(&self) -> &DeviceInfo;

    // ---- memory ----------------------------------------------------------------------------

    /// Allocates `bytes` (a multiple of 4) of zeroed device memory.
    fn alloc(&self, bytes: u64) -> Result<Self::Buffer, DeviceError>;
    /// Allocates zeroed memory for `rows` rows of `row_bytes` bytes each (a multiple of 4). Same
    /// as `alloc(rows * row_bytes)`, except that a backend which must split large buffers keeps
    /// every row whole inside one piece, so kernels can address rows across pieces.
    fn alloc_rows(&self, rows: u64, row_bytes: u64) -> Result<Self::Buffer, DeviceError> {
        self.alloc(rows * row_bytes)
    }
    /// The size of a buffer in bytes.
    fn buffer_bytes(&self, buffer: &Self::Buffer) -> u64;
    /// Copies `src` into `dst` starting at byte `offset` (ordered after earlier launches).
    fn upload(&self, dst: &Self::Buffer, offset: u64, src: &[u8]) -> Result<(), DeviceError>;
    /// Copies bytes starting at `offset` of `src` into `dst`, after all earlier launches finish.
    fn download(&self, src: &Self::Buffer, offset: u64, dst: &mut [u8]) -> Result<(), DeviceError>;
    /// Copies `bytes` (a multiple of 4) from `src` at `src_offset` to `dst` at `dst_offset`,
    /// on the device, ordered with kernels. `src` and `dst` must be different buffers.
    fn copy_buffer(
        &self,
        src: &Self::Buffer,
        src_offset: u64,
        dst: &Self::Buffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), DeviceError>;
    /// Waits until every launched kernel and transfer has finished.
    fn synchronize(&self) -> Result<(), DeviceError>;

    // ---- reading back without waiting ---------------------------------------------------------

    /// Host memory a [`Device::read_async`] lands in: one per result in flight.
    type Readback: Send;
    /// Host memory for reading back up to `bytes` bytes.
    fn alloc_readback(&self, bytes: u64) -> Result<Self::Readback, DeviceError>;
    /// Starts copying `len` bytes at `offset` of `src` into `into`, after every earlier launch,
    /// and returns without waiting, so the host records later work while the device runs. Later
    /// launches may overwrite `src`: the copy reads what the earlier ones left. A copy still in
    /// flight in `into` is waited for first.
    fn read_async(
        &self,
        src: &Self::Buffer,
        offset: u64,
        len: u64,
        into: &mut Self::Readback,
    ) -> Result<(), DeviceError>;
    /// Whether the copy into `rb` has landed (true when none was started); never waits.
    fn readback_ready(&self, rb: &Self::Readback) -> Result<bool, DeviceError>;
    /// Waits for the copy into `rb` — only for it and the work before it — and moves its bytes
    /// into `dst`, which must be as long as the copy.
    fn finish_read(&self, rb: &mut Self::Readback, dst: &mut [u8]) -> Result<(), DeviceError>;
    /// Starts timing each kernel launch, where launches finish as they return (the CPU
    /// backend; a GPU's would need timestamps): `false` where this backend cannot.
    fn start_kernel_profile(&self) -> bool {
        false
    }
    /// Per kernel, launches and seconds since [`Device::start_kernel_profile`], the most time
    /// first; `None` when not timing.
    fn kernel_profile(&self) -> Option<Vec<profile::KernelTime>> {
        None
    }
    /// Seconds to move `bytes` from page-locked host memory into `dst` with nothing else in the
    /// way: the host→device ceiling that [`Device::upload`] is measured against (`rowflow bench
    /// kernels`). `None` where host and device share memory and there is no such link.
    fn time_pinned_upload(
        &self,
        dst: &Self::Buffer,
        bytes: u64,
    ) -> Result<Option<f64>, DeviceError> {
        let _ = (dst, bytes);
        Ok(None)
    }

    // ---- embedding ---------------------------------------------------------------------------

    /// Pooled lookup of table rows per bag into a strided output. An index past the table is an
    /// error where the backend can check it synchronously (CPU) and is skipped — it adds
    /// nothing and nothing outside the table is read — on GPUs; the embedding layer checks
    /// indices on the host before staging them, so training never relies on either.
    fn bag_forward(&self, args: &BagForward<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// Fused embedding backward + SGD: each unique row's summed gradient is applied once.
    fn bag_backward_sgd(&self, args: &BagBackward<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// Fused embedding backward + row-wise Adagrad (one accumulator per row).
    fn bag_backward_adagrad(
        &self,
        args: &BagBackward<'_, Self::Buffer>,
        state: &Self::Buffer,
        eps: f32,
    ) -> Result<(), DeviceError>;

    /// Expands packed rows staged from the host store into FP32 cache slots (and their state).
    fn dequantize_rows(&self, args: &DequantizeRows<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// Packs FP32 cache slots for the host store, with nearest or stochastic rounding.
    fn quantize_rows(&self, args: &QuantizeRows<'_, Self::Buffer>) -> Result<(), DeviceError>;

    // ---- dense -------------------------------------------------------------------------------

    /// `C = alpha * op(A) * op(B) + beta * C`, row-major.
    fn gemm(&self, args: &Gemm<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// In place: `x = act(x + bias)` per row.
    fn bias_act_forward(&self, args: &BiasActForward<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// In place: `dy = dy * act'(y)`; `dbias = sum over rows of dy`.
    fn bias_act_backward(
        &self,
        args: &BiasActBackward<'_, Self::Buffer>,
    ) -> Result<(), DeviceError>;
    /// DLRM dot interaction: dense vector and pooled embeddings → `[dense, pairwise dots]`.
    fn interaction_forward(
        &self,
        args: &InteractionForward<'_, Self::Buffer>,
    ) -> Result<(), DeviceError>;
    /// Gradient of [`Device::interaction_forward`] with respect to both inputs.
    fn interaction_backward(
        &self,
        args: &InteractionBackward<'_, Self::Buffer>,
    ) -> Result<(), DeviceError>;
    /// Sigmoid + binary cross-entropy: per-sample loss and the gradient of `scale * sum(loss)`.
    fn bce_loss(&self, args: &BceLoss<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// SGD or Adagrad step on a dense parameter tensor.
    fn dense_update(&self, args: &DenseUpdate<'_, Self::Buffer>) -> Result<(), DeviceError>;
    /// A DHE's first layer: each id's `k` hashes, transformed to real numbers.
    fn hash_encode(&self, args: &HashEncode<'_, Self::Buffer>) -> Result<(), DeviceError>;
}

/// Writes the kernel methods of a backend's `impl Device` once for all backends. Each checks its
/// arguments against the buffers' sizes (`validate`, before any memory is touched, so every
/// backend rejects the same bad launches with the same message), then forwards to the function
/// of the same name in the backend's module for that area, called with the device and the
/// arguments. Both fused backwards go to that module's one `bag_backward(device, args,
/// adagrad)`, where `adagrad` is Adagrad's `(state, eps)` and `None` means SGD.
macro_rules! forward_kernels {
    (embedding: $e:path, dense: $d:path, quantize: $q:path, hash: $h:path $(,)?) => {
        $crate::device::forward_kernels!(embedding: $e, dense: $d, quantize: $q, hash: $h,
            run: $crate::device::run_inline);
    };
    (embedding: $e:path, dense: $d:path, quantize: $q:path, hash: $h:path,
        run: $run:path $(,)?) => {
        $crate::device::forward_kernels!(@each $e, $run; bag_forward: BagForward);
        $crate::device::forward_kernels!(@each $h, $run; hash_encode: HashEncode);
        $crate::device::forward_kernels!(@each $q, $run;
            dequantize_rows: DequantizeRows, quantize_rows: QuantizeRows);
        $crate::device::forward_kernels!(@each $d, $run;
            gemm: Gemm, bias_act_forward: BiasActForward, bias_act_backward: BiasActBackward,
            interaction_forward: InteractionForward, interaction_backward: InteractionBackward,
            bce_loss: BceLoss, dense_update: DenseUpdate);

        fn bag_backward_sgd(
            &self,
            args: &$crate::device::BagBackward<'_, Self::Buffer>,
        ) -> Result<(), $crate::device::DeviceError> {
            let kernel = $crate::device::KernelId::BagBackwardSgd.name();
            args.validate(kernel, None, |b| self.buffer_bytes(b))?;
            use $e as area;
            $run(self, kernel, || area::bag_backward(self, args, None))
        }

        fn bag_backward_adagrad(
            &self,
            args: &$crate::device::BagBackward<'_, Self::Buffer>,
            state: &Self::Buffer,
            eps: f32,
        ) -> Result<(), $crate::device::DeviceError> {
            let kernel = $crate::device::KernelId::BagBackwardAdagrad.name();
            args.validate(kernel, Some(state), |b| self.buffer_bytes(b))?;
            use $e as area;
            $run(self, kernel, || area::bag_backward(self, args, Some((state, eps))))
        }
    };
    (@each $area:path, $run:path; $($name:ident: $args:ident),* $(,)?) => {$(
        fn $name(
            &self,
            args: &$crate::device::$args<'_, Self::Buffer>,
        ) -> Result<(), $crate::device::DeviceError> {
            args.validate(|b| self.buffer_bytes(b))?;
            use $area as area;
            $run(self, stringify!($name), || area::$name(self, args))
        }
    )*};
}
pub(crate) use forward_kernels;

/// How [`forward_kernels!`] runs a kernel's launch on a backend that needs nothing around it:
/// directly, on the calling thread.
#[inline(always)]
pub(crate) fn run_inline<D, R>(_: &D, _kernel: &'static str, launch: impl FnOnce() -> R) -> R {
    launch()
}

/// Typed helpers over [`Device`]'s byte transfers.
pub trait DeviceExt: Device {
    /// Allocates a buffer for `len` 32-bit elements (at least one element, so no handle is empty).
    fn alloc_elems(&self, len: usize) -> Result<Self::Buffer, DeviceError> {
        self.alloc(4 * len.max(1) as u64)
    }
    /// Uploads 32-bit elements (`f32` or `u32`) at element offset `offset`.
    fn upload_elems<T: Elem>(
        &self,
        dst: &Self::Buffer,
        offset: usize,
        src: &[T],
    ) -> Result<(), DeviceError> {
        self.upload(dst, 4 * offset as u64, bytemuck::cast_slice(src))
    }
    /// Downloads `dst.len()` `f32`s from element offset `offset`.
    fn download_f32(
        &self,
        src: &Self::Buffer,
        offset: usize,
        dst: &mut [f32],
    ) -> Result<(), DeviceError> {
        self.download(src, 4 * offset as u64, bytemuck::cast_slice_mut(dst))
    }
    /// Downloads the `f32`s at element positions `range` into a new vector.
    fn read_f32(&self, src: &Self::Buffer, range: Range<usize>) -> Result<Vec<f32>, DeviceError> {
        let mut out = vec![0f32; range.len()];
        self.download_f32(src, range.start, &mut out)?;
        Ok(out)
    }
    /// Allocates a buffer holding `data`.
    fn buffer_from_f32(&self, data: &[f32]) -> Result<Self::Buffer, DeviceError> {
        self.buffer_from(data)
    }
    /// Allocates a buffer holding `data`.
    fn buffer_from_u32(&self, data: &[u32]) -> Result<Self::Buffer, DeviceError> {
        self.buffer_from(data)
    }
    /// Allocates a buffer holding `data`.
    fn buffer_from<T: Elem>(&self, data: &[T]) -> Result<Self::Buffer, DeviceError> {
        let buffer = self.alloc_elems(data.len())?;
        self.upload_elems(&buffer, 0, data)?;
        Ok(buffer)
    }
}

/// A 32-bit element the kernels take: `f32` or `u32` (every buffer's unit is 4 bytes).
pub trait Elem: bytemuck::Pod {}
impl Elem for f32 {}
impl Elem for u32 {}

impl<D: Device> DeviceExt for D {}
