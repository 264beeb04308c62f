//! Backend selection: `--backend auto` picks CUDA if a device is found, else a hardware wgpu
//! adapter, else the CPU, and says why each skipped backend was skipped.

use super::DeviceError;
use serde::{Deserialize, Serialize};

/// A concrete backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum BackendKind {
    /// The CPU reference backend (always present).
    Cpu,
    /// WGSL compute shaders through wgpu.
    Wgpu,
    /// CUDA through cudarc and NVRTC.
    Cuda,
}

named_enum! {
    /// What the user asked for (`--backend`).
    #[derive(Default)]
    pub enum BackendChoice as "lowercase" {
        /// The best backend present: CUDA, then a hardware wgpu adapter, then CPU.
        #[default]
        Auto,
        /// The CPU reference backend.
        Cpu,
        /// wgpu (Vulkan, Metal, DX12, GL).
        Wgpu,
        /// CUDA.
        Cuda,
    }
}

/// Whether one backend can be used here, and why (not).
#[derive(Clone, Debug, Serialize)]
pub struct BackendReport {
    /// The backend.
    pub backend: BackendKind,
    /// Usable on this machine.
    pub available: bool,
    /// Whether `--backend auto` may pick it (software GPU adapters are slower than the CPU
    /// backend, so `auto` skips them).
    pub auto_eligible: bool,
    /// The device it would use, or why it cannot be used.
    pub detail: String,
}

/// The outcome of [`select_backend`].
#[derive(Clone, Debug)]
pub struct Selection {
    /// The backend to use.
    pub backend: BackendKind,
    /// One line per backend considered: why it was picked or skipped.
    pub reasons: Vec<String>,
}

/// Probes every backend, in `auto`'s order of preference (CUDA, wgpu, CPU).
pub fn probe_backends() -> Vec<BackendReport> {
    let adapters = super::wgpu::probe::reports();
    let wgpu = match adapters.iter().find(|a| a.selected) {
        Some(a) if a.software => BackendReport {
            backend: BackendKind::Wgpu,
            available: true,
            auto_eligible: false,
            detail: format!(
                "{} ({}, software adapter): slower than the CPU backend, so used only when asked for with --backend wgpu",
                a.name, a.api
            ),
        },
        Some(a) => BackendReport {
            backend: BackendKind::Wgpu,
            available: true,
            auto_eligible: true,
            detail: format!("{} ({}, {})", a.name, a.api, a.device_type),
        },
        None => BackendReport {
            backend: BackendKind::Wgpu,
            available: false,
            auto_eligible: false,
            detail: super::wgpu::probe::choose(&[]).err().unwrap_or_default(),
        },
    };
    let wgpu = if adapters.is_empty() || wgpu.available {
        wgpu
    } else {
        // Adapters exist but WGPU_ADAPTER_NAME matches none of them.
        let instance = super::wgpu::probe::instance();
        let list = super::wgpu::probe::adapters(&instance);
        BackendReport {
            detail: super::wgpu::probe::choose(&list).err().unwrap_or_default(),
            ..wgpu
        }
    };
    let cuda = match super::cuda::CudaDevice::describe() {
        Ok(detail) => BackendReport {
            backend: BackendKind::Cuda,
            available: true,
            auto_eligible: true,
            detail,
        },
        Err(e) => BackendReport {
            backend: BackendKind::Cuda,
            available: false,
            auto_eligible: false,
            detail: match e {
                DeviceError::Unavailable { reason, .. } => reason,
                other => other.to_string(),
            },
        },
    };
    vec![
        cuda,
        wgpu,
        BackendReport {
            backend: BackendKind::Cpu,
            available: true,
            auto_eligible: true,
            detail: super::cpu::CpuDevice::describe(),
        },
    ]
}

/// Resolves `--backend` to a concrete backend, or says why the requested one cannot be used.
pub fn select_backend(choice: BackendChoice) -> Result<Selection, DeviceError> {
    // The CPU needs no probing (and probing GPU drivers has side effects worth avoiding).
    if choice == BackendChoice::Cpu {
        let detail = super::cpu::CpuDevice::describe();
        return Ok(Selection {
            backend: BackendKind::Cpu,
            reasons: vec![format!("cpu: requested; {detail}")],
        });
    }
    let reports = probe_backends();
    let report = |kind: BackendKind| reports.iter().find(|r| r.backend == kind).cloned();
    let wanted = match choice {
        BackendChoice::Cpu => Some(BackendKind::Cpu),
        BackendChoice::Wgpu => Some(BackendKind::Wgpu),
        BackendChoice::Cuda => Some(BackendKind::Cuda),
        BackendChoice::Auto => None,
    };
    if let Some(kind) = wanted {
        return match report(kind) {
            Some(r) if r.available => Ok(Selection {
                backend: kind,
                reasons: vec![format!("{kind}: requested; {}", r.detail)],
            }),
            Some(r) => Err(DeviceError::Unavailable {
                backend: kind,
                reason: r.detail,
            }),
            None => Err(DeviceError::NotCompiled(kind)),
        };
    }
    let mut reasons = Vec::new();
    for r in &reports {
        if r.available && r.auto_eligible {
            reasons.push(format!("{}: picked; {}", r.backend, r.detail));
            return Ok(Selection {
                backend: r.backend,
                reasons,
            });
        }
        reasons.push(format!("{}: skipped; {}", r.backend, r.detail));
    }
    Err(DeviceError::Unavailable {
        backend: BackendKind::Cpu,
        reason: format!("no backend is usable: {}", reasons.join("; ")),
    })
}
