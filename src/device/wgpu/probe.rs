//! Finding wgpu adapters: every adapter the drivers offer, and the one to use.
//!
//! Honours wgpu's environment variables: `WGPU_BACKEND` (which APIs to try: `vulkan`, `metal`,
//! `dx12`, `gl`), `WGPU_ADAPTER_NAME` (a case-insensitive substring of the adapter's name) and
//! `WGPU_POWER_PREF` (`high` / `low`).

use serde::Serialize;

/// One adapter, as `rowflow info` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    /// The adapter's name.
    pub name: String,
    /// The graphics API (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub api: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Whether it is a software rasteriser (device type `Cpu`, e.g. lavapipe).
    pub software: bool,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest storage binding, bytes (bigger tables are bound in windows).
    pub max_storage_buffer_binding_size: u64,
    /// Largest dispatch per dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Why rowflow cannot run on it (no compute shaders, limits too small), or `null`.
    pub problem: Option<String>,
    /// The adapter `--backend wgpu` would use.
    pub selected: bool,
}

/// Storage buffers the widest kernel binds in one stage.
pub const STORAGE_BUFFERS: u32 = 7;
/// Invocations per workgroup the widest kernel launches.
pub const INVOCATIONS: u32 = 256;

/// Why an adapter with these capabilities cannot run rowflow's kernels (`None`: it can). GL and
/// GLES adapters often lack compute shaders or enough storage buffers; without this check they
/// fail later, at pipeline creation, with a misleading shader error.
pub fn compute_problem(
    downlevel: &wgpu::DownlevelCapabilities,
    limits: &wgpu::Limits,
) -> Option<String> {
    if !downlevel
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    {
        return Some("no compute shaders".into());
    }
    let mut short = Vec::new();
    if limits.max_storage_buffers_per_shader_stage < STORAGE_BUFFERS {
        short.push(format!(
            "{} storage buffers per stage (needs {STORAGE_BUFFERS})",
            limits.max_storage_buffers_per_shader_stage
        ));
    }
    if limits.max_compute_invocations_per_workgroup < INVOCATIONS
        || limits.max_compute_workgroup_size_x < INVOCATIONS
    {
        short.push(format!(
            "{} invocations per workgroup (needs {INVOCATIONS})",
            limits
                .max_compute_invocations_per_workgroup
                .min(limits.max_compute_workgroup_size_x)
        ));
    }
    (!short.is_empty()).then(|| format!("limits too small: {}", short.join(", ")))
}

fn problem(a: &wgpu::Adapter) -> Option<String> {
    compute_problem(&a.get_downlevel_capabilities(), &a.limits())
}

/// Percent of the driver's memory budget past which buffer creation fails with out-of-memory
/// (Vulkan with `VK_EXT_memory_budget`, DX12). Without it an oversized cache is paged out of
/// device memory silently on WDDM and Metal, and training crawls instead of failing with a
/// message naming the size.
pub const MEMORY_BUDGET_PERCENT: u8 = 95;

/// A wgpu instance for the backends `WGPU_BACKEND` allows (all by default), without validation
/// layers or debug labels even in debug builds (they slow every call; `WGPU_VALIDATION=1` and
/// `WGPU_DEBUG=1` turn them on), and with [`MEMORY_BUDGET_PERCENT`].
pub fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.flags = wgpu::InstanceFlags::empty().with_env();
    desc.memory_budget_thresholds = wgpu::MemoryBudgetThresholds {
        for_resource_creation: Some(MEMORY_BUDGET_PERCENT),
        for_device_loss: None,
    };
    wgpu::Instance::new(desc)
}

/// Every adapter the instance's drivers offer.
pub fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

fn type_rank(t: wgpu::DeviceType, low_power: bool) -> u8 {
    use wgpu::DeviceType::*;
    match (t, low_power) {
        (DiscreteGpu, false) | (IntegratedGpu, true) => 0,
        (IntegratedGpu, false) | (DiscreteGpu, true) => 1,
        (VirtualGpu, _) => 2,
        (Other, _) => 3,
        (Cpu, _) => 4,
    }
}

/// The index of the adapter to use: the first whose name contains `WGPU_ADAPTER_NAME`, else the
/// best by device type (discrete first, or integrated first with `WGPU_POWER_PREF=low`) among
/// those that can run the kernels ([`compute_problem`]); `Err` says why none can.
pub fn choose(adapters: &[wgpu::Adapter]) -> Result<usize, String> {
    if adapters.is_empty() {
        return Err(
            "no wgpu adapter found (no Vulkan, Metal, DX12 or GL driver answered); \
                    on Debian, `apt-get install mesa-vulkan-drivers` gives a software adapter"
                .into(),
        );
    }
    let named = |a: &wgpu::Adapter| {
        let i = a.get_info();
        format!("{} ({:?})", i.name, i.backend)
    };
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let w = wanted.to_lowercase();
        let i = adapters
            .iter()
            .position(|a| a.get_info().name.to_lowercase().contains(&w) && problem(a).is_none())
            .or_else(|| {
                adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&w))
            })
            .ok_or_else(|| {
                let names: Vec<String> = adapters.iter().map(named).collect();
                format!(
                    "WGPU_ADAPTER_NAME={wanted:?} matches none of the adapters: {}",
                    names.join(", ")
                )
            })?;
        return match problem(&adapters[i]) {
            None => Ok(i),
            Some(p) => Err(format!(
                "{} cannot run rowflow's kernels: {p}",
                named(&adapters[i])
            )),
        };
    }
    let low_power = wgpu::PowerPreference::from_env() == Some(wgpu::PowerPreference::LowPower);
    (0..adapters.len())
        .filter(|&i| problem(&adapters[i]).is_none())
        .min_by_key(|&i| type_rank(adapters[i].get_info().device_type, low_power))
        .ok_or_else(|| {
            let why: Vec<String> = adapters
                .iter()
                .map(|a| format!("{}: {}", named(a), problem(a).unwrap_or_default()))
                .collect();
            format!(
                "no wgpu adapter can run rowflow's kernels: {}",
                why.join("; ")
            )
        })
}

/// Describes every adapter, marking the one [`choose`] picks.
pub fn reports() -> Vec<AdapterReport> {
    let instance = instance();
    let list = adapters(&instance);
    let selected = choose(&list).ok();
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            let limits = a.limits();
            AdapterReport {
                name: info.name.clone(),
                api: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                software: info.device_type == wgpu::DeviceType::Cpu,
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                problem: problem(a),
                selected: selected == Some(i),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_without_compute_or_with_small_limits_are_refused_with_the_reason() {
        let full = wgpu::DownlevelCapabilities::default();
        assert_eq!(compute_problem(&full, &wgpu::Limits::default()), None);
        let gles = wgpu::DownlevelCapabilities {
            flags: wgpu::DownlevelFlags::empty(),
            ..full.clone()
        };
        assert_eq!(
            compute_problem(&gles, &wgpu::Limits::default()).as_deref(),
            Some("no compute shaders")
        );
        let small = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 4,
            max_compute_invocations_per_workgroup: 128,
            ..wgpu::Limits::default()
        };
        let why = compute_problem(&full, &small).unwrap();
        assert!(
            why.contains("4 storage buffers per stage (needs 7)"),
            "{why}"
        );
        assert!(
            why.contains("128 invocations per workgroup (needs 256)"),
            "{why}"
        );
    }
}
