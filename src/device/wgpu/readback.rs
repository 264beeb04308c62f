//! Downloads: device buffer → staging buffer → host, one chunk at a time; and readbacks
//! (`read_async`): a mappable buffer per result in flight, copied into and mapped when its
//! submission runs, so the host waits only when it collects the result.
//!
//! Each download takes a staging buffer of its own from a pool (made when none is free), so
//! callers on different threads (the device step's loss, the write-back stage's victims) never
//! share one, and no lock is held while waiting for the device. A staging buffer whose download
//! failed is not returned to the pool: it may still be mapped or waiting to be, and a later
//! download must not inherit that.

use super::{WgpuDevice, backend_error, lock};
use crate::device::DeviceError;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Bytes one staging buffer moves per round trip.
pub(super) const STAGING_BYTES: u64 = 16 << 20;

/// Free staging buffers.
#[derive(Default)]
pub(super) struct StagingPool {
    free: Mutex<Vec<wgpu::Buffer>>,
}

impl WgpuDevice {
    fn take_staging(&self) -> wgpu::Buffer {
        if let Some(b) = lock(&self.staging.free).pop() {
            return b;
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download staging"),
            size: STAGING_BYTES,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copies `dst.len()` bytes at `at` of `src` into `dst` through `staging`, after the work
    /// recorded so far; the staging buffer is unmapped when this returns `Ok`.
    fn read_chunk(
        &self,
        staging: &wgpu::Buffer,
        src: &wgpu::Buffer,
        at: u64,
        dst: &mut [u8],
    ) -> Result<(), DeviceError> {
        let n = dst.len() as u64;
        // The copy joins the pending work: one submission carries the kernels and the copy.
        let receipt = {
            let mut pending = lock(&self.pending);
            self.encoder(&mut pending.encoder)
                .copy_buffer_to_buffer(src, at, staging, 0, n);
            self.flush(&mut pending)?
        };
        let index = receipt
            .and_then(|r| r.index().transpose())
            .transpose()?
            .ok_or_else(|| backend_error("a download's copy was not submitted"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..n).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(backend_error)?;
        self.take_errors()?;
        rx.recv()
            .map_err(|_| backend_error("the download's map callback never ran"))?
            .map_err(backend_error)?;
        {
            let view = staging
                .slice(..n)
                .get_mapped_range()
                .map_err(backend_error)?;
            dst.copy_from_slice(&view);
        }
        staging.unmap();
        Ok(())
    }

    /// Downloads `dst.len()` bytes of `src` from `offset` (checked by the caller). On failure,
    /// the device's own report of what went wrong (e.g. a validation error at submission) is
    /// returned and cleared, so it does not fail a later, good download.
    pub(super) fn read(
        &self,
        src: &super::WgpuBuffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), DeviceError> {
        self.read_staged(src, offset, dst)
            .map_err(|e| self.take_errors().err().unwrap_or(e))
    }

    fn read_staged(
        &self,
        src: &super::WgpuBuffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), DeviceError> {
        let staging = self.take_staging();
        for (part, at, len) in src.spans(offset, dst.len() as u64) {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(STAGING_BYTES);
                let from = (part.first + at + done - offset) as usize;
                // On failure the staging buffer is dropped here, never reused.
                self.read_chunk(
                    &staging,
                    &part.buffer,
                    at + done,
                    &mut dst[from..from + n as usize],
                )?;
                done += n;
            }
        }
        lock(&self.staging.free).push(staging);
        Ok(())
    }
}

/// The outcome of a readback's mapping, set by wgpu's callback — on whichever thread polls
/// the device after the submission has run, so a waiter may find it set a moment later.
#[derive(Default)]
struct MapSlot {
    result: Mutex<Option<Result<(), wgpu::BufferAsyncError>>>,
    set: Condvar,
}

type MapResult = Arc<MapSlot>;

impl MapSlot {
    fn put(&self, r: Result<(), wgpu::BufferAsyncError>) {
        *lock(&self.result) = Some(r);
        self.set.notify_all();
    }

    fn is_set(&self) -> bool {
        lock(&self.result).is_some()
    }

    /// Waits up to `timeout` for the callback; takes its outcome.
    fn take(&self, timeout: Duration) -> Option<Result<(), wgpu::BufferAsyncError>> {
        let guard = lock(&self.result);
        let (mut guard, _) = self
            .set
            .wait_timeout_while(guard, timeout, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.take()
    }
}

/// How long a readback whose submission has finished waits for its map callback before
/// polling the device again.
const CALLBACK_WAIT: Duration = Duration::from_millis(20);
/// How long in all before a readback is declared lost.
const CALLBACK_LIMIT: Duration = Duration::from_secs(120);

/// Host-visible memory for [`crate::device::Device::read_async`]: a mappable buffer of its own,
/// so a result read later never waits for a staging buffer another caller holds.
pub struct WgpuReadback {
    buffer: wgpu::Buffer,
    capacity: u64,
    flight: Option<Flight>,
}

/// A copy into a readback, handed to the submission thread, mapped once it has run.
struct Flight {
    len: u64,
    /// The job carrying the copy (`None` for an empty copy).
    receipt: Option<super::submit::Submitted>,
    mapped: MapResult,
}

impl WgpuDevice {
    pub(super) fn new_readback(&self, bytes: u64) -> Result<WgpuReadback, DeviceError> {
        // wgpu copies and maps in multiples of 4 bytes.
        let capacity = bytes.max(4).div_ceil(4) * 4;
        if capacity > self.limits.max_buffer {
            return Err(DeviceError::OutOfMemory {
                requested: capacity,
                device: self.info.name.clone(),
                reason: format!(
                    "a readback exceeds max_buffer_size {}",
                    self.limits.max_buffer
                ),
            });
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: capacity,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(WgpuReadback {
            buffer,
            capacity,
            flight: None,
        })
    }

    /// Records the copy into the pending work, submits it with everything before it and asks
    /// for the mapping, which wgpu completes on a later poll.
    pub(super) fn start_read(
        &self,
        src: &super::WgpuBuffer,
        offset: u64,
        len: u64,
        rb: &mut WgpuReadback,
    ) -> Result<(), DeviceError> {
        crate::device::check_read_fits(len, rb.capacity)?;
        src.check("read_async", offset, len)?;
        if len % 4 != 0 || offset % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: "read_async",
                message: format!("offset {offset} and length {len} must be multiples of 4"),
            });
        }
        if rb.flight.is_some() {
            self.end_read(rb, None)?;
        }
        let mapped: MapResult = Arc::default();
        if len == 0 {
            mapped.put(Ok(()));
            rb.flight = Some(Flight {
                len,
                receipt: None,
                mapped,
            });
            return Ok(());
        }
        let receipt = {
            let mut pending = lock(&self.pending);
            let encoder = self.encoder(&mut pending.encoder);
            for (part, at, n) in src.spans(offset, len) {
                let to = part.first + at - offset;
                encoder.copy_buffer_to_buffer(&part.buffer, at, &rb.buffer, to, n);
            }
            let slot = mapped.clone();
            // Mapped by whichever thread submits, right after the submission.
            encoder
                .map_buffer_on_submit(&rb.buffer, wgpu::MapMode::Read, ..len, move |r| slot.put(r));
            self.flush(&mut pending)?
        };
        rb.flight = Some(Flight {
            len,
            receipt,
            mapped,
        });
        Ok(())
    }

    /// Whether the readback's mapping has completed (polls without waiting).
    pub(super) fn read_ready(&self, rb: &WgpuReadback) -> Result<bool, DeviceError> {
        let Some(flight) = &rb.flight else {
            return Ok(true);
        };
        if flight.mapped.is_set() {
            return Ok(true);
        }
        // Not submitted yet, or (on a software adapter) being run by the submission: not done.
        // Asking wgpu would only wait for that submission to return.
        if let Some(r) = &flight.receipt
            && !self.submitter.has_submitted(r.seq)
        {
            return Ok(false);
        }
        self.device
            .poll(wgpu::PollType::Poll)
            .map_err(backend_error)?;
        Ok(flight.mapped.is_set())
    }

    /// Waits for the readback's submission, then copies its bytes into `dst` (or drops them)
    /// and unmaps it. After a failure the buffer is replaced, so the next read starts clean.
    pub(super) fn end_read(
        &self,
        rb: &mut WgpuReadback,
        dst: Option<&mut [u8]>,
    ) -> Result<(), DeviceError> {
        let started = rb.flight.as_ref().map(|f| f.len);
        if let Some(dst) = &dst {
            crate::device::check_finish_read(started, dst.len())?;
        }
        let Some(flight) = rb.flight.take() else {
            return Ok(());
        };
        let result = self.land(&rb.buffer, &flight, dst);
        if result.is_err() {
            *rb = self.new_readback(rb.capacity)?;
        }
        result.map_err(|e| self.take_errors().err().unwrap_or(e))
    }

    fn land(
        &self,
        buffer: &wgpu::Buffer,
        flight: &Flight,
        dst: Option<&mut [u8]>,
    ) -> Result<(), DeviceError> {
        if !flight.mapped.is_set() {
            let index = match &flight.receipt {
                Some(r) => r.index()?,
                None => None,
            };
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: index,
                    timeout: None,
                })
                .map_err(backend_error)?;
        }
        self.take_errors()?;
        let started = std::time::Instant::now();
        let mapped = loop {
            if let Some(r) = flight.mapped.take(CALLBACK_WAIT) {
                break r;
            }
            if started.elapsed() > CALLBACK_LIMIT {
                return Err(backend_error("a readback's map callback never ran"));
            }
            self.device
                .poll(wgpu::PollType::Poll)
                .map_err(backend_error)?;
        };
        mapped.map_err(backend_error)?;
        if flight.len == 0 {
            return Ok(());
        }
        if let Some(dst) = dst {
            let view = buffer
                .slice(..flight.len)
                .get_mapped_range()
                .map_err(backend_error)?;
            dst.copy_from_slice(&view);
        }
        buffer.unmap();
        Ok(())
    }
}
