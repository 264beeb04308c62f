//! The WGSL backend through wgpu (Vulkan, Metal, DX12, GL; here also Mesa's lavapipe).
//!
//! A context is created once per device: adapter, device and queue with the adapter's real
//! limits, one compute pipeline per kernel (`shaders/NAME.wgsl`, validated by naga), a ring of
//! parameter slots in one uniform buffer, a staging buffer for downloads and a bind-group cache.
//! Nothing is compiled or allocated per step.
//!
//! **Ordering.** Kernel launches are recorded into one pending command encoder and submitted
//! when the host needs the queue to have caught up: before an upload (`queue.write_buffer`
//! lands before the next submission, so earlier kernels must be submitted first), for a
//! download or `synchronize`, and when the parameter ring wraps. wgpu orders submissions, so
//! launches run in call order.
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
pub mod pipelines;
pub mod probe;
mod quantize;
mod window;

pub use buffer::WgpuBuffer;
pub use probe::AdapterReport;

use super::{BackendKind, Device, DeviceError, DeviceInfo, KernelId};
use buffer::{Bind, BindGroupCache, part_sizes};
use pipelines::{PARAM_SLOT_BYTES, Pipelines};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

/// Parameter slots per submission before the ring wraps (and forces a submission).
const PARAM_SLOTS: u64 = 1024;
/// Bytes moved per download round trip.
const STAGING_BYTES: u64 = 16 << 20;
/// Bytes per `queue.write_buffer` call for large uploads.
const UPLOAD_CHUNK: u64 = 64 << 20;

/// Overrides of the adapter's limits, to exercise splitting on small data in tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct WgpuOptions {
    /// Use at most this many bytes per storage binding.
    pub max_binding_bytes: Option<u64>,
    /// Use at most this many bytes per wgpu buffer.
    pub max_buffer_bytes: Option<u64>,
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
}

/// A wgpu device ready to run rowflow's kernels.
pub struct WgpuDevice {
    info: DeviceInfo,
    adapter: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: Limits,
    pipelines: Pipelines,
    params: wgpu::Buffer,
    /// Stand-ins for optional bindings (two, so a read and a read-write slot never share one).
    dummy: [WgpuBuffer; 2],
    staging: Mutex<wgpu::Buffer>,
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
        let pipelines = Pipelines::new(&device)?;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel parameters"),
            size: PARAM_SLOTS * PARAM_SLOT_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download staging"),
            size: STAGING_BYTES,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let cache = Arc::new(BindGroupCache::default());
        let name = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
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
            queue,
            limits,
            pipelines,
            params,
            staging: Mutex::new(staging),
            pending: Mutex::new(Pending {
                encoder: None,
                next_slot: 0,
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

    /// Submits the pending encoder, if any.
    fn flush(&self, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            self.queue.submit([encoder.finish()]);
        }
        pending.next_slot = 0;
    }

    /// The pending command encoder, started if there is none.
    fn encoder<'p>(&self, pending: &'p mut Pending) -> &'p mut wgpu::CommandEncoder {
        pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("rowflow"),
                })
        })
    }

    fn wait(&self) -> Result<(), DeviceError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(backend_error)?;
        self.take_errors()
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
            self.flush(&mut pending);
        }
        let slot = pending.next_slot;
        pending.next_slot += 1;
        self.queue.write_buffer(
            &self.params,
            slot * PARAM_SLOT_BYTES,
            bytemuck::cast_slice(params),
        );
        let encoder = self.encoder(&mut pending);
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
        if bytes % 4 != 0 {
            return Err(DeviceError::InvalidArgument {
                kernel: "alloc",
                message: format!("{bytes} bytes is not a multiple of 4"),
            });
        }
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
        let mut pending = lock(&self.pending);
        self.flush(&mut pending);
        for (part, at, len) in dst.spans(offset, src.len() as u64) {
            let from = (part.first + at - offset) as usize;
            let mut done = 0;
            while done < len {
                let n = (len - done).min(UPLOAD_CHUNK);
                let a = from + done as usize;
                self.queue
                    .write_buffer(&part.buffer, at + done, &src[a..a + n as usize]);
                done += n;
            }
        }
        Ok(())
    }

    fn download(&self, src: &WgpuBuffer, offset: u64, dst: &mut [u8]) -> Result<(), DeviceError> {
        src.check("download", offset, dst.len() as u64)?;
        let staging = lock(&self.staging);
        {
            let mut pending = lock(&self.pending);
            self.flush(&mut pending);
        }
        for (part, at, len) in src.spans(offset, dst.len() as u64) {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(STAGING_BYTES);
                let mut encoder = self.device.create_command_encoder(&Default::default());
                encoder.copy_buffer_to_buffer(&part.buffer, at + done, &staging, 0, n);
                self.queue.submit([encoder.finish()]);
                let (tx, rx) = std::sync::mpsc::channel();
                staging.slice(..n).map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
                self.wait()?;
                let mapped = rx
                    .recv()
                    .map_err(|_| backend_error("the download's map callback never ran"))?;
                mapped.map_err(backend_error)?;
                let from = (part.first + at + done - offset) as usize;
                {
                    let view = staging
                        .slice(..n)
                        .get_mapped_range()
                        .map_err(backend_error)?;
                    dst[from..from + n as usize].copy_from_slice(&view);
                }
                staging.unmap();
                done += n;
            }
        }
        Ok(())
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
        let encoder = self.encoder(&mut pending);
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
        {
            let mut pending = lock(&self.pending);
            self.flush(&mut pending);
        }
        self.wait()
    }

    super::forward_kernels!(embedding: embedding, dense: dense, quantize: quantize);
}
