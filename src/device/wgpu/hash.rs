//! Host side of `shaders/hash_encode.wgsl`: whole-buffer bindings, the shape's words as the
//! shader's `Params`, one invocation per (id, column pair).

use super::dense::launch_whole;
use super::{WgpuBuffer, WgpuDevice};
use crate::device::{DeviceError, HashEncode, KernelId};

pub(super) fn hash_encode(
    dev: &WgpuDevice,
    a: &HashEncode<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let s = &a.shape;
    let buffers = [("ids", a.ids), ("coeffs", a.coeffs), ("out", a.out)];
    let threads = s.batch as u64 * s.pairs() as u64;
    launch_whole(dev, KernelId::HashEncode, &buffers, threads, &s.words())
}
