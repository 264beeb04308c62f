//! Device buffers with their stream hazards, and the ring of page-locked host chunks that every
//! transfer goes through.
//!
//! Two streams share each buffer: the *copy* stream (uploads of packed rows, downloads of victims)
//! and the *compute* stream (kernels). A buffer remembers the event of its last use on each:
//! a kernel waits for the last upload into any buffer it touches, an upload waits for the last
//! kernel that touched its destination. Nothing else is ordered, so the upload of the next batch's
//! rows runs while this batch's training kernels do (the training step itself never waits for the
//! host). cudarc's own per-slice tracking needs `&mut` access, which the [`Device`](crate::device)
//! trait's shared buffer handles do not give, hence this small equivalent.

use crate::device::{BackendKind, DeviceError};
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, DriverError, result, sys};
use std::sync::{Arc, Mutex, MutexGuard};

/// Turns a driver error into a [`DeviceError`] naming what was being done.
pub(super) fn driver(what: &str) -> impl Fn(DriverError) -> DeviceError + '_ {
    move |e| DeviceError::Backend {
        backend: BackendKind::Cuda,
        message: format!("{what}: {e}"),
    }
}

/// A new event, recorded on `stream` (`what` says what is recorded, for the error).
pub(super) fn recorded_event(
    ctx: &Arc<CudaContext>,
    stream: &CudaStream,
    what: &str,
) -> Result<CudaEvent, DeviceError> {
    let event = ctx.new_event(None).map_err(driver("creating an event"))?;
    event.record(stream).map_err(driver(what))?;
    Ok(event)
}

/// A new event that the *host* will wait on, recorded on `stream`: created with blocking sync,
/// so a waiting thread sleeps instead of spinning on a core the loader and the other stages
/// need. (Events only streams wait on keep `recorded_event`'s cheaper flags.)
pub(super) fn host_wait_event(
    ctx: &Arc<CudaContext>,
    stream: &CudaStream,
    what: &str,
) -> Result<CudaEvent, DeviceError> {
    let event = ctx
        .new_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
        .map_err(driver("creating an event"))?;
    event.record(stream).map_err(driver(what))?;
    Ok(event)
}

/// Locks a mutex, treating poisoning (a panic elsewhere) as still usable: the guarded data are
/// events and pointers whose state stays consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The last use of a buffer on each stream.
#[derive(Default)]
pub(super) struct Uses {
    /// Completes when the last upload into the buffer has landed.
    pub copied: Option<Arc<CudaEvent>>,
    /// Completes when the last kernel that read or wrote the buffer has finished.
    pub computed: Option<Arc<CudaEvent>>,
}

/// Device memory owned by a [`CudaDevice`](super::CudaDevice).
pub struct CudaBuffer {
    pub(super) ptr: sys::CUdeviceptr,
    pub(super) bytes: u64,
    pub(super) ctx: Arc<CudaContext>,
    pub(super) uses: Mutex<Uses>,
}

impl CudaBuffer {
    /// Allocates `bytes` of memory (at least 4, so no handle is empty), zeroed on `stream` (the
    /// compute stream): the zeroing is the buffer's first use there, so uploads and kernels are
    /// ordered after it like after any kernel. (The synchronous `cuMemsetD8` runs on the legacy
    /// stream, which the non-blocking copy and compute streams do not wait for.)
    pub(super) fn zeroed(
        ctx: &Arc<CudaContext>,
        stream: &CudaStream,
        bytes: u64,
    ) -> Result<Self, DeviceError> {
        let size = bytes.max(4);
        ctx.bind_to_thread()
            .map_err(driver("binding the CUDA context"))?;
        // SAFETY: a plain allocation of `size` bytes; the pointer is freed once, in Drop.
        let ptr = unsafe { result::malloc_sync(size as usize) }.map_err(|e| {
            DeviceError::OutOfMemory {
                requested: size,
                device: ctx.name().unwrap_or_else(|_| "CUDA device".into()),
                reason: format!("cuMemAlloc: {e}"),
            }
        })?;
        let buffer = CudaBuffer {
            ptr,
            bytes,
            ctx: ctx.clone(),
            uses: Mutex::new(Uses::default()),
        };
        // SAFETY: `ptr` points to `size` bytes just allocated; the stream belongs to `ctx`.
        unsafe { result::memset_d8_async(ptr, 0, size as usize, stream.cu_stream()) }
            .map_err(driver("zeroing a new buffer"))?;
        let zeroed = recorded_event(ctx, stream, "recording a buffer's zeroing")?;
        lock(&buffer.uses).computed = Some(Arc::new(zeroed));
        Ok(buffer)
    }

    /// The device address `offset` bytes in.
    pub(super) fn at(&self, offset: u64) -> sys::CUdeviceptr {
        self.ptr + offset
    }

    /// Checks that `offset .. offset + len` lies inside the buffer.
    pub(super) fn check(&self, op: &'static str, offset: u64, len: u64) -> Result<(), DeviceError> {
        let end = offset.saturating_add(len);
        if end > self.bytes {
            return Err(DeviceError::OutOfBounds {
                op,
                offset,
                end,
                len: self.bytes,
            });
        }
        Ok(())
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        // Work still queued may use the memory: wait for it before freeing. Errors cannot be
        // returned from drop; a failing driver has already reported them on the stream.
        let uses = std::mem::take(&mut *lock(&self.uses));
        let _ = self.ctx.bind_to_thread();
        for event in [uses.copied, uses.computed].into_iter().flatten() {
            let _ = event.synchronize();
        }
        // SAFETY: `ptr` came from cuMemAlloc in `zeroed` and no queued work uses it any more.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}

/// Page-locked host memory, the only memory the DMA engines copy asynchronously from.
struct Pinned {
    ptr: *mut u8,
    len: usize,
    /// Completes when the last copy into or out of this chunk has finished.
    done: Option<CudaEvent>,
}

// SAFETY: the chunk is plain host memory owned by the ring, used under its mutex.
unsafe impl Send for Pinned {}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(e) = self.done.take() {
            let _ = e.synchronize();
        }
        // SAFETY: allocated by cuMemHostAlloc in `PinnedRing::new`, freed once.
        let _ = unsafe { result::free_host(self.ptr.cast()) };
    }
}

/// A ring of page-locked chunks. An upload copies its bytes into the next free chunk and queues
/// the DMA on the copy stream; the chunk is reused only after that DMA has finished, so the host
/// waits only when the whole ring is in flight.
pub(super) struct PinnedRing {
    chunks: Vec<Pinned>,
    next: usize,
}

/// Bytes per pinned chunk: large enough for a batch's packed rows in one DMA.
pub(super) const CHUNK_BYTES: usize = 8 << 20;
/// Chunks in the ring.
const CHUNKS: usize = 8;

impl PinnedRing {
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Self, DeviceError> {
        ctx.bind_to_thread()
            .map_err(driver("binding the CUDA context"))?;
        let mut chunks = Vec::with_capacity(CHUNKS);
        for _ in 0..CHUNKS {
            // SAFETY: a plain page-locked allocation, freed once in Pinned's Drop.
            let ptr = unsafe { result::malloc_host(CHUNK_BYTES, 0) }
                .map_err(driver("allocating page-locked staging memory"))?;
            chunks.push(Pinned {
                ptr: ptr.cast(),
                len: CHUNK_BYTES,
                done: None,
            });
        }
        Ok(PinnedRing { chunks, next: 0 })
    }

    /// Takes the next chunk, waiting for its previous transfer to finish.
    fn take(&mut self) -> Result<&mut Pinned, DeviceError> {
        let i = self.next;
        self.next = (self.next + 1) % self.chunks.len();
        let chunk = &mut self.chunks[i];
        if let Some(e) = chunk.done.take() {
            e.synchronize()
                .map_err(driver("waiting for a staging transfer"))?;
        }
        Ok(chunk)
    }

    /// Runs `step(chunk, done, n)` over `len` bytes, `n` at a time (at most a chunk), each step
    /// on the next free chunk; `done` is the bytes before this step.
    fn each_chunk(
        &mut self,
        len: usize,
        mut step: impl FnMut(&mut Pinned, usize, usize) -> Result<(), DeviceError>,
    ) -> Result<(), DeviceError> {
        let mut done = 0;
        while done < len {
            let chunk = self.take()?;
            let n = (len - done).min(chunk.len);
            step(chunk, done, n)?;
            done += n;
        }
        Ok(())
    }

    /// Queues `src` → `dst` on `stream` through pinned chunks. Returns after the bytes are
    /// copied into the chunks, not after they land on the device.
    pub(super) fn upload(
        &mut self,
        ctx: &Arc<CudaContext>,
        stream: &CudaStream,
        dst: sys::CUdeviceptr,
        src: &[u8],
    ) -> Result<(), DeviceError> {
        self.each_chunk(src.len(), |chunk, done, n| {
            // SAFETY: the chunk holds `chunk.len >= n` bytes and no transfer uses it (take
            // waited); the source range is inside `src`.
            unsafe {
                std::ptr::copy_nonoverlapping(src[done..].as_ptr(), chunk.ptr, n);
                let host = std::slice::from_raw_parts(chunk.ptr, n);
                result::memcpy_htod_async(dst + done as u64, host, stream.cu_stream())
                    .map_err(driver("queueing a host-to-device copy"))?;
            }
            chunk.done = Some(host_wait_event(ctx, stream, "recording an upload event")?);
            Ok(())
        })
    }

    /// Copies `src` on the device into `dst` on the host through pinned chunks, on `stream`, and
    /// waits for it.
    pub(super) fn download(
        &mut self,
        ctx: &Arc<CudaContext>,
        stream: &CudaStream,
        src: sys::CUdeviceptr,
        dst: &mut [u8],
    ) -> Result<(), DeviceError> {
        self.each_chunk(dst.len(), |chunk, done, n| {
            // SAFETY: as in `upload`; the host waits for the copy before reading the chunk.
            unsafe {
                let host = std::slice::from_raw_parts_mut(chunk.ptr, n);
                result::memcpy_dtoh_async(host, src + done as u64, stream.cu_stream())
                    .map_err(driver("queueing a device-to-host copy"))?;
            }
            host_wait_event(ctx, stream, "recording a download event")?
                .synchronize()
                .map_err(driver("waiting for a device-to-host copy"))?;
            // SAFETY: the copy into the chunk has finished; `n` bytes fit both sides.
            unsafe { std::ptr::copy_nonoverlapping(chunk.ptr, dst[done..].as_mut_ptr(), n) };
            Ok(())
        })
    }
}

impl PinnedRing {
    /// Seconds the copy stream takes to move `bytes` from one page-locked chunk (re-read as
    /// often as needed) to `dst`: the host→device ceiling that `upload` is measured against.
    pub(super) fn time_raw_upload(
        &mut self,
        ctx: &Arc<CudaContext>,
        stream: &CudaStream,
        dst: sys::CUdeviceptr,
        bytes: u64,
    ) -> Result<f64, DeviceError> {
        let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = ctx.new_event(timing).map_err(driver("creating an event"))?;
        let end = ctx.new_event(timing).map_err(driver("creating an event"))?;
        let chunk = self.take()?;
        start.record(stream).map_err(driver("recording an event"))?;
        let mut done = 0u64;
        while done < bytes {
            let n = (bytes - done).min(chunk.len as u64) as usize;
            // SAFETY: the chunk holds `chunk.len >= n` bytes and is only read; `dst` holds
            // `bytes` (checked by the caller).
            unsafe {
                let host = std::slice::from_raw_parts(chunk.ptr, n);
                result::memcpy_htod_async(dst + done, host, stream.cu_stream())
                    .map_err(driver("queueing a host-to-device copy"))?;
            }
            done += n as u64;
        }
        end.record(stream).map_err(driver("recording an event"))?;
        end.synchronize()
            .map_err(driver("waiting for a host-to-device copy"))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(driver("reading the copy time"))?;
        Ok(ms as f64 / 1e3)
    }
}
