//! `rowflow serve`: saved models served through a path scheduler under a generated load.

use anyhow::{Context, Result, bail};
use clap::Args;
use rowflow::device::{BackendKind, probe_backends};
use rowflow::serve::{
    Load, LoadReport, Policy, Server, SizeDist, SweepOptions, report, sweep, train_paths,
};
use std::path::PathBuf;

/// `rowflow serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// A checkpoint directory (`rowflow train --save DIR`); repeat for several models. None:
    /// small table, DHE and hybrid models are trained first on synthetic data (and said so).
    #[arg(long, value_name = "DIR")]
    model: Vec<PathBuf>,
    /// Backends to make paths on [default: every backend present but a software wgpu adapter
    /// (lavapipe), which is there for correctness, not speed].
    #[arg(long, value_delimiter = ',', value_parser = ["cpu", "wgpu", "cuda"])]
    backends: Vec<String>,
    /// Offered loads, queries per second, comma-separated [default: from the paths' profiles,
    /// four from half of what the slowest path sustains to half of what the fastest does].
    #[arg(long, value_delimiter = ',', value_name = "QPS")]
    qps: Vec<f64>,
    /// Latency target per query, ms.
    #[arg(long, default_value_t = 20.0, value_name = "MS")]
    sla_ms: f64,
    /// Seconds of arrivals per (policy, load).
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    duration_s: f64,
    /// Query sizes: lognormal[:MEDIAN[:SIGMA]], uniform:LO:HI or fixed:N (clipped to 1…1024).
    #[arg(long, default_value = "lognormal:16:1.2", value_name = "DIST")]
    query_size_dist: String,
    /// `scheduler`, or a path's name (`table@cpu` …) to serve every query there.
    #[arg(long, default_value = "scheduler")]
    policy: String,
    /// Run the scheduler and every path alone at each load, in this one run.
    #[arg(long)]
    sweep: bool,
    /// One JSON line per (policy, load) instead of a table.
    #[arg(long)]
    json: bool,
    /// Seed of the arrivals (the same at every policy of a load).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Training samples of each model trained when no --model is given.
    #[arg(long, default_value_t = 409_600)]
    train_samples: u64,
    /// DHE hashes (k) of the models trained when no --model is given.
    #[arg(long, default_value_t = 128)]
    dhe_k: usize,
}

/// Starts the server, then runs the loads and prints a report per (policy, load).
pub fn run(args: ServeArgs) -> Result<()> {
    let sizes: SizeDist = args.query_size_dist.parse()?;
    let backends = backends(&args.backends)?;
    let trained = args.model.is_empty();
    let scratch = std::env::temp_dir().join(format!("rowflow-serve-{}", std::process::id()));
    let models = if trained {
        eprintln!(
            "no --model: training table, dhe and hybrid models on synthetic data first \
             ({} samples each, DHE k = {}) into {}",
            args.train_samples,
            args.dhe_k,
            scratch.display()
        );
        train_paths(&scratch, args.train_samples, args.dhe_k, args.seed)?
    } else {
        args.model.clone()
    };
    let server = Server::start(&models, &backends);
    if trained {
        // The paths hold what they need; the checkpoints were only the way there.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let mut server = server?;
    for p in server.paths() {
        let ms = |n: usize| p.latency.seconds(n) * 1e3;
        eprintln!(
            "path {:<14} accuracy {:.4}  AUC {}  latency ms @1 {:.3} @16 {:.3} @256 {:.3} @1024 {:.3}",
            p.name,
            p.accuracy,
            p.auc.map_or("n/a".into(), |a| format!("{a:.4}")),
            ms(1),
            ms(16),
            ms(256),
            ms(1024)
        );
    }
    server.check_sla(args.sla_ms)?;
    let loads = match args.qps.is_empty() {
        true => rowflow::serve::default_loads(&server, &sizes),
        false => args.qps.clone(),
    };
    eprintln!(
        "loads (qps): {loads:?}; SLA {} ms; {} s each; query sizes {sizes}",
        args.sla_ms, args.duration_s
    );
    if !args.json {
        println!("{}", report::text_header());
    }
    let mut print = |r: &LoadReport| {
        match args.json {
            true => match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("cannot encode a report: {e}"),
            },
            false => println!("{}", report::text_row(r)),
        }
        if let Some(w) = r.overload_warning() {
            eprintln!("warning: {w}");
        }
    };
    let opts = SweepOptions {
        loads: loads.clone(),
        sla_ms: args.sla_ms,
        duration_s: args.duration_s,
        sizes,
        seed: args.seed,
    };
    if args.sweep {
        let reports = sweep(&mut server, &opts, &mut print)?;
        for line in verdicts(&reports) {
            eprintln!("{line}");
        }
        return Ok(());
    }
    let policy = policy(&server, &args.policy)?;
    for qps in loads {
        let load = Load {
            qps,
            duration_s: args.duration_s,
            sizes,
            seed: args.seed,
        };
        print(&server.run(policy, &load, args.sla_ms)?);
    }
    Ok(())
}

/// Per load of a sweep: the scheduler's correct predictions per second against the best static
/// path's, and its p99 against the SLA where a static path met it.
fn verdicts(reports: &[LoadReport]) -> Vec<String> {
    let mut loads: Vec<f64> = reports.iter().map(|r| r.qps).collect();
    loads.dedup();
    let mut out = Vec::new();
    for qps in loads {
        let at: Vec<&LoadReport> = reports.iter().filter(|r| r.qps == qps).collect();
        let Some(sched) = at.iter().find(|r| r.policy == "scheduler") else {
            continue;
        };
        let statics = at.iter().filter(|r| r.policy != "scheduler");
        let Some(best) = statics
            .clone()
            .max_by(|a, b| a.correct_per_sec.total_cmp(&b.correct_per_sec))
        else {
            continue;
        };
        let ratio = sched.correct_per_sec / best.correct_per_sec.max(f64::MIN_POSITIVE);
        let met: Vec<&str> = statics
            .filter(|r| r.meets_sla())
            .map(|r| r.policy.as_str())
            .collect();
        let p99 = sched.p99_ms.map_or("-".into(), |p| format!("{p:.2} ms"));
        let sla = match (met.is_empty(), sched.meets_sla()) {
            (true, _) => "no static path met the SLA at p99".to_string(),
            (false, true) => format!("p99 {p99} within the SLA, as {} did", met.join(", ")),
            (false, false) => format!("p99 {p99} OVER the SLA, which {} met", met.join(", ")),
        };
        out.push(format!(
            "at {qps} qps: scheduler {:.0} correct/s, best static {} {:.0} ({ratio:.3}×); {sla}",
            sched.correct_per_sec, best.policy, best.correct_per_sec
        ));
    }
    out
}

/// `--backends`, or every backend present that `auto` may pick.
fn backends(names: &[String]) -> Result<Vec<BackendKind>> {
    let reports = probe_backends();
    if names.is_empty() {
        return Ok(reports
            .iter()
            .filter(|r| r.available && r.auto_eligible)
            .map(|r| r.backend)
            .collect());
    }
    let mut out = Vec::new();
    for name in names {
        let kind: BackendKind = serde_json::from_value(serde_json::Value::String(name.clone()))
            .with_context(|| format!("--backends: unknown backend {name}"))?;
        match reports.iter().find(|r| r.backend == kind) {
            Some(r) if r.available => out.push(kind),
            Some(r) => bail!("--backends {name}: not usable here: {}", r.detail),
            None => bail!("--backends {name}: not compiled into this build"),
        }
    }
    out.dedup();
    Ok(out)
}

/// `--policy`: `scheduler` or a path's name.
fn policy(server: &Server, name: &str) -> Result<Policy> {
    if name == "scheduler" {
        return Ok(Policy::Scheduler);
    }
    let names: Vec<&str> = server.paths().iter().map(|p| p.name.as_str()).collect();
    match names.iter().position(|n| *n == name) {
        Some(i) => Ok(Policy::Static(i)),
        None => bail!(
            "--policy {name}: no such path; use scheduler or one of {}",
            names.join(", ")
        ),
    }
}
