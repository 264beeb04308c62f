//! `rowflow info`: the backends present, and why the others are not usable.

use anyhow::Result;
use rowflow::device::wgpu::probe;
use rowflow::device::{BackendChoice, probe_backends, select_backend};

/// Prints every backend (in `--backend auto`'s order) and every wgpu adapter.
pub fn run(json: bool) -> Result<()> {
    let reports = probe_backends();
    let picked = select_backend(BackendChoice::Auto).ok().map(|s| s.backend);
    let adapters = probe::reports();
    if json {
        let v = serde_json::json!({
            "backends": reports,
            "auto": picked,
            "wgpu_adapters": adapters,
        });
        println!("{v}");
        return Ok(());
    }
    println!("backends (in the order --backend auto tries them):");
    for r in &reports {
        let mark = if Some(r.backend) == picked {
            " (auto picks this)"
        } else {
            ""
        };
        let state = if r.available {
            "available"
        } else {
            "unavailable"
        };
        println!("  {:<5} {state}{mark}: {}", r.backend.to_string(), r.detail);
    }
    println!("wgpu adapters (WGPU_BACKEND, WGPU_ADAPTER_NAME, WGPU_POWER_PREF choose among them):");
    if adapters.is_empty() {
        println!("  none");
    }
    for a in &adapters {
        println!(
            "  {}{} — {}, {}; max_buffer_size {} B, max_storage_buffer_binding_size {} B, \
             max_compute_workgroups_per_dimension {}",
            if a.selected { "* " } else { "  " },
            a.name,
            a.api,
            a.device_type,
            a.max_buffer_size,
            a.max_storage_buffer_binding_size,
            a.max_compute_workgroups_per_dimension
        );
        if let Some(p) = &a.problem {
            println!("      unusable: {p}");
        }
    }
    Ok(())
}
