//! CUDA backend: cudarc's driver API, NVRTC and cuBLAS, all loaded at run time.
//!
//! The binary links no CUDA library (cudarc's `dynamic-loading`), so it builds and runs where
//! there is no toolkit and no driver; [`CudaDevice::new`] then answers
//! [`DeviceError::Unavailable`] with what is missing, and `--backend auto` moves on to wgpu or the
//! CPU. cudarc panics when it calls into a library that is absent, so every entry point checks
//! presence first ([`driver_available`], [`compile::nvrtc_available`]).
//!
//! - **Kernels** ([`compile`]): each `kernels/NAME.cu` is embedded and compiled by NVRTC on its
//!   first launch, for the device's compute capability, then cached for the life of the device.
//!   `gemm` is cuBLAS (`dense.rs`: row-major handled by computing `Cᵀ = op(B)ᵀ·op(A)ᵀ` in
//!   column-major).
//! - **Streams** (`memory.rs`): kernels run on a compute stream, uploads on a copy stream,
//!   downloads and `read_async` on a readback stream, ordered per buffer by events, so
//!   host↔device transfers of the next batch's rows and the read of the last step's loss overlap
//!   the current training step. Transfers go through a pool of page-locked chunks (`pinned.rs`),
//!   each caller holding its own, so no thread waits for the device under a lock.
//! - **Launches** (`launch.rs`, called from `embedding.rs`, `dense.rs` and `quantize.rs`):
//!   shapes are validated on the host with the same checks as every backend, then the kernel is
//!   queued with its arguments in the order of its C signature; nothing waits for the device
//!   except `download` and `synchronize`.

#![allow(unsafe_code)] // FFI: every unsafe block states why it is sound.

pub mod compile;
mod dense;
mod embedding;
mod hash;
mod launch;
mod memory;
mod pinned;
mod quantize;

pub use compile::{ParamKind, compile_kernel, compile_source, nvrtc_available, nvrtc_version};
pub use launch::signature;
pub use memory::CudaBuffer;
pub use pinned::CudaReadback;

use super::{BackendKind, Device, DeviceError, DeviceInfo, KernelId};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use memory::{driver, lock, recorded_event};
use pinned::PinnedPool;
use std::sync::{Arc, Mutex};

/// Whether the CUDA driver library can be loaded and reports at least one device; `Err` says
/// why not and what to do.
pub fn driver_available() -> Result<usize, DeviceError> {
    let unavailable = |reason: String| DeviceError::Unavailable {
        backend: BackendKind::Cuda,
        reason,
    };
    // SAFETY: only tries to open the shared library (dlopen); calls nothing in it.
    let present = std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() })
        .unwrap_or(false);
    if !present {
        return Err(unavailable(
            "no CUDA driver (libcuda.so was not found): install the NVIDIA driver, or use \
             `--backend auto` to fall back to wgpu or the CPU"
                .into(),
        ));
    }
    cudarc::driver::result::init()
        .map_err(|e| unavailable(format!("the CUDA driver failed to start: {e}")))?;
    let count = CudaContext::device_count()
        .map_err(|e| unavailable(format!("cannot count CUDA devices: {e}")))?;
    if count < 1 {
        return Err(unavailable(
            "the CUDA driver reports no device; use `--backend auto` to fall back".into(),
        ));
    }
    Ok(count as usize)
}

/// A CUDA GPU: one context, a compute, a copy and a readback stream, compiled kernels, cuBLAS.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    /// Device-to-host copies, apart from the uploads so neither waits behind the other.
    readback: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    arch: &'static str,
    /// Compiled kernels by [`KernelId`] index, filled on first use (`gemm`'s slot stays empty).
    functions: Mutex<[Option<CudaFunction>; KernelId::ALL.len()]>,
    staging: PinnedPool,
    /// Addresses for pointer arguments a launch does not use (state of a stateless move, SGD's
    /// accumulator): never read or written.
    dummy: [CudaBuffer; 2],
    info: DeviceInfo,
}

impl CudaDevice {
    /// Opens GPU 0.
    pub fn new() -> Result<Self, DeviceError> {
        Self::with_ordinal(0)
    }

    /// Opens GPU `ordinal`.
    pub fn with_ordinal(ordinal: usize) -> Result<Self, DeviceError> {
        let count = driver_available()?;
        if ordinal >= count {
            return Err(DeviceError::Unavailable {
                backend: BackendKind::Cuda,
                reason: format!("GPU {ordinal} does not exist: the driver reports {count}"),
            });
        }
        let mut version = 0;
        // SAFETY: the driver is loaded and initialised (driver_available); a live local.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
            .result()
            .map_err(driver("reading the driver's CUDA version"))?;
        compile::check_ptx_loadable(compile::nvrtc_version()?, version).map_err(|reason| {
            DeviceError::Unavailable {
                backend: BackendKind::Cuda,
                reason,
            }
        })?;
        let ctx = CudaContext::new(ordinal).map_err(driver("creating a CUDA context"))?;
        let compute = ctx
            .new_stream()
            .map_err(driver("creating the compute stream"))?;
        let copy = ctx
            .new_stream()
            .map_err(driver("creating the copy stream"))?;
        let readback = ctx
            .new_stream()
            .map_err(driver("creating the readback stream"))?;
        // SAFETY: dlopen only, as above.
        let blas_present =
            std::panic::catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() })
                .unwrap_or(false);
        if !blas_present {
            return Err(DeviceError::Unavailable {
                backend: BackendKind::Cuda,
                reason: "cuBLAS (libcublas.so, .so.13 or .so.12) was not found: install the CUDA \
                         toolkit or `pip install nvidia-cublas-cu12` (`nvidia-cublas` for CUDA \
                         13) and put its `lib` folder on LD_LIBRARY_PATH"
                    .into(),
            });
        }
        let blas = CudaBlas::new(compute.clone()).map_err(|e| DeviceError::Backend {
            backend: BackendKind::Cuda,
            message: format!("creating a cuBLAS handle: {e:?}"),
        })?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        let name = ctx.name().map_err(driver("reading the device name"))?;
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(driver("reading the multiprocessor count"))?;
        let total = ctx.total_mem().map_err(driver("reading the memory size"))?;
        let staging = PinnedPool::new(&ctx)?;
        let dummy = [
            CudaBuffer::zeroed(&ctx, &compute, 4)?,
            CudaBuffer::zeroed(&ctx, &compute, 4)?,
        ];
        Ok(CudaDevice {
            dummy,
            arch: compile::arch_for(major, minor),
            info: DeviceInfo {
                backend: BackendKind::Cuda,
                name: format!("{name} (sm_{major}{minor})"),
                parallelism: sms.max(1) as usize,
                max_buffer_bytes: total as u64,
            },
            ctx,
            compute,
            copy,
            readback,
            blas: Mutex::new(blas),
            functions: Mutex::new(Default::default()),
            staging,
        })
    }

    /// One line for `rowflow info`: the GPU, or why there is none.
    pub fn describe() -> Result<String, DeviceError> {
        driver_available()?;
        let ctx = CudaContext::new(0).map_err(driver("creating a CUDA context"))?;
        let name = ctx.name().map_err(driver("reading the device name"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        let total = ctx.total_mem().map_err(driver("reading the memory size"))?;
        Ok(format!(
            "{name} (sm_{major}{minor}, {:.1} GiB)",
            total as f64 / (1u64 << 30) as f64
        ))
    }

    /// Makes the compute stream wait for pending uploads into `bufs` and reads of them.
    fn before_compute(&self, bufs: &[&CudaBuffer]) -> Result<(), DeviceError> {
        for b in bufs {
            let (copied, read) = {
                let mut uses = lock(&b.uses);
                (uses.copied.take(), uses.read.take())
            };
            for e in [copied, read].into_iter().flatten() {
                self.compute
                    .wait(&e)
                    .map_err(driver("ordering a kernel after a transfer"))?;
            }
        }
        Ok(())
    }

    /// Marks `bufs` as used by the work just queued on the compute stream.
    fn after_compute(&self, bufs: &[&CudaBuffer]) -> Result<(), DeviceError> {
        let event = Arc::new(recorded_event(
            &self.ctx,
            &self.compute,
            "recording a kernel event",
        )?);
        for b in bufs {
            lock(&b.uses).computed = Some(event.clone());
        }
        Ok(())
    }

    /// Makes this device's context current on the calling thread, as every driver call needs.
    fn bind(&self) -> Result<(), DeviceError> {
        self.ctx
            .bind_to_thread()
            .map_err(driver("binding the CUDA context"))
    }

    /// Readies an upload into `buf` on the copy stream: binds the context and makes the copy
    /// stream wait for the last kernel that used `buf` and the last read of it.
    fn before_upload(&self, buf: &CudaBuffer) -> Result<(), DeviceError> {
        self.bind()?;
        let (computed, read) = {
            let mut uses = lock(&buf.uses);
            (uses.computed.clone(), uses.read.take())
        };
        for e in [computed, read].into_iter().flatten() {
            self.copy
                .wait(&e)
                .map_err(driver("ordering an upload after a kernel or a read"))?;
        }
        Ok(())
    }

    /// Readies a read of `buf` on the readback stream: binds the context and makes the stream
    /// wait for the last kernel that used `buf` and the last upload into it.
    fn before_read(&self, buf: &CudaBuffer) -> Result<(), DeviceError> {
        self.bind()?;
        let (computed, copied) = {
            let uses = lock(&buf.uses);
            (uses.computed.clone(), uses.copied.clone())
        };
        for e in [computed, copied].into_iter().flatten() {
            self.readback
                .wait(&e)
                .map_err(driver("ordering a read after a kernel or an upload"))?;
        }
        Ok(())
    }
}

impl Device for CudaDevice {
    type Buffer = CudaBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&self, bytes: u64) -> Result<CudaBuffer, DeviceError> {
        super::check_alloc(bytes)?;
        if bytes > self.info.max_buffer_bytes {
            return Err(DeviceError::OutOfMemory {
                requested: bytes,
                device: self.info.name.clone(),
                reason: format!("the GPU has {} bytes", self.info.max_buffer_bytes),
            });
        }
        CudaBuffer::zeroed(&self.ctx, &self.compute, bytes)
    }

    fn buffer_bytes(&self, buffer: &CudaBuffer) -> u64 {
        buffer.bytes
    }

    fn upload(&self, dst: &CudaBuffer, offset: u64, src: &[u8]) -> Result<(), DeviceError> {
        dst.check("upload", offset, src.len() as u64)?;
        if src.is_empty() {
            return Ok(());
        }
        self.before_upload(dst)?;
        self.staging.upload(&self.copy, dst.at(offset), src)?;
        let event = recorded_event(&self.ctx, &self.copy, "recording an upload event")?;
        lock(&dst.uses).copied = Some(Arc::new(event));
        Ok(())
    }

    fn download(&self, src: &CudaBuffer, offset: u64, dst: &mut [u8]) -> Result<(), DeviceError> {
        src.check("download", offset, dst.len() as u64)?;
        if dst.is_empty() {
            return Ok(());
        }
        self.before_read(src)?;
        self.staging.download(&self.readback, src.at(offset), dst)
    }

    fn time_pinned_upload(&self, dst: &CudaBuffer, bytes: u64) -> Result<Option<f64>, DeviceError> {
        dst.check("upload", 0, bytes)?;
        // Nothing else in the way: the time is the copy's alone, not that of kernels it would
        // otherwise wait for.
        self.synchronize()?;
        self.before_upload(dst)?;
        let s = self.staging.time_raw_upload(&self.copy, dst.at(0), bytes)?;
        Ok(Some(s))
    }

    fn copy_buffer(
        &self,
        src: &CudaBuffer,
        src_offset: u64,
        dst: &CudaBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), DeviceError> {
        src.check("copy_buffer", src_offset, bytes)?;
        dst.check("copy_buffer", dst_offset, bytes)?;
        super::kernels::distinct("copy_buffer", dst, &[src])?;
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        self.before_compute(&[src, dst])?;
        // SAFETY: both ranges were checked against their buffers above.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst.at(dst_offset),
                src.at(src_offset),
                bytes as usize,
                self.compute.cu_stream(),
            )
        }
        .map_err(driver("queueing a device-to-device copy"))?;
        self.after_compute(&[src, dst])
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        self.bind()?;
        self.copy
            .synchronize()
            .map_err(driver("waiting for the copy stream"))?;
        self.readback
            .synchronize()
            .map_err(driver("waiting for the readback stream"))?;
        self.compute
            .synchronize()
            .map_err(driver("waiting for the compute stream"))
    }

    type Readback = CudaReadback;

    fn alloc_readback(&self, bytes: u64) -> Result<CudaReadback, DeviceError> {
        CudaReadback::new(&self.ctx, bytes)
    }

    fn read_async(
        &self,
        src: &CudaBuffer,
        offset: u64,
        len: u64,
        into: &mut CudaReadback,
    ) -> Result<(), DeviceError> {
        src.check("read_async", offset, len)?;
        self.before_read(src)?;
        let event = into.start(&self.ctx, &self.readback, src.at(offset), len)?;
        // The buffer's next writer (a kernel, an upload) waits for this read.
        lock(&src.uses).read = Some(event);
        Ok(())
    }

    fn readback_ready(&self, rb: &CudaReadback) -> Result<bool, DeviceError> {
        self.bind()?;
        rb.ready()
    }

    fn finish_read(&self, rb: &mut CudaReadback, dst: &mut [u8]) -> Result<(), DeviceError> {
        self.bind()?;
        rb.finish(dst)
    }

    super::forward_kernels!(
        embedding: embedding, dense: dense, quantize: quantize, hash: hash
    );
}
