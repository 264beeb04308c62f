//! The WGSL kernels: sources embedded from `shaders/NAME.wgsl`, validated by naga (so a broken
//! shader is reported with its file name and naga's diagnostic, never a panic), compiled into one
//! compute pipeline each when the device is created.

use crate::device::DeviceError;
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

/// One WGSL kernel: its name is the shader's file name and the CPU function's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `shaders/bag_forward.wgsl`.
    BagForward,
    /// `shaders/bag_backward_sgd.wgsl`.
    BagBackwardSgd,
    /// `shaders/bag_backward_adagrad.wgsl`.
    BagBackwardAdagrad,
    /// `shaders/gemm.wgsl`.
    Gemm,
    /// `shaders/bias_act_forward.wgsl`.
    BiasActForward,
    /// `shaders/bias_act_backward.wgsl`.
    BiasActBackward,
    /// `shaders/interaction_forward.wgsl`.
    InteractionForward,
    /// `shaders/interaction_backward.wgsl`.
    InteractionBackward,
    /// `shaders/bce_loss.wgsl`.
    BceLoss,
    /// `shaders/dense_update.wgsl`.
    DenseUpdate,
    /// `shaders/dequantize_rows.wgsl`.
    DequantizeRows,
    /// `shaders/quantize_rows.wgsl`.
    QuantizeRows,
}

use Access::{Read as R, ReadWrite as W};

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 12] = [
        Kernel::BagForward,
        Kernel::BagBackwardSgd,
        Kernel::BagBackwardAdagrad,
        Kernel::Gemm,
        Kernel::BiasActForward,
        Kernel::BiasActBackward,
        Kernel::InteractionForward,
        Kernel::InteractionBackward,
        Kernel::BceLoss,
        Kernel::DenseUpdate,
        Kernel::DequantizeRows,
        Kernel::QuantizeRows,
    ];

    /// The kernel's name (shader file stem).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::BagForward => "bag_forward",
            Kernel::BagBackwardSgd => "bag_backward_sgd",
            Kernel::BagBackwardAdagrad => "bag_backward_adagrad",
            Kernel::Gemm => "gemm",
            Kernel::BiasActForward => "bias_act_forward",
            Kernel::BiasActBackward => "bias_act_backward",
            Kernel::InteractionForward => "interaction_forward",
            Kernel::InteractionBackward => "interaction_backward",
            Kernel::BceLoss => "bce_loss",
            Kernel::DenseUpdate => "dense_update",
            Kernel::DequantizeRows => "dequantize_rows",
            Kernel::QuantizeRows => "quantize_rows",
        }
    }

    /// The WGSL source, embedded at build time.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::BagForward => include_str!("../../../shaders/bag_forward.wgsl"),
            Kernel::BagBackwardSgd => include_str!("../../../shaders/bag_backward_sgd.wgsl"),
            Kernel::BagBackwardAdagrad => {
                include_str!("../../../shaders/bag_backward_adagrad.wgsl")
            }
            Kernel::Gemm => include_str!("../../../shaders/gemm.wgsl"),
            Kernel::BiasActForward => include_str!("../../../shaders/bias_act_forward.wgsl"),
            Kernel::BiasActBackward => include_str!("../../../shaders/bias_act_backward.wgsl"),
            Kernel::InteractionForward => include_str!("../../../shaders/interaction_forward.wgsl"),
            Kernel::InteractionBackward => {
                include_str!("../../../shaders/interaction_backward.wgsl")
            }
            Kernel::BceLoss => include_str!("../../../shaders/bce_loss.wgsl"),
            Kernel::DenseUpdate => include_str!("../../../shaders/dense_update.wgsl"),
            Kernel::DequantizeRows => include_str!("../../../shaders/dequantize_rows.wgsl"),
            Kernel::QuantizeRows => include_str!("../../../shaders/quantize_rows.wgsl"),
        }
    }

    /// Storage bindings 1, 2, … in order (binding 0 is the parameter uniform).
    pub fn storage(self) -> &'static [Access] {
        match self {
            Kernel::BagForward => &[R, R, R, W],
            Kernel::BagBackwardSgd => &[W, R, R, R, R, R],
            Kernel::BagBackwardAdagrad => &[W, R, R, R, R, R, W],
            Kernel::Gemm => &[R, R, W],
            Kernel::BiasActForward => &[W, R],
            Kernel::BiasActBackward => &[R, W, W],
            Kernel::InteractionForward => &[R, R, W],
            Kernel::InteractionBackward => &[R, R, R, W, W],
            Kernel::BceLoss => &[R, R, W, W],
            Kernel::DenseUpdate => &[W, R, W],
            Kernel::DequantizeRows => &[R, R, W, R, W],
            Kernel::QuantizeRows => &[R, R, R, W, R, W],
        }
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
    compiled: HashMap<Kernel, Compiled>,
}

impl Pipelines {
    /// Validates and compiles every kernel for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self, DeviceError> {
        let mut compiled = HashMap::new();
        for kernel in Kernel::ALL {
            compiled.insert(kernel, compile(device, kernel, kernel.source())?);
        }
        Ok(Pipelines { compiled })
    }

    /// The compiled `kernel`.
    pub fn get(&self, kernel: Kernel) -> &Compiled {
        // Every kernel was inserted by `new`.
        &self.compiled[&kernel]
    }
}

/// Compiles `source` as `kernel` (exposed so tests can feed a broken shader).
pub fn compile(
    device: &wgpu::Device,
    kernel: Kernel,
    source: &str,
) -> Result<Compiled, DeviceError> {
    let file = format!("shaders/{}.wgsl", kernel.name());
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
    for (i, access) in kernel.storage().iter().enumerate() {
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
