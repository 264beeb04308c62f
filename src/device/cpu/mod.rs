//! The CPU reference backend: plain loops, rayon where it pays, `matrixmultiply` for GEMM.
//!
//! It is the oracle of the parity tests, so every kernel is written for clarity first and is
//! deterministic: each output element is computed by one worker in a fixed order, whatever the
//! thread count. Launches run synchronously in the caller's thread (ordered by construction).
//!
//! The kernels are free functions over slices, named like the shaders (`bag_forward` …), so they
//! can be tested directly; [`CpuDevice`] locks its buffers and calls them.

mod dense;
mod embedding;
mod gemm;
mod quantize;
mod simd;

pub use dense::{
    bce_loss, bias_act_backward, bias_act_forward, dense_update, interaction_backward,
    interaction_forward,
};
pub use embedding::{bag_backward_adagrad, bag_backward_sgd, bag_forward};
pub use gemm::gemm;
pub use quantize::{dequantize_rows, quantize_rows};

use super::kernels::distinct;
use super::{
    BackendKind, BagBackward, BagForward, BceLoss, BiasActBackward, BiasActForward, DenseUpdate,
    DequantizeRows, Device, DeviceError, DeviceInfo, Gemm, InteractionBackward, InteractionForward,
    QuantizeRows,
};
use crate::hostmem::{HugeSlice, try_zeroed_slice};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Host memory standing in for device memory: 32-bit words behind a lock, so kernels can take
/// `&Buffer` like on a GPU while Rust still sees exclusive access for writes. Large buffers sit
/// on huge pages (embedding tables are read at random).
pub struct CpuBuffer {
    words: RwLock<HugeSlice<u32>>,
    /// The device's count of live bytes, decremented when the buffer is dropped.
    live: Arc<AtomicU64>,
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let bytes = 4 * self.read().len() as u64;
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl CpuBuffer {
    fn read(&self) -> RwLockReadGuard<'_, HugeSlice<u32>> {
        // A poisoned lock only means a panic elsewhere; the words are still valid memory.
        self.words.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, HugeSlice<u32>> {
        self.words.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The CPU backend.
pub struct CpuDevice {
    info: DeviceInfo,
    live: Arc<AtomicU64>,
}

impl CpuDevice {
    /// Creates the backend on rayon's global thread pool.
    pub fn new() -> Self {
        CpuDevice {
            info: DeviceInfo {
                backend: BackendKind::Cpu,
                name: cpu_name(),
                parallelism: rayon::current_num_threads(),
                max_buffer_bytes: isize::MAX as u64,
            },
            live: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes of all buffers of this device alive now (their allocated capacity).
    pub fn allocated_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// One line for `rowflow info`: the processor and thread count.
    pub fn describe() -> String {
        format!("{} ({} threads)", cpu_name(), rayon::current_num_threads())
    }
}

impl Default for CpuDevice {
    fn default() -> Self {
        Self::new()
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn f32s(words: &[u32]) -> &[f32] {
    bytemuck::cast_slice(words)
}

fn f32s_mut(words: &mut [u32]) -> &mut [f32] {
    bytemuck::cast_slice_mut(words)
}

fn range(
    op: &'static str,
    buffer: &CpuBuffer,
    offset: u64,
    len: usize,
) -> Result<(usize, usize), DeviceError> {
    let size = 4 * buffer.read().len() as u64;
    let end = offset + len as u64;
    if end > size {
        return Err(DeviceError::OutOfBounds {
            op,
            offset,
            end,
            len: size,
        });
    }
    Ok((offset as usize, end as usize))
}

impl Device for CpuDevice {
    type Buffer = CpuBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&self, bytes: u64) -> Result<CpuBuffer, DeviceError> {
        let oom = |reason: String| DeviceError::OutOfMemory {
            requested: bytes,
            device: self.info.name.clone(),
            reason,
        };
        if bytes % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: "alloc",
                message: format!("{bytes} bytes is not a multiple of 4"),
            });
        }
        let words =
            usize::try_from(bytes / 4).map_err(|_| oom("larger than the address space".into()))?;
        let v = try_zeroed_slice::<u32>(words)
            .ok_or_else(|| oom("the host allocator refused".into()))?;
        self.live.fetch_add(4 * v.len() as u64, Ordering::Relaxed);
        Ok(CpuBuffer {
            words: RwLock::new(v),
            live: self.live.clone(),
        })
    }

    fn buffer_bytes(&self, buffer: &CpuBuffer) -> u64 {
        4 * buffer.read().len() as u64
    }

    fn upload(&self, dst: &CpuBuffer, offset: u64, src: &[u8]) -> Result<(), DeviceError> {
        let (a, b) = range("upload", dst, offset, src.len())?;
        let mut words = dst.write();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words[..]);
        bytes[a..b].copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &CpuBuffer, offset: u64, dst: &mut [u8]) -> Result<(), DeviceError> {
        let (a, b) = range("download", src, offset, dst.len())?;
        let words = src.read();
        let bytes: &[u8] = bytemuck::cast_slice(&words[..]);
        dst.copy_from_slice(&bytes[a..b]);
        Ok(())
    }

    fn copy_buffer(
        &self,
        src: &CpuBuffer,
        src_offset: u64,
        dst: &CpuBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), DeviceError> {
        distinct("copy_buffer", dst, &[src])?;
        if bytes % 4 != 0 || src_offset % 4 != 0 || dst_offset % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: "copy_buffer",
                message: format!(
                    "offsets {src_offset}, {dst_offset} and size {bytes} must be multiples of 4"
                ),
            });
        }
        let (a, b) = range("copy_buffer", src, src_offset, bytes as usize)?;
        let (c, d) = range("copy_buffer", dst, dst_offset, bytes as usize)?;
        let from = src.read();
        let mut to = dst.write();
        // Large blocks per task: a plain streaming copy on every core.
        to[c / 4..d / 4]
            .par_chunks_mut(1 << 16)
            .zip(from[a / 4..b / 4].par_chunks(1 << 16))
            .for_each(|(o, i)| o.copy_from_slice(i));
        Ok(())
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn bag_forward(&self, a: &BagForward<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let (table, indices, offsets) = (a.table.read(), a.indices.read(), a.offsets.read());
        let mut out = a.out.write();
        bag_forward(
            f32s(&table),
            a.rows,
            a.dim as usize,
            &indices,
            &offsets[..a.bags as usize + 1],
            a.pooling,
            f32s_mut(&mut out),
            a.out_stride as usize,
            a.out_offset as usize,
        )
    }

    fn bag_backward_sgd(&self, a: &BagBackward<'_, CpuBuffer>) -> Result<(), DeviceError> {
        const K: &str = "bag_backward_sgd";
        a.validate(K, None, |b| self.buffer_bytes(b))?;
        let m = &a.map;
        let (rows, starts, bags) = (m.unique_rows.read(), m.row_starts.read(), m.bag_ids.read());
        let (offsets, grad) = (a.offsets.read(), a.grad.read());
        let mut table = a.table.write();
        let u = m.unique as usize;
        bag_backward_sgd(
            f32s_mut(&mut table),
            a.rows,
            a.dim as usize,
            &rows[..u],
            &starts[..u + 1],
            &bags,
            &offsets[..a.bags as usize + 1],
            a.pooling,
            f32s(&grad),
            a.grad_stride as usize,
            a.grad_offset as usize,
            a.lr,
        )
    }

    fn bag_backward_adagrad(
        &self,
        a: &BagBackward<'_, CpuBuffer>,
        state: &CpuBuffer,
        eps: f32,
    ) -> Result<(), DeviceError> {
        const K: &str = "bag_backward_adagrad";
        a.validate(K, Some(state), |b| self.buffer_bytes(b))?;
        let m = &a.map;
        let (rows, starts, bags) = (m.unique_rows.read(), m.row_starts.read(), m.bag_ids.read());
        let (offsets, grad) = (a.offsets.read(), a.grad.read());
        let (mut table, mut st) = (a.table.write(), state.write());
        let u = m.unique as usize;
        bag_backward_adagrad(
            f32s_mut(&mut table),
            f32s_mut(&mut st),
            a.rows,
            a.dim as usize,
            &rows[..u],
            &starts[..u + 1],
            &bags,
            &offsets[..a.bags as usize + 1],
            a.pooling,
            f32s(&grad),
            a.grad_stride as usize,
            a.grad_offset as usize,
            a.lr,
            eps,
        )
    }

    fn dequantize_rows(&self, a: &DequantizeRows<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let n = a.rows as usize;
        let (packed, slots) = (a.packed.read(), a.slots.read());
        let mut cache = a.cache.write();
        let (d, p) = (a.dim as usize, a.precision);
        let packed = &packed[..n * p.row_words(d)];
        match &a.state {
            Some(st) => {
                let staged = st.staged.read();
                let mut cs = st.cache_state.write();
                let state = Some((&f32s(&staged)[..n], f32s_mut(&mut cs)));
                dequantize_rows(
                    packed,
                    &slots[..n],
                    d,
                    p,
                    f32s_mut(&mut cache),
                    a.cache_rows,
                    state,
                )
            }
            None => dequantize_rows(
                packed,
                &slots[..n],
                d,
                p,
                f32s_mut(&mut cache),
                a.cache_rows,
                None,
            ),
        }
    }

    fn quantize_rows(&self, a: &QuantizeRows<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let n = a.rows as usize;
        let (cache, slots, ids) = (a.cache.read(), a.slots.read(), a.row_ids.read());
        let mut packed = a.packed.write();
        let (d, p) = (a.dim as usize, a.precision);
        let mut run = |state| {
            quantize_rows(
                f32s(&cache),
                a.cache_rows,
                &slots[..n],
                &ids[..n],
                d,
                p,
                a.rounding,
                a.seed,
                a.step,
                &mut packed[..],
                state,
            )
        };
        match &a.state {
            Some(st) => {
                let cs = st.cache_state.read();
                let mut staged = st.staged.write();
                run(Some((f32s(&cs), &mut f32s_mut(&mut staged)[..n])))
            }
            None => run(None),
        }
    }

    fn gemm(&self, a: &Gemm<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let (x, y) = (a.a.read(), a.b.read());
        let mut c = a.c.write();
        let (m, n, k) = (a.m as usize, a.n as usize, a.k as usize);
        gemm(
            f32s(&x),
            f32s(&y),
            &mut f32s_mut(&mut c)[..m * n],
            m,
            n,
            k,
            a.trans_a,
            a.trans_b,
            a.alpha,
            a.beta,
        )
    }

    fn bias_act_forward(&self, a: &BiasActForward<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let bias = a.bias.read();
        let mut x = a.x.write();
        let (r, c) = (a.rows as usize, a.cols as usize);
        bias_act_forward(&mut f32s_mut(&mut x)[..r * c], &f32s(&bias)[..c], a.act);
        Ok(())
    }

    fn bias_act_backward(&self, a: &BiasActBackward<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let y = a.y.read();
        let (mut dy, mut db) = (a.dy.write(), a.dbias.write());
        let (r, c) = (a.rows as usize, a.cols as usize);
        bias_act_backward(
            &f32s(&y)[..r * c],
            &mut f32s_mut(&mut dy)[..r * c],
            &mut f32s_mut(&mut db)[..c],
            a.act,
        );
        Ok(())
    }

    fn interaction_forward(
        &self,
        a: &InteractionForward<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let (dense, emb) = (a.dense.read(), a.emb.read());
        let mut out = a.out.write();
        interaction_forward(
            f32s(&dense),
            f32s(&emb),
            f32s_mut(&mut out),
            a.batch as usize,
            a.tables as usize,
            a.dim as usize,
        );
        Ok(())
    }

    fn interaction_backward(
        &self,
        a: &InteractionBackward<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let (dense, emb, dout) = (a.dense.read(), a.emb.read(), a.dout.read());
        let (mut dd, mut de) = (a.ddense.write(), a.demb.write());
        interaction_backward(
            f32s(&dense),
            f32s(&emb),
            f32s(&dout),
            f32s_mut(&mut dd),
            f32s_mut(&mut de),
            a.batch as usize,
            a.tables as usize,
            a.dim as usize,
        );
        Ok(())
    }

    fn bce_loss(&self, a: &BceLoss<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let (z, y) = (a.logits.read(), a.labels.read());
        let (mut loss, mut dz) = (a.loss.write(), a.dlogits.write());
        let n = a.batch as usize;
        bce_loss(
            &f32s(&z)[..n],
            &f32s(&y)[..n],
            &mut f32s_mut(&mut loss)[..n],
            &mut f32s_mut(&mut dz)[..n],
            a.scale,
        );
        Ok(())
    }

    fn dense_update(&self, a: &DenseUpdate<'_, CpuBuffer>) -> Result<(), DeviceError> {
        a.validate(|b| self.buffer_bytes(b))?;
        let n = a.len as usize;
        let grad = a.grad.read();
        let mut param = a.param.write();
        match a.state {
            Some(s) => {
                let mut st = s.write();
                dense_update(
                    &mut f32s_mut(&mut param)[..n],
                    &f32s(&grad)[..n],
                    Some(&mut f32s_mut(&mut st)[..n]),
                    a.lr,
                    a.optimizer,
                    a.eps,
                )
            }
            None => dense_update(
                &mut f32s_mut(&mut param)[..n],
                &f32s(&grad)[..n],
                None,
                a.lr,
                a.optimizer,
                a.eps,
            ),
        }
    }
}
