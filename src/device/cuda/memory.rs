//! Device buffers with their stream hazards.
//!
//! Three streams share each buffer: the *copy* stream (uploads), the *readback* stream
//! (downloads and asynchronous reads) and the *compute* stream (kernels). A buffer remembers the
//! event of its last use on each: a kernel waits for the last upload into any buffer it touches
//! and for the last asynchronous read of it; an upload waits for the last kernel that touched its
//! destination and the last read of it; a read waits for the last kernel and the last upload.
//! Nothing else is ordered, so the upload of the next batch's rows and the read of the last
//! step's loss run while this batch's training kernels do (the training step itself never waits
//! for the host). cudarc's own per-slice tracking needs `&mut` access, which the [`Device`](crate::device)
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
    /// Completes when the last asynchronous read of the buffer (`read_async`) has finished:
    /// whatever writes the buffer next waits for it.
    pub read: Option<Arc<CudaEvent>>,
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
        for event in [uses.copied, uses.computed, uses.read]
            .into_iter()
            .flatten()
        {
            let _ = event.synchronize();
        }
        // SAFETY: `ptr` came from cuMemAlloc in `zeroed` and no queued work uses it any more.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}
