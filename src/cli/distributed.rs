//! `rowflow train --distributed`: one rank of a run launched by `mpirun` (or one process alone),
//! its engine chosen and watched, rank 0 printing progress and the summary.

use anyhow::{Context, Result, bail};
use clap::Args;
use rowflow::config::RunConfig;
use rowflow::dist::watchdog::Fault;
#[cfg(any(feature = "mpi", feature = "nccl"))]
use rowflow::dist::watchdog::Watched;
use rowflow::dist::{Collective, DistOptions, DistStep, DistSummary, Local, train_distributed};
use rowflow::shard::PlannerKind;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The flags of a distributed run (not config keys: they describe the launch).
#[derive(Args, Default)]
pub struct DistArgs {
    /// Train as one rank of an `mpirun -np N rowflow train --distributed …` job: tables sharded
    /// over the ranks, dense layers data-parallel.
    #[arg(long)]
    pub distributed: bool,
    /// How tables are sharded without a plan file: row-wise or table-wise.
    #[arg(long, value_parser = super::choice::<PlannerKind>(), value_name = "row-wise|table-wise")]
    pub sharding: Option<PlannerKind>,
    /// A plan saved by `rowflow shard plan --save plan.json` (e.g. FlexShard's).
    #[arg(long, value_name = "plan.json")]
    pub shard_plan: Option<PathBuf>,
    /// Ranks per host: which peers are intra-host in the traffic report (default 1).
    #[arg(long, value_name = "G")]
    pub devices_per_host: Option<usize>,
    /// The collective engine: mpi (CPU hosts) or nccl (one GPU per rank).
    #[arg(long, value_name = "mpi|nccl")]
    pub collective: Option<String>,
    /// Seconds a rank waits in one collective before ending the job (a dead or missing peer;
    /// default 30).
    #[arg(long, value_name = "S")]
    pub comm_timeout_s: Option<f64>,
}

impl DistArgs {
    /// A launch flag given to a single-process run would be silently ignored: refuse it.
    pub fn refuse_without_distributed(&self) -> Result<()> {
        let given = [
            (self.sharding.is_some(), "--sharding"),
            (self.shard_plan.is_some(), "--shard-plan"),
            (self.devices_per_host.is_some(), "--devices-per-host"),
            (self.collective.is_some(), "--collective"),
            (self.comm_timeout_s.is_some(), "--comm-timeout-s"),
        ];
        if let Some((_, flag)) = given.iter().find(|(on, _)| *on) {
            bail!(
                "{flag} shards a distributed run: add --distributed (and launch with mpirun -np N)"
            );
        }
        Ok(())
    }
}

/// Runs one rank.
pub fn run(cfg: RunConfig, args: DistArgs) -> Result<()> {
    let timeout_s = args.comm_timeout_s.unwrap_or(30.0);
    if !(timeout_s.is_finite() && timeout_s >= 1.0) {
        bail!("--comm-timeout-s {timeout_s} must be at least 1");
    }
    let opts = DistOptions {
        sharding: args.sharding.unwrap_or(PlannerKind::RowWise),
        shard_plan: args.shard_plan.clone(),
        devices_per_host: args.devices_per_host.unwrap_or(1).max(1),
        fault: Fault::from_env()?,
    };
    let timeout = Duration::from_secs_f64(timeout_s);
    let coll = engine(
        args.collective.as_deref().unwrap_or("mpi"),
        timeout,
        opts.devices_per_host,
    )?;
    let rank = coll.rank();
    let backend = super::select(cfg.backend).unwrap_or_else(|e| {
        eprintln!("error: rank {rank}: {}", rowflow::report::describe(&e));
        coll.abort(1)
    });
    // Rank 0 creates the telemetry file before any rank trains: a path that cannot be written
    // ends the job at once rather than after the run.
    let fail = |e: anyhow::Error| -> ! {
        eprintln!(
            "error: rank {rank}: {}",
            rowflow::report::describe(e.as_ref())
        );
        coll.abort(1)
    };
    let mut telemetry = match (&cfg.telemetry, rank) {
        (Some(p), 0) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("{}: cannot create the telemetry file", p.display()))
                .unwrap_or_else(|e| fail(e)),
        )),
        _ => None,
    };
    let mut write_error = None;
    let summary = rowflow::on_device!(backend, |dev| {
        let mut on_step = |s: &DistStep| {
            if s.step == 1 || s.step % 50 == 0 || s.test_auc.is_some() {
                let auc = s
                    .test_auc
                    .map_or(String::new(), |a| format!(", test AUC {a:.4}"));
                eprintln!("step {}: loss {:.5}{auc}", s.step, s.loss);
            }
            if let (Some(w), None) = (telemetry.as_mut(), write_error.as_ref()) {
                let line = serde_json::to_writer(&mut *w, s)
                    .map_err(std::io::Error::from)
                    .and_then(|()| w.write_all(b"\n"));
                write_error = line.err();
            }
        };
        match train_distributed(dev, coll.as_ref(), &cfg, &opts, &mut on_step) {
            Ok(s) => s,
            // The other ranks would wait for this one until their watchdogs fire: end the
            // whole job now.
            Err(e) => fail(e.into()),
        }
    });
    if let (Some(p), Some(e)) = (&cfg.telemetry, write_error) {
        bail!("{}: cannot write telemetry: {e}", p.display());
    }
    if let Some(mut w) = telemetry {
        w.flush().context("cannot flush the telemetry file")?;
    }
    if let Some(s) = summary {
        print(&s);
        if let Some(path) = &cfg.summary_json {
            std::fs::write(path, serde_json::to_string_pretty(&s)? + "\n")
                .with_context(|| format!("{}: cannot write the summary", path.display()))?;
        }
    }
    Ok(())
}

/// Whether mpirun (OpenMPI, MPICH or PMIx) started this process.
fn under_mpirun() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// The engine this process runs: MPI (or NCCL bootstrapped by MPI) under mpirun, alone
/// otherwise.
pub(super) fn engine(
    name: &str,
    timeout: Duration,
    per_host: usize,
) -> Result<Box<dyn Collective>> {
    if !["mpi", "nccl"].contains(&name) {
        bail!("--collective {name}: expected mpi or nccl");
    }
    if under_mpirun() && !cfg!(feature = "mpi") {
        bail!(
            "launched by mpirun, but this rowflow was built without MPI: build it with \
             `cargo build --release --features mpi` (add `,nccl` for GPUs; Debian: apt install \
             openmpi-bin libopenmpi-dev libclang-dev)"
        );
    }
    if name == "nccl" {
        return nccl(timeout, per_host);
    }
    #[cfg(feature = "mpi")]
    if under_mpirun() {
        let mpi = rowflow::dist::mpi::Mpi::init()?;
        return Ok(Box::new(watched(mpi, timeout)?));
    }
    let _ = per_host;
    eprintln!("without mpirun: one rank (launch N with `mpirun -np N`)");
    Ok(Box::new(Local::new()))
}

/// `engine` timed by the watchdog; `ROWFLOW_DIST_MAX_CHUNK` (a test knob) caps its calls' sizes.
#[cfg(any(feature = "mpi", feature = "nccl"))]
fn watched<C: Collective>(engine: C, timeout: Duration) -> Result<Watched<C>> {
    let cap = match std::env::var("ROWFLOW_DIST_MAX_CHUNK") {
        Ok(v) => Some(v.parse::<usize>().map_err(|_| {
            anyhow::anyhow!("ROWFLOW_DIST_MAX_CHUNK={v}: expected a count of elements")
        })?),
        Err(_) => None,
    };
    Ok(Watched::new(engine, timeout).with_max_chunk(cap))
}

/// NCCL on this rank's GPU: bootstrapped over MPI under mpirun, a one-rank communicator alone.
#[cfg(feature = "nccl")]
fn nccl(timeout: Duration, per_host: usize) -> Result<Box<dyn Collective>> {
    use rowflow::dist::nccl::Nccl;
    #[cfg(feature = "mpi")]
    if under_mpirun() {
        let mpi = rowflow::dist::mpi::Mpi::init()?;
        let ordinal = std::env::var("OMPI_COMM_WORLD_LOCAL_RANK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(mpi.rank() % per_host);
        return Ok(Box::new(watched(Nccl::init(mpi, ordinal)?, timeout)?));
    }
    let _ = per_host;
    eprintln!("--distributed --collective nccl without mpirun: one rank on GPU 0");
    Ok(Box::new(watched(Nccl::single(0)?, timeout)?))
}

#[cfg(not(feature = "nccl"))]
fn nccl(_: Duration, _: usize) -> Result<Box<dyn Collective>> {
    bail!(
        "this rowflow was built without NCCL: build with `cargo build --release --features \
         mpi,nccl` (or `--features nccl` for one rank)"
    )
}

fn print(s: &DistSummary) {
    println!(
        "distributed: {} ranks ({}), {} sharding, {} steps of {} samples: {:.0} samples/s, \
         final loss {:.5}, test AUC {}",
        s.ranks,
        s.engine,
        s.sharding.name(),
        s.steps,
        s.batch_size,
        s.samples_per_sec,
        s.final_loss,
        s.test_auc.map_or("-".into(), |a| format!("{a:.4}"))
    );
    for (phase, t) in &s.traffic.tiers {
        println!(
            "  {phase:>9}: {} B intra-host, {} B inter-host",
            t.intra_host, t.inter_host
        );
    }
    for (phase, b) in &s.traffic.all_reduce {
        println!("  {phase:>9}: {b} B handed to all-reduces");
    }
}
