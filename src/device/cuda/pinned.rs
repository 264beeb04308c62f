//! Page-locked host memory, the only memory the DMA engines copy asynchronously from: a pool of
//! chunks every upload and download goes through, and the readbacks of `read_async`.
//!
//! A caller takes a chunk out of the pool, waits (outside any lock) for the chunk's last
//! transfer, fills or drains it, and gives it back with the event of its new transfer. Callers on
//! different threads — the stager's uploads, the write-back's downloads, the device step's
//! inputs — each hold their own chunk, so none waits behind another's transfer; the pool only
//! grows when every chunk is in use at once.

use super::memory::{driver, host_wait_event, lock};
use crate::device::DeviceError;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, result, sys};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Bytes per pooled chunk: large enough for a batch's packed rows in one DMA.
pub(super) const CHUNK_BYTES: usize = 8 << 20;
/// Chunks made up front.
const CHUNKS: usize = 8;

/// A page-locked allocation and the event of its last transfer.
pub(super) struct Pinned {
    ptr: *mut u8,
    len: usize,
    /// Completes when the last copy into or out of this memory has finished.
    done: Option<Arc<CudaEvent>>,
}

// SAFETY: plain host memory with one owner at a time (the pool or the caller that took it).
unsafe impl Send for Pinned {}

impl Pinned {
    fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self, DeviceError> {
        ctx.bind_to_thread()
            .map_err(driver("binding the CUDA context"))?;
        // SAFETY: a plain page-locked allocation, freed once in Drop.
        let ptr = unsafe { result::malloc_host(len.max(4), 0) }
            .map_err(driver("allocating page-locked staging memory"))?;
        Ok(Pinned {
            ptr: ptr.cast(),
            len,
            done: None,
        })
    }

    /// Waits for the last transfer into or out of this memory.
    fn settle(&mut self) -> Result<(), DeviceError> {
        if let Some(e) = self.done.take() {
            e.synchronize()
                .map_err(driver("waiting for a staging transfer"))?;
        }
        Ok(())
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = self.settle();
        // SAFETY: allocated by cuMemHostAlloc in `Pinned::new`, freed once.
        let _ = unsafe { result::free_host(self.ptr.cast()) };
    }
}

/// The pool of staging chunks.
pub(super) struct PinnedPool {
    ctx: Arc<CudaContext>,
    free: Mutex<VecDeque<Pinned>>,
}

impl PinnedPool {
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Self, DeviceError> {
        let free = (0..CHUNKS)
            .map(|_| Pinned::new(ctx, CHUNK_BYTES))
            .collect::<Result<VecDeque<_>, _>>()?;
        Ok(PinnedPool {
            ctx: ctx.clone(),
            free: Mutex::new(free),
        })
    }

    /// The chunk whose transfer was queued longest ago (a new one if all are taken), its
    /// transfer finished. The pool's lock is not held while waiting.
    fn take(&self) -> Result<Pinned, DeviceError> {
        let oldest = lock(&self.free).pop_front();
        let mut chunk = match oldest {
            Some(c) => c,
            None => Pinned::new(&self.ctx, CHUNK_BYTES)?,
        };
        chunk.settle()?;
        Ok(chunk)
    }

    fn give(&self, chunk: Pinned) {
        lock(&self.free).push_back(chunk);
    }

    /// Queues `src` → `dst` on `stream` through pooled chunks. Returns once the bytes are in the
    /// chunks, not after they land on the device.
    pub(super) fn upload(
        &self,
        stream: &CudaStream,
        dst: sys::CUdeviceptr,
        src: &[u8],
    ) -> Result<(), DeviceError> {
        for (done, part) in (0..).step_by(CHUNK_BYTES).zip(src.chunks(CHUNK_BYTES)) {
            let mut chunk = self.take()?;
            // SAFETY: the chunk holds CHUNK_BYTES >= part.len() bytes and no transfer uses it
            // (take settled it); the DMA reads it until `done` completes, and the chunk is not
            // reused before that (take waits).
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), chunk.ptr, part.len());
                let host = std::slice::from_raw_parts(chunk.ptr, part.len());
                result::memcpy_htod_async(dst + done as u64, host, stream.cu_stream())
                    .map_err(driver("queueing a host-to-device copy"))?;
            }
            let event = host_wait_event(&self.ctx, stream, "recording an upload event")?;
            chunk.done = Some(Arc::new(event));
            self.give(chunk);
        }
        Ok(())
    }

    /// Copies `src` on the device into `dst` on the host through pooled chunks, on `stream`, and
    /// waits for it (this caller's chunk only: no lock is held meanwhile).
    pub(super) fn download(
        &self,
        stream: &CudaStream,
        src: sys::CUdeviceptr,
        dst: &mut [u8],
    ) -> Result<(), DeviceError> {
        for (done, part) in (0..).step_by(CHUNK_BYTES).zip(dst.chunks_mut(CHUNK_BYTES)) {
            let chunk = self.take()?;
            let n = part.len();
            // SAFETY: as in `upload`; the host waits for the copy before reading the chunk.
            unsafe {
                let host = std::slice::from_raw_parts_mut(chunk.ptr, n);
                result::memcpy_dtoh_async(host, src + done as u64, stream.cu_stream())
                    .map_err(driver("queueing a device-to-host copy"))?;
            }
            host_wait_event(&self.ctx, stream, "recording a download event")?
                .synchronize()
                .map_err(driver("waiting for a device-to-host copy"))?;
            // SAFETY: the copy into the chunk has finished; `n` bytes fit both sides.
            unsafe { std::ptr::copy_nonoverlapping(chunk.ptr, part.as_mut_ptr(), n) };
            self.give(chunk);
        }
        Ok(())
    }

    /// Seconds `stream` takes to move `bytes` from one chunk (re-read as often as needed) to
    /// `dst`, with nothing else queued before it: the host→device ceiling that `upload` is
    /// measured against.
    pub(super) fn time_raw_upload(
        &self,
        stream: &CudaStream,
        dst: sys::CUdeviceptr,
        bytes: u64,
    ) -> Result<f64, DeviceError> {
        let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .ctx
            .new_event(timing)
            .map_err(driver("creating an event"))?;
        let end = self
            .ctx
            .new_event(timing)
            .map_err(driver("creating an event"))?;
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
        self.give(chunk);
        let ms = start
            .elapsed_ms(&end)
            .map_err(driver("reading the copy time"))?;
        Ok(ms as f64 / 1e3)
    }
}

/// Host memory for `Device::read_async` on CUDA: page-locked memory of its own, so the copy
/// runs on the readback stream while the host records later work.
pub struct CudaReadback {
    host: Pinned,
    /// The length of the copy started, until it is finished.
    len: Option<u64>,
}

impl CudaReadback {
    pub(super) fn new(ctx: &Arc<CudaContext>, bytes: u64) -> Result<Self, DeviceError> {
        Ok(CudaReadback {
            host: Pinned::new(ctx, bytes as usize)?,
            len: None,
        })
    }

    /// Queues the copy of `len` bytes at `src` into this readback on `stream` (which waits for
    /// the buffer's writers already) and returns its event, for the buffer's next writer.
    pub(super) fn start(
        &mut self,
        ctx: &Arc<CudaContext>,
        stream: &CudaStream,
        src: sys::CUdeviceptr,
        len: u64,
    ) -> Result<Arc<CudaEvent>, DeviceError> {
        crate::device::check_read_fits(len, self.host.len as u64)?;
        // A copy still in flight lands (and is dropped) before this one reuses the memory.
        self.len = None;
        self.host.settle()?;
        // SAFETY: the memory holds `len` bytes (checked) and no transfer uses it (settled); the
        // host reads it only after the event completes (`finish`).
        unsafe {
            let host = std::slice::from_raw_parts_mut(self.host.ptr, len as usize);
            result::memcpy_dtoh_async(host, src, stream.cu_stream())
                .map_err(driver("queueing a device-to-host read"))?;
        }
        let event = Arc::new(host_wait_event(ctx, stream, "recording a read event")?);
        self.host.done = Some(event.clone());
        self.len = Some(len);
        Ok(event)
    }

    /// Whether the copy has landed; never waits.
    pub(super) fn ready(&self) -> Result<bool, DeviceError> {
        match &self.host.done {
            None => Ok(true),
            Some(e) => e
                .try_is_complete()
                .map_err(driver("asking whether a read has finished")),
        }
    }

    /// Waits for the copy and moves its bytes into `dst`.
    pub(super) fn finish(&mut self, dst: &mut [u8]) -> Result<(), DeviceError> {
        let len = crate::device::check_finish_read(self.len.take(), dst.len())? as usize;
        self.host.settle()?;
        // SAFETY: the copy into the memory has finished; `len` bytes fit both sides.
        unsafe { std::ptr::copy_nonoverlapping(self.host.ptr, dst.as_mut_ptr(), len) };
        Ok(())
    }
}
