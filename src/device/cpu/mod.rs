//! The CPU reference backend: plain loops, rayon where it pays, `matrixmultiply` for GEMM.
//!
//! It is the oracle of the parity tests, so every kernel is written for clarity first and is
//! deterministic: each output element is computed by one worker in a fixed order, whatever the
//! thread count. Launches run synchronously in the caller's thread (ordered by construction).
//!
//! The kernels are free functions over slices, named like the shaders (`bag_forward` …), in one
//! file per area as on every backend (`embedding.rs`, `dense.rs`, `quantize.rs`, `hash.rs`), so they can be
//! tested directly; each file's `launch` module is [`CpuDevice`]'s side of its `Device` methods:
//! it locks the buffers and calls them.

mod dense;
mod embedding;
mod hash;
mod quantize;
mod simd;

pub use dense::{
    bce_loss, bias_act_backward, bias_act_forward, dense_update, gemm, interaction_backward,
    interaction_forward,
};
pub use embedding::{BagGrads, bag_backward_adagrad, bag_backward_sgd, bag_forward};
pub use hash::hash_encode;
pub use quantize::{dequantize_rows, quantize_rows};

use super::kernels::distinct;
use super::profile::{KernelClock, KernelTime};
use super::{BackendKind, Device, DeviceError, DeviceInfo};
use crate::hostmem::{HugeSlice, try_zeroed_slice};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Host memory standing in for device memory: 32-bit words behind a lock, so kernels can take
/// `&Buffer` like on a GPU while Rust still sees exclusive access for writes. Large buffers sit
/// on huge pages (embedding tables are read at random).
pub struct CpuBuffer {
    words: RwLock<HugeSlice<u32>>,
    /// The device's count of live bytes, decremented when the buffer is dropped.
    live: Arc<AtomicU64>,
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        self.live.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

impl CpuBuffer {
    /// The buffer's size in bytes.
    fn bytes(&self) -> u64 {
        4 * self.read().len() as u64
    }
    fn read(&self) -> RwLockReadGuard<'_, HugeSlice<u32>> {
        // A poisoned lock only means a panic elsewhere; the words are still valid memory.
        self.words.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, HugeSlice<u32>> {
        self.words.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The CPU backend.
pub struct CpuDevice {
    info: DeviceInfo,
    live: Arc<AtomicU64>,
    /// The kernels' own threads, the creating thread among them ([`CpuDevice::with_threads`]);
    /// `None`: rayon's global pool.
    pool: Option<rayon::ThreadPool>,
    /// Per-kernel time, once started ([`Device::start_kernel_profile`]).
    clock: KernelClock,
}

impl CpuDevice {
    /// Creates the backend on rayon's global thread pool.
    pub fn new() -> Self {
        CpuDevice {
            info: DeviceInfo {
                backend: BackendKind::Cpu,
                name: cpu_name(),
                parallelism: rayon::current_num_threads(),
                max_buffer_bytes: isize::MAX as u64,
            },
            live: Arc::new(AtomicU64::new(0)),
            pool: None,
            clock: KernelClock::default(),
        }
    }

    /// Creates the backend with `threads` kernel threads of its own, the calling thread being
    /// one of them: kernels launched from this thread run on it and `threads - 1` helpers,
    /// with no hand-off to another thread (with one thread, inline), so a training run can
    /// leave the other cores to the loader. Kernels launched from other threads run on
    /// rayon's global pool. For a process's main run: each such device keeps its helper
    /// threads until the process ends (rayon cannot yet release a pool joined by the caller).
    pub fn with_threads(threads: usize) -> Result<Self, DeviceError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("rowflow-cpu-{i}"))
            .use_current_thread()
            .build()
            .map_err(|e| DeviceError::Unavailable {
                backend: BackendKind::Cpu,
                reason: format!("cannot start {threads} kernel threads: {e}"),
            })?;
        let mut dev = CpuDevice::new();
        dev.info.parallelism = pool.current_num_threads();
        dev.pool = Some(pool);
        Ok(dev)
    }

    /// Runs `kernel`'s launch on this device's threads (see [`CpuDevice::with_threads`]),
    /// timed when profiling.
    fn exec<R: Send>(&self, kernel: &'static str, launch: impl FnOnce() -> R + Send) -> R {
        self.clock.time(kernel, || match &self.pool {
            Some(pool) if pool.current_thread_index().is_some() => pool.install(launch),
            _ => launch(),
        })
    }

    /// Bytes of all buffers of this device alive now (their allocated capacity).
    pub fn allocated_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// One line for `rowflow info`: the processor and thread count.
    pub fn describe() -> String {
        format!("{} ({} threads)", cpu_name(), rayon::current_num_threads())
    }
}

impl Default for CpuDevice {
    fn default() -> Self {
        Self::new()
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// A buffer's words seen as the f32s most kernels read.
fn f32s(words: &[u32]) -> &[f32] {
    bytemuck::cast_slice(words)
}

/// A buffer's words seen as the f32s most kernels write.
fn f32s_mut(words: &mut [u32]) -> &mut [f32] {
    bytemuck::cast_slice_mut(words)
}

fn range(
    op: &'static str,
    buffer: &CpuBuffer,
    offset: u64,
    len: usize,
) -> Result<(usize, usize), DeviceError> {
    let size = buffer.bytes();
    let end = offset + len as u64;
    if end > size {
        return Err(DeviceError::OutOfBounds {
            op,
            offset,
            end,
            len: size,
        });
    }
    Ok((offset as usize, end as usize))
}

/// Host memory for [`Device::read_async`] on the CPU: the copy is made at once.
pub struct CpuReadback {
    bytes: Vec<u8>,
    /// The length of the copy made, until it is finished.
    len: Option<u64>,
}

impl Device for CpuDevice {
    type Buffer = CpuBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&self, bytes: u64) -> Result<CpuBuffer, DeviceError> {
        let oom = |reason: String| DeviceError::OutOfMemory {
            requested: bytes,
            device: self.info.name.clone(),
            reason,
        };
        super::check_alloc(bytes)?;
        let words =
            usize::try_from(bytes / 4).map_err(|_| oom("larger than the address space".into()))?;
        let v = try_zeroed_slice::<u32>(words)
            .ok_or_else(|| oom("the host allocator refused".into()))?;
        self.live.fetch_add(4 * v.len() as u64, Ordering::Relaxed);
        Ok(CpuBuffer {
            words: RwLock::new(v),
            live: self.live.clone(),
        })
    }

    fn buffer_bytes(&self, buffer: &CpuBuffer) -> u64 {
        buffer.bytes()
    }

    fn upload(&self, dst: &CpuBuffer, offset: u64, src: &[u8]) -> Result<(), DeviceError> {
        let (a, b) = range("upload", dst, offset, src.len())?;
        let mut words = dst.write();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words[..]);
        self.clock
            .time("upload", || bytes[a..b].copy_from_slice(src));
        Ok(())
    }

    fn download(&self, src: &CpuBuffer, offset: u64, dst: &mut [u8]) -> Result<(), DeviceError> {
        let (a, b) = range("download", src, offset, dst.len())?;
        let words = src.read();
        let bytes: &[u8] = bytemuck::cast_slice(&words[..]);
        self.clock
            .time("download", || dst.copy_from_slice(&bytes[a..b]));
        Ok(())
    }

    fn copy_buffer(
        &self,
        src: &CpuBuffer,
        src_offset: u64,
        dst: &CpuBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), DeviceError> {
        distinct("copy_buffer", dst, &[src])?;
        if bytes % 4 != 0 || src_offset % 4 != 0 || dst_offset % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: "copy_buffer",
                message: format!(
                    "offsets {src_offset}, {dst_offset} and size {bytes} must be multiples of 4"
                ),
            });
        }
        let (a, b) = range("copy_buffer", src, src_offset, bytes as usize)?;
        let (c, d) = range("copy_buffer", dst, dst_offset, bytes as usize)?;
        let from = src.read();
        let mut to = dst.write();
        // Large blocks per task: a plain streaming copy on every core.
        let (to, from) = (&mut to[c / 4..d / 4], &from[a / 4..b / 4]);
        self.exec("copy_buffer", || {
            to.par_chunks_mut(1 << 16)
                .zip(from.par_chunks(1 << 16))
                .for_each(|(o, i)| o.copy_from_slice(i))
        });
        Ok(())
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        Ok(())
    }

    type Readback = CpuReadback;

    fn alloc_readback(&self, bytes: u64) -> Result<CpuReadback, DeviceError> {
        Ok(CpuReadback {
            bytes: vec![0; bytes as usize],
            len: None,
        })
    }

    fn read_async(
        &self,
        src: &CpuBuffer,
        offset: u64,
        len: u64,
        into: &mut CpuReadback,
    ) -> Result<(), DeviceError> {
        // Kernels have run by the time they return: the copy is made now.
        super::check_read_fits(len, into.bytes.len() as u64)?;
        into.len = None;
        self.download(src, offset, &mut into.bytes[..len as usize])?;
        into.len = Some(len);
        Ok(())
    }

    fn readback_ready(&self, _rb: &CpuReadback) -> Result<bool, DeviceError> {
        Ok(true)
    }

    fn finish_read(&self, rb: &mut CpuReadback, dst: &mut [u8]) -> Result<(), DeviceError> {
        let len = super::check_finish_read(rb.len.take(), dst.len())? as usize;
        dst.copy_from_slice(&rb.bytes[..len]);
        Ok(())
    }

    fn start_kernel_profile(&self) -> bool {
        self.clock.start();
        true
    }

    fn kernel_profile(&self) -> Option<Vec<KernelTime>> {
        self.clock.report()
    }

    super::forward_kernels!(
        embedding: embedding::launch,
        dense: dense::launch,
        quantize: quantize::launch,
        hash: hash::launch,
        run: CpuDevice::exec,
    );
}
