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
    /// The adapter `--backend wgpu` would use.
    pub selected: bool,
}

/// A wgpu instance for the backends `WGPU_BACKEND` allows (all by default).
pub fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
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
/// best by device type (discrete first, or integrated first with `WGPU_POWER_PREF=low`).
pub fn choose(adapters: &[wgpu::Adapter]) -> Result<usize, String> {
    if adapters.is_empty() {
        return Err(
            "no wgpu adapter found (no Vulkan, Metal, DX12 or GL driver answered); \
                    on Debian, `apt-get install mesa-vulkan-drivers` gives a software adapter"
                .into(),
        );
    }
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let w = wanted.to_lowercase();
        return adapters
            .iter()
            .position(|a| a.get_info().name.to_lowercase().contains(&w))
            .ok_or_else(|| {
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                format!(
                    "WGPU_ADAPTER_NAME={wanted:?} matches none of the adapters: {}",
                    names.join(", ")
                )
            });
    }
    let low_power = wgpu::PowerPreference::from_env() == Some(wgpu::PowerPreference::LowPower);
    Ok((0..adapters.len())
        .min_by_key(|&i| type_rank(adapters[i].get_info().device_type, low_power))
        .unwrap_or(0))
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
                selected: selected == Some(i),
            }
        })
        .collect()
}
