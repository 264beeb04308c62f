//! Backend selection: `--backend auto` picks CUDA if a device is found, else a hardware wgpu
//! adapter, else the CPU, and says why each skipped backend was skipped.

use super::DeviceError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A concrete backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The CPU reference backend (always present).
    Cpu,
    /// WGSL compute shaders through wgpu.
    Wgpu,
    /// CUDA through cudarc and NVRTC.
    Cuda,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        })
    }
}

/// What the user asked for (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
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

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}

/// Whether one backend can be used here, and why (not).
#[derive(Clone, Debug, Serialize)]
pub struct BackendReport {
    /// The backend.
    pub backend: BackendKind,
    /// Usable on this machine.
    pub available: bool,
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
    vec![
        BackendReport {
            backend: BackendKind::Cuda,
            available: false,
            detail: DeviceError::NotCompiled(BackendKind::Cuda).to_string(),
        },
        BackendReport {
            backend: BackendKind::Wgpu,
            available: false,
            detail: DeviceError::NotCompiled(BackendKind::Wgpu).to_string(),
        },
        BackendReport {
            backend: BackendKind::Cpu,
            available: true,
            detail: super::cpu::CpuDevice::describe(),
        },
    ]
}

/// Resolves `--backend` to a concrete backend, or says why the requested one cannot be used.
pub fn select_backend(choice: BackendChoice) -> Result<Selection, DeviceError> {
    let reports = probe_backends();
    let report = |kind: BackendKind| {
        reports
            .iter()
            .find(|r| r.backend == kind)
            .cloned()
            .unwrap_or(BackendReport {
                backend: kind,
                available: false,
                detail: DeviceError::NotCompiled(kind).to_string(),
            })
    };
    let wanted = match choice {
        BackendChoice::Cpu => Some(BackendKind::Cpu),
        BackendChoice::Wgpu => Some(BackendKind::Wgpu),
        BackendChoice::Cuda => Some(BackendKind::Cuda),
        BackendChoice::Auto => None,
    };
    if let Some(kind) = wanted {
        let r = report(kind);
        if !r.available {
            return Err(match kind {
                BackendKind::Cpu => DeviceError::Unavailable {
                    backend: kind,
                    reason: r.detail,
                },
                _ => DeviceError::NotCompiled(kind),
            });
        }
        return Ok(Selection {
            backend: kind,
            reasons: vec![format!("{kind}: requested; {}", r.detail)],
        });
    }
    let mut reasons = Vec::new();
    for r in &reports {
        if r.available {
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
