//! Downloads: device buffer → staging buffer → host, one chunk at a time.
//!
//! Each download takes a staging buffer of its own from a pool (made when none is free), so
//! callers on different threads (the device step's loss, the write-back stage's victims) never
//! share one, and no lock is held while waiting for the device. A staging buffer whose download
//! failed is not returned to the pool: it may still be mapped or waiting to be, and a later
//! download must not inherit that.

use super::{WgpuDevice, backend_error, lock};
use crate::device::DeviceError;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

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
        self.stats.buffers.fetch_add(1, Ordering::Relaxed);
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
        let index = {
            let mut pending = lock(&self.pending);
            self.encoder(&mut pending.encoder)
                .copy_buffer_to_buffer(src, at, staging, 0, n);
            self.flush(&mut pending)
        }
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
