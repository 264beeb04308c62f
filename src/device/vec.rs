//! Device buffers for per-batch inputs that grow on demand.

use super::{Device, DeviceError, DeviceExt, Elem};

/// A device buffer of 32-bit elements that is reused batch after batch and reallocated only
/// when an upload does not fit, so steady-state training allocates nothing. It grows to what
/// the upload needs plus a quarter: few reallocations while a run warms up, and no more memory
/// than the largest step needs (doubling would hold up to twice that for the whole run).
pub struct DeviceVec<D: Device> {
    buffer: D::Buffer,
    capacity: usize,
    len: usize,
}

impl<D: Device> DeviceVec<D> {
    /// A buffer with room for `capacity` elements.
    pub fn new(dev: &D, capacity: usize) -> Result<Self, DeviceError> {
        let capacity = capacity.max(1);
        Ok(DeviceVec {
            buffer: dev.alloc_elems(capacity)?,
            capacity,
            len: 0,
        })
    }

    /// Makes room for `len` elements (contents are lost when it grows).
    pub fn reserve(&mut self, dev: &D, len: usize) -> Result<(), DeviceError> {
        if len > self.capacity {
            let capacity = len + len / 4;
            self.buffer = dev.alloc_elems(capacity)?;
            self.capacity = capacity;
        }
        Ok(())
    }

    /// Replaces the contents with `data`.
    pub fn upload_elems<T: Elem>(&mut self, dev: &D, data: &[T]) -> Result<(), DeviceError> {
        self.reserve(dev, data.len())?;
        self.len = data.len();
        dev.upload_elems(&self.buffer, 0, data)
    }

    /// The device buffer.
    pub fn buffer(&self) -> &D::Buffer {
        &self.buffer
    }

    /// Elements uploaded last.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the last upload was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Allocated bytes.
    pub fn bytes(&self) -> u64 {
        4 * self.capacity as u64
    }
}
