//! `rowflow serve --sweep`: the scheduler and every static path at several loads, in one run
//! and on the same arrivals per load; and the small paths it trains when given no model.

use super::load::{Load, SizeDist};
use super::report::LoadReport;
use super::scheduler::Policy;
use super::{ServeError, Server};
use crate::config::{RunConfig, machine_cores};
use crate::device::{BackendChoice, select_backend};
use crate::model::Representation;
use std::path::{Path, PathBuf};

/// Settings of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepOptions {
    /// Offered loads, queries per second (empty: [`default_loads`]).
    pub loads: Vec<f64>,
    /// The latency target, ms.
    pub sla_ms: f64,
    /// Seconds of arrivals per (policy, load).
    pub duration_s: f64,
    /// Query sizes.
    pub sizes: SizeDist,
    /// Seed of the arrivals (the same for every policy at a load).
    pub seed: u64,
}

/// Loads that cross the interesting range: from half of what the slowest path sustains alone
/// (every path keeps up) to half of what the fastest does (only the fast ones keep up), four
/// points evenly spaced in log scale with two significant digits; or quarters of the fastest's
/// when the paths are about as fast. Capacities come from the profiles at sizes drawn from
/// `sizes` (they leave out the dispatch overhead, hence the halves).
pub fn default_loads(server: &Server, sizes: &SizeDist) -> Vec<f64> {
    let draws = sizes.draw(4096, 7);
    let caps: Vec<f64> = server
        .paths()
        .iter()
        .map(|p| p.latency.capacity_qps(&draws))
        .collect();
    let slowest = caps.iter().copied().fold(f64::INFINITY, f64::min);
    let fastest = caps.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = (0.5 * slowest, 0.5 * fastest);
    let loads: Vec<f64> = if hi <= 1.5 * lo {
        [0.25, 0.5, 0.75].iter().map(|f| f * fastest).collect()
    } else {
        (0..4)
            .map(|i| lo * (hi / lo).powf(i as f64 / 3.0))
            .collect()
    };
    loads.into_iter().map(two_digits).collect()
}

/// `v` rounded to two significant digits.
fn two_digits(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(v.log10().floor() as i32 - 1);
    (v / scale).round() * scale
}

/// Runs the scheduler, then each path alone, at every load of `opts`, calling `each` with
/// every report as it is made.
pub fn sweep(
    server: &mut Server,
    opts: &SweepOptions,
    each: &mut dyn FnMut(&LoadReport),
) -> Result<Vec<LoadReport>, ServeError> {
    server.check_sla(opts.sla_ms)?;
    let loads = match opts.loads.is_empty() {
        true => default_loads(server, &opts.sizes),
        false => opts.loads.clone(),
    };
    let policies: Vec<Policy> = std::iter::once(Policy::Scheduler)
        .chain((0..server.paths().len()).map(Policy::Static))
        .collect();
    let mut out = Vec::new();
    for qps in loads {
        let load = Load {
            qps,
            duration_s: opts.duration_s,
            sizes: opts.sizes,
            seed: opts.seed,
        };
        for &policy in &policies {
            let report = server.run(policy, &load, opts.sla_ms)?;
            each(&report);
            out.push(report);
        }
    }
    Ok(out)
}

/// Representations a sweep trains when given no model.
pub const TRAINED: [Representation; 3] = [
    Representation::Table,
    Representation::Dhe,
    Representation::Hybrid,
];

/// Trains small `table`, `dhe` and `hybrid` models on the synthetic default's tables
/// (`samples` training samples, 40,000 test samples, DHE k = `dhe_k`, seed `seed`) on the best
/// backend present, saving each under `dir`; returns their checkpoint directories.
pub fn train_paths(
    dir: &Path,
    samples: u64,
    dhe_k: usize,
    seed: u64,
) -> Result<Vec<PathBuf>, ServeError> {
    let mut base = RunConfig {
        seed,
        eval_every: 0,
        hotness_every: 0,
        epochs: 1,
        steps: None,
        ..RunConfig::default()
    };
    base.synthetic.train_samples = samples;
    base.synthetic.test_samples = 40_000;
    base.model.dhe.k = dhe_k;
    let data = crate::train::open_dataset(&base)?;
    let backend = select_backend(BackendChoice::Auto)?.backend;
    // One device trains all three (a CPU device's thread pool is made once per thread).
    crate::on_device!(backend, cpu_threads: Some(machine_cores()), |dev| {
        let mut dirs = Vec::new();
        for repr in TRAINED {
            let mut cfg = base.clone();
            cfg.model.representation = repr;
            let to = dir.join(repr.name());
            cfg.save = Some(to.clone());
            cfg.validate().map_err(crate::train::TrainError::from)?;
            crate::train::train(dev, &cfg, data.as_ref(), &mut |_| {})?;
            dirs.push(to);
        }
        Ok(dirs)
    })
}
