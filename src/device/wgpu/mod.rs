//! The WGSL backend through wgpu (Vulkan, Metal, DX12, GL; here also Mesa's lavapipe).
//!
//! A context is created once per device: adapter, device and queue with the adapter's real
//! limits, one compute pipeline per kernel (`shaders/NAME.wgsl`, validated by naga), a ring of
//! parameter slots in one uniform buffer, a staging belt for uploads, a pool of staging buffers
//! for downloads (`readback.rs`) and a bind-group cache. Nothing is compiled or allocated per
//! step once training is steady ([`WgpuDevice::stats`] counts buffers and submissions).
//!
//! **Ordering.** Kernel launches and uploads are recorded, in call order, into one pending
//! command encoder (an upload is a copy from wgpu's `StagingBelt`, not a `queue.write_buffer`,
//! so it needs no submission first). The encoder is submitted in one batch when the host needs
//! the queue to have caught up (a download, `synchronize`), when the parameter ring wraps, and
//! when the staged upload bytes pass `UPLOAD_FLUSH` (so a big initial table upload does not
//! stage the whole table first). The launches' parameters are written to the ring once per
//! submission. Submitting is handed to a thread of its own (`submit.rs`), in order, so the
//! recording thread goes on with the next step while the queue takes this one (lavapipe runs
//! the work inside `queue.submit`).
//!
//! **Large buffers.** A buffer bigger than `max_buffer_size` is split into parts (whole rows
//! for `alloc_rows`, `buffer.rs`); an embedding table, cache or Adagrad state bigger than
//! `max_storage_buffer_binding_size` is bound in windows of whole rows, one pass per window
//! (`window.rs`). Other kernel arguments must fit one binding, or the launch fails with a
//! message naming the limit.
//!
//! **Launches.** `embedding.rs`, `dense.rs` and `quantize.rs` hold each kernel's host side:
//! bindings, parameter words (field by field as in the shader's `Params` struct) and dispatch
//! shape; all record through [`WgpuDevice`]'s one `launch`.
//!
//! **Errors.** wgpu's uncaptured errors (validation, device loss) are collected instead of
//! panicking and returned as [`DeviceError::Backend`] at the next download or synchronize.

mod buffer;
mod dense;
mod embedding;
mod hash;
pub mod pipelines;
pub mod probe;
mod quantize;
mod readback;
mod submit;
mod window;

pub use buffer::WgpuBuffer;
pub use probe::AdapterReport;
pub use readback::WgpuReadback;

use super::{BackendKind, Device, DeviceError, DeviceInfo, KernelId};
use buffer::{Bind, BindGroupCache, part_sizes};
use pipelines::{PARAM_SLOT_BYTES, Pipelines};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Parameter slots per submission before the ring wraps (and forces a submission).
const PARAM_SLOTS: u64 = 1024;
/// Bytes per staging-belt write (and the belt's chunk size).
const UPLOAD_CHUNK: u64 = 8 << 20;
/// Staged upload bytes after which the pending work is submitted.
const UPLOAD_FLUSH: u64 = 64 << 20;

/// Overrides of the adapter's limits, to exercise splitting on small data in tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct WgpuOptions {
    /// Use at most this many bytes per storage binding.
    pub max_binding_bytes: Option<u64>,
    /// Use at most this many bytes per wgpu buffer.
    pub max_buffer_bytes: Option<u64>,
    /// Compile this WGSL source for this kernel instead of its `shaders/NAME.wgsl` (a
    /// deliberately broken kernel, to show that `rowflow check` names it).
    pub replace_shader: Option<(KernelId, &'static str)>,
}

/// Limits the backend works within.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_binding: u64,
    max_buffer: u64,
    binding_align: u64,
    max_groups: u32,
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    next_slot: u64,
    /// The launches' parameter words since the last submission, one slot each.
    params: Vec<u8>,
    belt: wgpu::util::StagingBelt,
    staged: u64,
}

/// Buffers created and submissions made by a [`WgpuDevice`] so far (the staging belt's own
/// chunks, reused once the device has read them, are not counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgpuStats {
    /// Buffers created: allocations, download staging.
    pub buffers_created: u64,
    /// Command buffers submitted.
    pub submits: u64,
}

/// A wgpu device ready to run rowflow's kernels.
pub struct WgpuDevice {
    info: DeviceInfo,
    adapter: wgpu::AdapterInfo,
    device: wgpu::Device,
    limits: Limits,
    pipelines: Pipelines,
    params: wgpu::Buffer,
    /// Stand-ins for optional bindings (two, so a read and a read-write slot never share one).
    dummy: [WgpuBuffer; 2],
    staging: readback::StagingPool,
    /// Buffers created so far.
    created: AtomicU64,
    submitter: submit::Submitter,
    pending: Mutex<Pending>,
    cache: Arc<BindGroupCache>,
    errors: Arc<Mutex<Vec<String>>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failure that wgpu reported while running work.
fn backend_error(message: impl ToString) -> DeviceError {
    DeviceError::Backend {
        backend: BackendKind::Wgpu,
        message: message.to_string(),
    }
}

impl WgpuDevice {
    /// Opens the adapter chosen by [`probe::choose`] (honouring `WGPU_BACKEND`,
    /// `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`) with its real limits, and compiles every kernel.
    pub fn new() -> Result<Self, DeviceError> {
        Self::with_options(WgpuOptions::default())
    }

    /// [`WgpuDevice::new`] with limit overrides.
    pub fn with_options(options: WgpuOptions) -> Result<Self, DeviceError> {
        let unavailable = |reason: String| DeviceError::Unavailable {
            backend: BackendKind::Wgpu,
            reason,
        };
        let instance = probe::instance();
        let adapters = probe::adapters(&instance);
        let index = probe::choose(&adapters).map_err(unavailable)?;
        let adapter = &adapters[index];
        let info = adapter.get_info();
        let real = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rowflow"),
            required_features: wgpu::Features::empty(),
            required_limits: real.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| unavailable(format!("{}: cannot open the device: {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).push(e.to_string())
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            lock(&lost).push(format!("device lost ({reason:?}): {message}"))
        });
        let limits = Limits {
            max_binding: options
                .max_binding_bytes
                .unwrap_or(real.max_storage_buffer_binding_size)
                .min(real.max_storage_buffer_binding_size),
            max_buffer: options
                .max_buffer_bytes
                .unwrap_or(real.max_buffer_size)
                .min(real.max_buffer_size),
            binding_align: real.min_storage_buffer_offset_alignment as u64,
            max_groups: real.max_compute_workgroups_per_dimension,
        };
        if real.min_uniform_buffer_offset_alignment as u64 > PARAM_SLOT_BYTES {
            return Err(unavailable(format!(
                "{}: min_uniform_buffer_offset_alignment {} exceeds {PARAM_SLOT_BYTES}",
                info.name, real.min_uniform_buffer_offset_alignment
            )));
        }
        let pipelines = Pipelines::new(&device, options.replace_shader)?;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel parameters"),
            size: PARAM_SLOTS * PARAM_SLOT_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let belt = wgpu::util::StagingBelt::new(device.clone(), UPLOAD_CHUNK);
        let cache = Arc::new(BindGroupCache::default());
        let name = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
        let submitter = submit::Submitter::start(device.clone(), queue, params.clone())?;
        let mut dev = WgpuDevice {
            info: DeviceInfo {
                backend: BackendKind::Wgpu,
                name,
                parallelism: 0,
                max_buffer_bytes: limits.max_buffer,
            },
            adapter: info,
            // Placeholders until the device can allocate the real stand-ins, just below.
            dummy: [WgpuBuffer::none(&cache), WgpuBuffer::none(&cache)],
            device,
            limits,
            pipelines,
            params,
            staging: readback::StagingPool::default(),
            created: AtomicU64::new(0),
            submitter,
            pending: Mutex::new(Pending {
                encoder: None,
                next_slot: 0,
                params: Vec::with_capacity((PARAM_SLOTS * PARAM_SLOT_BYTES) as usize),
                belt,
                staged: 0,
            }),
            cache,
            errors,
            next_id: AtomicU64::new(1),
        };
        dev.dummy = [dev.alloc(16)?, dev.alloc(16)?];
        Ok(dev)
    }

    /// The adapter in use.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter
    }

    /// The underlying wgpu device (for compiling extra pipelines, e.g. in tests).
    pub fn raw_device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Whether the adapter is a software rasteriser (lavapipe, llvmpipe, WARP).
    pub fn is_software(&self) -> bool {
        self.adapter.device_type == wgpu::DeviceType::Cpu
    }

    fn take_errors(&self) -> Result<(), DeviceError> {
        let mut errors = lock(&self.errors);
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        Err(backend_error(message))
    }

    /// Buffers created and submissions made so far.
    pub fn stats(&self) -> WgpuStats {
        WgpuStats {
            buffers_created: self.created.load(Ordering::Relaxed),
            submits: self.submitter.progress.count.load(Ordering::Relaxed),
        }
    }

    /// The pending command encoder (`pending.encoder`), started if there is none.
    fn encoder<'e>(
        &self,
        slot: &'e mut Option<wgpu::CommandEncoder>,
    ) -> &'e mut wgpu::CommandEncoder {
        slot.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("rowflow"),
                })
        })
    }

    /// Records one dispatch of `kernel` with `params` (4-byte words) over `groups` workgroups
    /// (split over x and y when above the per-dimension limit), or the explicit 2-D grid.
    fn launch(
        &self,
        kernel: KernelId,
        params: &[u32],
        binds: &[Bind<'_>],
        grid: Grid,
    ) -> Result<(), DeviceError> {
        let (x, y) = match grid {
            Grid::Linear(0) | Grid::Tiles(0, _) | Grid::Tiles(_, 0) => return Ok(()),
            Grid::Linear(groups) => {
                let max = self.limits.max_groups as u64;
                if groups <= max {
                    (groups as u32, 1)
                } else {
                    (max as u32, groups.div_ceil(max) as u32)
                }
            }
            Grid::Tiles(x, y) => (x, y),
        };
        let compiled = self.pipelines.get(kernel);
        let group = self.cache.get(
            &self.device,
            kernel,
            &compiled.layout,
            &self.params,
            PARAM_SLOT_BYTES,
            binds,
        );
        let mut pending = lock(&self.pending);
        if pending.next_slot == PARAM_SLOTS {
            self.flush(&mut pending)?;
        }
        let slot = pending.next_slot;
        pending.next_slot += 1;
        let start = (slot * PARAM_SLOT_BYTES) as usize;
        pending.params.resize(start, 0);
        pending
            .params
            .extend_from_slice(bytemuck::cast_slice(params));
        pending.params.resize(start + PARAM_SLOT_BYTES as usize, 0);
        let encoder = self.encoder(&mut pending.encoder);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name()),
            timestamp_writes: None,
        });
        pass.set_pipeline(&compiled.pipeline);
        pass.set_bind_group(0, &group, &[(slot * PARAM_SLOT_BYTES) as u32]);
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }
}

/// Invocations per workgroup of the 1-D kernels.
const WG: u64 = 64;

/// The shape of a dispatch.
#[derive(Clone, Copy, Debug)]
enum Grid {
    /// This many workgroups, linearised by the shader.
    Linear(u64),
    /// An explicit x × y grid.
    Tiles(u32, u32),
}

impl Grid {
    /// One invocation per item, in workgroups of [`WG`].
    fn over(items: u64) -> Grid {
        Grid::Linear(items.div_ceil(WG))
    }
}

impl Device for WgpuDevice {
    type Buffer = WgpuBuffer;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&self, bytes: u64) -> Result<WgpuBuffer, DeviceError> {
        super::check_alloc(bytes)?;
        let part = (self.limits.max_buffer / 256 * 256).max(256);
        self.buffer_of(&part_sizes(bytes, 1, part), 0)
    }

    fn alloc_rows(&self, rows: u64, row_bytes: u64) -> Result<WgpuBuffer, DeviceError> {
        if row_bytes == 0 || row_bytes % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: "alloc_rows",
                message: format!("rows of {row_bytes} bytes: must be a positive multiple of 4"),
            });
        }
        let per_part = self.limits.max_buffer / row_bytes;
        if per_part == 0 {
            return Err(DeviceError::OutOfMemory {
                requested: row_bytes,
                device: self.info.name.clone(),
                reason: format!("one row exceeds max_buffer_size {}", self.limits.max_buffer),
            });
        }
        self.buffer_of(&part_sizes(rows, row_bytes, per_part), row_bytes)
    }

    fn buffer_bytes(&self, buffer: &WgpuBuffer) -> u64 {
        buffer.bytes
    }

    fn upload(&self, dst: &WgpuBuffer, offset: u64, src: &[u8]) -> Result<(), DeviceError> {
        dst.check("upload", offset, src.len() as u64)?;
        let mut guard = lock(&self.pending);
        let pending = &mut *guard;
        for (part, at, len) in dst.spans(offset, src.len() as u64) {
            let from = (part.first + at - offset) as usize;
            let mut done = 0;
            while done < len {
                let n = (len - done).min(UPLOAD_CHUNK);
                let a = from + done as usize;
                let size = wgpu::BufferSize::new(n).expect("spans are never empty");
                let encoder = self.encoder(&mut pending.encoder);
                pending
                    .belt
                    .write_buffer(encoder, &part.buffer, at + done, size)
                    .copy_from_slice(&src[a..a + n as usize]);
                pending.staged += n;
                done += n;
                if pending.staged >= UPLOAD_FLUSH {
                    self.flush(pending)?;
                }
            }
        }
        Ok(())
    }

    fn download(&self, src: &WgpuBuffer, offset: u64, dst: &mut [u8]) -> Result<(), DeviceError> {
        src.check("download", offset, dst.len() as u64)?;
        self.read(src, offset, dst)
    }

    fn copy_buffer(
        &self,
        src: &WgpuBuffer,
        src_offset: u64,
        dst: &WgpuBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), DeviceError> {
        super::kernels::distinct("copy_buffer", dst, &[src])?;
        src.check("copy_buffer", src_offset, bytes)?;
        dst.check("copy_buffer", dst_offset, bytes)?;
        let mut pending = lock(&self.pending);
        let encoder = self.encoder(&mut pending.encoder);
        for (sp, s_at, s_len) in src.spans(src_offset, bytes) {
            let logical = sp.first + s_at - src_offset; // offset within the copied range
            for (dp, d_at, d_len) in dst.spans(dst_offset + logical, s_len) {
                let moved = dp.first + d_at - (dst_offset + logical);
                encoder.copy_buffer_to_buffer(&sp.buffer, s_at + moved, &dp.buffer, d_at, d_len);
            }
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        self.submit_all()?;
        self.wait()
    }

    type Readback = WgpuReadback;

    fn alloc_readback(&self, bytes: u64) -> Result<WgpuReadback, DeviceError> {
        self.new_readback(bytes)
    }

    fn read_async(
        &self,
        src: &WgpuBuffer,
        offset: u64,
        len: u64,
        into: &mut WgpuReadback,
    ) -> Result<(), DeviceError> {
        self.start_read(src, offset, len, into)
    }

    fn readback_ready(&self, rb: &WgpuReadback) -> Result<bool, DeviceError> {
        self.read_ready(rb)
    }

    fn finish_read(&self, rb: &mut WgpuReadback, dst: &mut [u8]) -> Result<(), DeviceError> {
        self.end_read(rb, Some(dst))
    }

    super::forward_kernels!(
        embedding: embedding, dense: dense, quantize: quantize, hash: hash
    );
}
