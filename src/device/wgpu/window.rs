//! Binding buffers within the adapter's limits: a whole buffer, which must fit one storage
//! binding, or windows of whole rows over an embedding table or cache (and its per-row state)
//! that is larger than `max_storage_buffer_binding_size`, one kernel pass per window.

use super::buffer::Bind;
use super::{WgpuBuffer, WgpuDevice};
use crate::device::{DeviceError, KernelId};

/// A launch that does not fit (a bug of the caller's shapes, or a buffer above the adapter's
/// limits), reported for `kernel`.
pub(super) fn invalid(kernel: KernelId, message: String) -> DeviceError {
    DeviceError::InvalidArgument {
        kernel: kernel.name(),
        message,
    }
}

/// Binds a whole buffer, which must be one part within one binding.
pub(super) fn whole<'a>(
    dev: &WgpuDevice,
    kernel: KernelId,
    what: &str,
    b: &'a WgpuBuffer,
) -> Result<Bind<'a>, DeviceError> {
    if b.parts.len() != 1 || b.bytes > dev.limits.max_binding {
        return Err(invalid(
            kernel,
            format!(
                "`{what}` is {} bytes, above this adapter's max_storage_buffer_binding_size of {} \
                 bytes (only embedding tables are split into windows); use a smaller batch",
                b.bytes, dev.limits.max_binding
            ),
        ));
    }
    Ok(Bind {
        buffer: b,
        part: 0,
        offset: 0,
        size: b.parts[0].bytes.max(4),
    })
}

/// Binds every `(name, buffer)` whole, in order (see [`whole`]).
pub(super) fn wholes<'a>(
    dev: &WgpuDevice,
    kernel: KernelId,
    named: &[(&str, &'a WgpuBuffer)],
) -> Result<Vec<Bind<'a>>, DeviceError> {
    named
        .iter()
        .map(|&(what, b)| whole(dev, kernel, what, b))
        .collect()
}

/// A binding of whole rows `lo .. hi` of a row-major buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    part: usize,
    /// First row covered.
    pub lo: u64,
    /// One past the last row covered.
    pub hi: u64,
    offset: u64,
    size: u64,
    /// Word index of row `lo` inside the binding.
    pub base: u64,
}

impl Window {
    /// The window of a table without rows: it covers nothing and binds the first 4 bytes.
    pub const EMPTY: Window = Window {
        part: 0,
        lo: 0,
        hi: 0,
        offset: 0,
        size: 4,
        base: 0,
    };

    /// The binding of this window of `b`.
    pub fn bind(self, b: &WgpuBuffer) -> Bind<'_> {
        Bind {
            buffer: b,
            part: self.part,
            offset: self.offset,
            size: self.size.max(4),
        }
    }
}

/// The largest window of rows starting at row `r` (and ending by `hi`) that fits one part and
/// one binding of at most `max` bytes, its start aligned as storage bindings require.
fn window_at(
    dev: &WgpuDevice,
    kernel: KernelId,
    b: &WgpuBuffer,
    r: u64,
    hi: u64,
    row_bytes: u64,
    max: u64,
) -> Result<Window, DeviceError> {
    let start = r * row_bytes;
    let Some((part, p)) = b
        .parts
        .iter()
        .enumerate()
        .find(|(_, p)| p.first <= start && start < p.first + p.bytes.max(1))
    else {
        return Err(invalid(
            kernel,
            format!("row {r} is outside the {}-byte table", b.bytes),
        ));
    };
    if (b.parts.len() > 1 && b.row_bytes != row_bytes) || p.first % row_bytes != 0 {
        return Err(invalid(
            kernel,
            "the table was not allocated with alloc_rows for this row size".into(),
        ));
    }
    let part_hi = hi.min((p.first + p.bytes) / row_bytes);
    let align = dev.limits.binding_align;
    let offset = (start - p.first) / align * align;
    let fit = (p.first + offset + max) / row_bytes; // rows ending within the binding limit
    let end = part_hi.min(fit);
    if end <= r {
        return Err(invalid(
            kernel,
            format!(
                "one row of {row_bytes} bytes does not fit a binding of {max} bytes (max_storage_buffer_binding_size)"
            ),
        ));
    }
    Ok(Window {
        part,
        lo: r,
        hi: end,
        offset,
        size: end * row_bytes - p.first - offset,
        base: (start - p.first - offset) / 4,
    })
}

/// The windows over `rows` rows of `row_bytes` bytes of `table` and, when given, over the same
/// rows of `state` (one f32 per row), each pair narrowed so that both fit one binding: one kernel
/// pass per pair. All are found before the first pass, so a table that cannot be bound fails the
/// launch before any of it runs.
pub(super) fn row_windows(
    dev: &WgpuDevice,
    kernel: KernelId,
    table: &WgpuBuffer,
    state: Option<&WgpuBuffer>,
    rows: u64,
    row_bytes: u64,
) -> Result<Vec<(Window, Option<Window>)>, DeviceError> {
    let max = dev.limits.max_binding;
    let mut out = Vec::new();
    let mut r = 0;
    while r < rows {
        let mut w = window_at(dev, kernel, table, r, rows, row_bytes, max)?;
        let s = match state {
            Some(st) => {
                let s = window_at(dev, kernel, st, r, w.hi, 4, max)?;
                w = window_at(dev, kernel, table, r, s.hi, row_bytes, max)?;
                Some(s)
            }
            None => None,
        };
        r = w.hi;
        out.push((w, s));
    }
    Ok(out)
}
