//! Device memory for the wgpu backend: a logical buffer made of one or more wgpu buffers
//! ("parts"), so tables larger than the adapter's `max_buffer_size` still fit; buffers made by
//! `alloc_rows` keep every row inside one part. Bind groups are cached per set of bindings and
//! dropped with the buffers they refer to.

use super::WgpuDevice;
use crate::device::{DeviceError, KernelId};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// One wgpu buffer holding bytes `first .. first + bytes` of a logical buffer.
pub struct Part {
    /// The wgpu buffer.
    pub buffer: wgpu::Buffer,
    /// Offset of its first byte in the logical buffer.
    pub first: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A buffer on a wgpu device (see the module docs). Not `Clone`: device memory has one owner.
pub struct WgpuBuffer {
    pub(super) id: u64,
    pub(super) parts: Vec<Part>,
    pub(super) bytes: u64,
    /// Row size when allocated with `alloc_rows` (parts then hold whole rows), else 0.
    pub(super) row_bytes: u64,
    pub(super) cache: Arc<BindGroupCache>,
}

impl WgpuBuffer {
    /// Frees the buffer's memory now, as a lost device would: later use is an error, never a
    /// panic. For tests of error paths.
    #[doc(hidden)]
    pub fn destroy(&self) {
        for p in &self.parts {
            p.buffer.destroy();
        }
    }

    /// A buffer without memory: a placeholder while a device is being built.
    pub(super) fn none(cache: &Arc<BindGroupCache>) -> Self {
        WgpuBuffer {
            id: 0,
            parts: Vec::new(),
            bytes: 0,
            row_bytes: 0,
            cache: cache.clone(),
        }
    }

    /// Checks that bytes `offset .. offset + len` lie inside the buffer, at 4-byte boundaries
    /// (wgpu copies whole words).
    pub(super) fn check(&self, op: &'static str, offset: u64, len: u64) -> Result<(), DeviceError> {
        if offset + len > self.bytes {
            return Err(DeviceError::OutOfBounds {
                op,
                offset,
                end: offset + len,
                len: self.bytes,
            });
        }
        if offset % 4 != 0 || len % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: op,
                message: format!("offset {offset} and length {len} must be multiples of 4 bytes"),
            });
        }
        Ok(())
    }

    /// The parts overlapping bytes `offset .. offset + len`, as (part, offset in part, length).
    pub(super) fn spans(&self, offset: u64, len: u64) -> Vec<(&Part, u64, u64)> {
        let end = offset + len;
        self.parts
            .iter()
            .filter(|p| p.first < end && offset < p.first + p.bytes)
            .map(|p| {
                let a = offset.max(p.first);
                let b = end.min(p.first + p.bytes);
                (p, a - p.first, b - a)
            })
            .collect()
    }
}

impl Drop for WgpuBuffer {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

/// A storage binding: a byte range of one part of a buffer.
#[derive(Clone, Copy)]
pub struct Bind<'a> {
    /// The logical buffer.
    pub buffer: &'a WgpuBuffer,
    /// Which part.
    pub part: usize,
    /// Byte offset inside the part (a multiple of the adapter's storage offset alignment).
    pub offset: u64,
    /// Bytes bound.
    pub size: u64,
}

type Key = (KernelId, Vec<(u64, usize, u64, u64)>);

/// Bind groups by (kernel, bindings), so steady-state training creates none.
#[derive(Default)]
pub struct BindGroupCache {
    groups: Mutex<HashMap<Key, wgpu::BindGroup>>,
}

/// Above this many cached groups the cache is cleared (they are cheap to rebuild).
const MAX_GROUPS: usize = 4096;

impl BindGroupCache {
    /// The bind group for `binds` (storage bindings 1…), creating it on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: KernelId,
        layout: &wgpu::BindGroupLayout,
        params: &wgpu::Buffer,
        param_bytes: u64,
        binds: &[Bind<'_>],
    ) -> wgpu::BindGroup {
        let key: Key = (
            kernel,
            binds
                .iter()
                .map(|b| (b.buffer.id, b.part, b.offset, b.size))
                .collect(),
        );
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = groups.get(&key) {
            return g.clone();
        }
        if groups.len() >= MAX_GROUPS {
            groups.clear();
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: 0,
                size: std::num::NonZeroU64::new(param_bytes),
            }),
        }];
        for (i, b) in binds.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer.parts[b.part].buffer,
                    offset: b.offset,
                    size: std::num::NonZeroU64::new(b.size),
                }),
            });
        }
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout,
            entries: &entries,
        });
        groups.insert(key, group.clone());
        group
    }

    /// Drops every group that binds buffer `id` (called when the buffer is dropped).
    pub fn forget(&self, id: u64) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|(_, binds), _| binds.iter().all(|b| b.0 != id));
    }
}

/// The sizes of the parts holding `count` units of `unit` bytes, at most `per_part` units to a
/// part: full parts, then the rest (one empty part when there is nothing).
pub(super) fn part_sizes(count: u64, unit: u64, per_part: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut left = count;
    while left > per_part {
        sizes.push(per_part * unit);
        left -= per_part;
    }
    sizes.push(left * unit);
    sizes
}

impl WgpuDevice {
    fn new_buffer(&self, bytes: u64) -> Result<wgpu::Buffer, DeviceError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(DeviceError::OutOfMemory {
                requested: bytes,
                device: self.info.name.clone(),
                reason: e.to_string(),
            });
        }
        Ok(buffer)
    }

    /// Builds a logical buffer from parts of the given sizes.
    pub(super) fn buffer_of(
        &self,
        sizes: &[u64],
        row_bytes: u64,
    ) -> Result<WgpuBuffer, DeviceError> {
        let mut parts = Vec::with_capacity(sizes.len());
        let mut first = 0;
        for &bytes in sizes {
            self.created.fetch_add(1, Ordering::Relaxed);
            parts.push(Part {
                buffer: self.new_buffer(bytes)?,
                first,
                bytes,
            });
            first += bytes;
        }
        Ok(WgpuBuffer {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            parts,
            bytes: first,
            row_bytes,
            cache: self.cache.clone(),
        })
    }
}
