//! `rowflow check`: every kernel of the chosen backends against the CPU reference, then training
//! parity and the lookahead pipeline's equality with all rows on the device (`rowflow::check`,
//! the same cases and tolerances as the parity tests). Exits non-zero on any failure.

use super::on_device;
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use rowflow::check::{Checker, Verdict};
use rowflow::device::{BackendChoice, BackendKind, Device, probe_backends, select_backend};
use std::time::Instant;

/// Which backends to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The one `--backend auto` would train on.
    Auto,
    /// The CPU reference itself (a check of the harness).
    Cpu,
    /// wgpu.
    Wgpu,
    /// CUDA.
    Cuda,
    /// Every backend present; absent ones are listed with the reason.
    All,
}

/// `rowflow check` arguments.
#[derive(Args)]
pub struct CheckArgs {
    /// Backends to check.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Which,
    /// One JSON object per line (environment, then one per kernel and backend).
    #[arg(long)]
    json: bool,
    /// Fewer training steps (30 instead of 200): seconds, not a minute, on lavapipe.
    #[arg(long)]
    quick: bool,
    /// Seed of the random inputs (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
}

/// What one backend's device says about itself.
fn environment<D: Device>(dev: &D, kind: BackendKind) -> String {
    let mut env = dev.info().name.clone();
    if kind == BackendKind::Cuda
        && let Ok((major, minor)) = rowflow::device::cuda::nvrtc_version()
    {
        env.push_str(&format!("; NVRTC {major}.{minor}"));
    }
    env
}

fn check_one(kind: BackendKind, seed: u64, quick: bool) -> Result<(String, Vec<Verdict>)> {
    Ok(on_device!(kind, |dev| {
        let mut ck = Checker::new(&kind.to_string(), seed);
        rowflow::check::run(dev, &mut ck, quick);
        (environment(dev, kind), ck.verdicts().to_vec())
    }))
}

/// Runs the checks and prints them.
pub fn run(a: CheckArgs) -> Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let reports = probe_backends();
    let mut kinds = Vec::new();
    let mut absent = Vec::new();
    match a.backend {
        Which::All => {
            for r in &reports {
                if r.available {
                    kinds.push(r.backend);
                } else {
                    absent.push((r.backend, r.detail.clone()));
                }
            }
        }
        Which::Auto => kinds.push(select_backend(BackendChoice::Auto)?.backend),
        Which::Cpu => kinds.push(BackendKind::Cpu),
        Which::Wgpu => kinds.push(select_backend(BackendChoice::Wgpu)?.backend),
        Which::Cuda => kinds.push(select_backend(BackendChoice::Cuda)?.backend),
    }
    if !a.json {
        println!("rowflow check: seed {seed} (replay with --seed {seed})");
    }
    let mut failed = 0;
    for (kind, reason) in &absent {
        if a.json {
            let v = serde_json::json!({"backend": kind, "available": false, "reason": reason});
            println!("{v}");
        } else {
            println!("{kind}: absent: {reason}");
        }
    }
    for kind in kinds {
        let t0 = Instant::now();
        let (env, verdicts) = check_one(kind, seed, a.quick)?;
        let seconds = t0.elapsed().as_secs_f64();
        failed += verdicts.iter().filter(|v| !v.pass).count();
        if a.json {
            let v = serde_json::json!({"backend": kind, "available": true, "device": env,
                "seed": seed, "seconds": seconds});
            println!("{v}");
            for v in &verdicts {
                println!("{}", serde_json::to_string(v)?);
            }
            continue;
        }
        println!("\n{kind}: {env} ({seconds:.1} s)");
        println!(
            "{:<32} {:>6} {:>12} {:>22}  verdict",
            "kernel", "cases", "worst error", "tolerance"
        );
        for v in &verdicts {
            println!(
                "{:<32} {:>6} {:>12.3e} {:>22}  {}",
                v.kernel,
                v.cases,
                v.worst_error,
                v.tolerance,
                if v.pass { "pass" } else { "FAIL" }
            );
            if let Some(f) = v.failure.as_ref().filter(|_| !v.pass) {
                println!("    {f}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} check(s) failed (seed {seed}); see the table above");
    }
    Ok(())
}
