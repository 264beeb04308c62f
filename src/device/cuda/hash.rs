//! Host side of `kernels/hash_encode.cu`: one thread per (id, column pair), the shape's words
//! in the order of its C signature.

use super::launch::{Word::*, Work};
use super::{CudaBuffer, CudaDevice};
use crate::device::{DeviceError, HashEncode, KernelId};

pub(super) fn hash_encode(
    dev: &CudaDevice,
    a: &HashEncode<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let s = &a.shape;
    let work = Work::Threads(s.batch as u64 * s.pairs() as u64);
    let [batch, k, m, p, transform, _] = s.words();
    let words = [
        U32(batch),
        U32(k),
        U32(m),
        U32(p),
        U32(transform),
        F32(s.scale()),
    ];
    dev.launch(
        KernelId::HashEncode,
        work,
        &[a.ids, a.coeffs, a.out],
        &words,
    )
}
