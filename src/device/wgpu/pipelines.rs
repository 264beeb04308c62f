//! The WGSL kernels: sources embedded from `shaders/NAME.wgsl` ([`KernelId::wgsl`]), validated
//! by naga (so a broken shader is reported with its file name and naga's diagnostic, never a
//! panic), compiled into one compute pipeline each when the device is created.

use crate::device::{DeviceError, KernelId};
use std::collections::HashMap;

/// Bytes per uniform slot: every kernel's parameters fit, and it is a multiple of every
/// adapter's `min_uniform_buffer_offset_alignment` (at most 256 in WebGPU).
pub const PARAM_SLOT_BYTES: u64 = 256;

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

use Access::{Read as R, ReadWrite as W};

/// The storage bindings of `kernel`'s shader, 1, 2, … in order (binding 0 is the parameter
/// uniform): what its bind-group layout declares.
pub fn storage(kernel: KernelId) -> &'static [Access] {
    match kernel {
        KernelId::BagForward => &[R, R, R, W],
        KernelId::BagBackwardSgd => &[W, R, R, R, R, R],
        KernelId::BagBackwardAdagrad => &[W, R, R, R, R, R, W],
        KernelId::Gemm => &[R, R, W],
        KernelId::BiasActForward => &[W, R],
        KernelId::BiasActBackward => &[R, W, W],
        KernelId::InteractionForward => &[R, R, W],
        KernelId::InteractionBackward => &[R, R, R, W, W],
        KernelId::BceLoss => &[R, R, W, W],
        KernelId::DenseUpdate => &[W, R, W],
        KernelId::DequantizeRows => &[R, R, W, R, W],
        KernelId::QuantizeRows => &[R, R, R, W, R, W],
        KernelId::HashEncode => &[R, R, W],
    }
}

/// Parses and validates WGSL with naga; errors name `file` and carry naga's diagnostic.
pub fn validate_wgsl(file: &str, source: &str) -> Result<naga::Module, DeviceError> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| DeviceError::ShaderCompile {
        shader: file.to_string(),
        message: e.emit_to_string_with_path(source, file),
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| DeviceError::ShaderCompile {
        shader: file.to_string(),
        message: e.emit_to_string_with_path(source, file),
    })?;
    Ok(module)
}

/// One compiled kernel: its pipeline and the layout of its bind group.
pub struct Compiled {
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Group 0's layout: the parameter uniform, then the storage bindings.
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel, compiled for one device.
pub struct Pipelines {
    compiled: HashMap<KernelId, Compiled>,
}

impl Pipelines {
    /// Validates and compiles every kernel for `device`, with `replaced`'s source instead of
    /// the embedded one for that kernel (tests of `rowflow check`).
    pub fn new(
        device: &wgpu::Device,
        replaced: Option<(KernelId, &str)>,
    ) -> Result<Self, DeviceError> {
        let mut compiled = HashMap::new();
        for kernel in KernelId::ALL {
            let source = match replaced {
                Some((k, source)) if k == kernel => source,
                _ => kernel.wgsl(),
            };
            compiled.insert(kernel, compile(device, kernel, source)?);
        }
        Ok(Pipelines { compiled })
    }

    /// The compiled `kernel`.
    pub fn get(&self, kernel: KernelId) -> &Compiled {
        // Every kernel was inserted by `new`.
        &self.compiled[&kernel]
    }
}

/// Compiles `source` as `kernel` (exposed so tests can feed a broken shader).
pub fn compile(
    device: &wgpu::Device,
    kernel: KernelId,
    source: &str,
) -> Result<Compiled, DeviceError> {
    let file = kernel.wgsl_file();
    validate_wgsl(&file, source)?;
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, access) in storage(kernel).iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: *access == Access::Read,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(kernel.name()),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(kernel.name()),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&file),
        source: wgpu::ShaderSource::Wgsl(std::borrow::Cow::Borrowed(source)),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel.name()),
        layout: Some(&pipeline_layout),
        module: &shader,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(DeviceError::ShaderCompile {
            shader: file,
            message: e.to_string(),
        });
    }
    Ok(Compiled { pipeline, layout })
}
