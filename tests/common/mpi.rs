//! Helpers for the tests that launch `rowflow` under `mpirun` (feature `mpi`, OpenMPI).

use rowflow::checkpoint::{self, Values};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether this build and machine can launch MPI jobs; where not, the test skips — unless
/// `ROWFLOW_REQUIRE_MPI=1` (CI), which turns the skip into a failure.
pub fn ready() -> bool {
    let why = if !cfg!(feature = "mpi") {
        "this test build lacks the feature `mpi` (cargo test --release --features mpi)"
    } else if !Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "no mpirun here (Debian: apt install openmpi-bin libopenmpi-dev libclang-dev)"
    } else {
        return true;
    };
    if std::env::var("ROWFLOW_REQUIRE_MPI").as_deref() == Ok("1") {
        panic!("ROWFLOW_REQUIRE_MPI=1 but {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// One job's outcome: its exit, its output and how long it took.
pub struct Job {
    pub out: Output,
    pub took: Duration,
}

impl Job {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    /// Panics with the job's output unless it succeeded.
    pub fn ok(self) -> Job {
        assert!(
            self.out.status.success(),
            "the job failed ({}):\n{}\n{}",
            self.out.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// `mpirun -np N rowflow ARGS…` for each `(n, args)` group (several groups: an MPMD job whose
/// ranks run different flags), with `env` passed to every rank, ended after `limit`.
pub fn mpirun(groups: &[(usize, Vec<String>)], env: &[(&str, &str)], limit: Duration) -> Job {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &format!("{}", limit.as_secs())]);
    cmd.args(["mpirun", "--allow-run-as-root", "--oversubscribe"]);
    // Shared memory within the machine; the loopback TCP transport would probe interfaces.
    cmd.args(["--mca", "btl", "self,vader"]);
    for (k, v) in env {
        cmd.env(k, v).args(["-x", k]);
    }
    for (i, (n, args)) in groups.iter().enumerate() {
        if i > 0 {
            cmd.arg(":");
        }
        cmd.args(["-np", &n.to_string(), env!("CARGO_BIN_EXE_rowflow")]);
        cmd.args(args);
    }
    // Containers run as root and lack a single-copy mechanism; two cores run up to 4 ranks.
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .stdin(Stdio::null());
    let t0 = Instant::now();
    let out = cmd.output().expect("timeout and mpirun run");
    Job {
        out,
        took: t0.elapsed(),
    }
}

/// `rowflow ARGS…` alone (no mpirun).
pub fn alone(args: &[String]) -> Job {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rowflow"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    Job {
        out,
        took: t0.elapsed(),
    }
}

/// Owned strings of `args`.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Compares two checkpoints tensor by tensor: those `exact` names bit for bit, the others
/// within `tol` relative to max(1, |value|). Returns the largest difference of the others.
pub fn compare(want: &Path, got: &Path, exact: impl Fn(&str) -> bool, tol: f64) -> f64 {
    let (a, b) = (
        checkpoint::load(want).unwrap(),
        checkpoint::load(got).unwrap(),
    );
    assert_eq!(a.step, b.step);
    let names = |c: &checkpoint::Checkpoint| c.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "the checkpoints hold other tensors");
    let mut worst = 0f64;
    for (name, x) in &a.tensors {
        let y = &b.tensors[name];
        assert_eq!(x.shape, y.shape, "{name}");
        match (&x.values, &y.values) {
            (Values::F32(x), Values::F32(y)) => {
                for (i, (&p, &q)) in x.iter().zip(y).enumerate() {
                    if exact(name) {
                        assert!(
                            p.to_bits() == q.to_bits(),
                            "{name}[{i}]: {p} vs {q}, not exact"
                        );
                    } else {
                        let d = (p as f64 - q as f64).abs() / (p.abs() as f64).max(1.0);
                        assert!(
                            d <= tol,
                            "{name}[{i}]: {p} vs {q} (relative {d:.2e} > {tol})"
                        );
                        worst = worst.max(d);
                    }
                }
            }
            (x, y) => assert_eq!(x, y, "{name}"),
        }
    }
    worst
}
