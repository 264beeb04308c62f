//! `rowflow serve`: served predictions equal `rowflow eval`'s, every policy reports on the
//! contract's JSON fields, and bad input (a checkpoint that cannot be read or served beside
//! another, an SLA no path meets, a load beyond the machine) gets a clear answer.

mod common;

use common::cli::{available_backends, fails_with, rowflow, text, tiny_config};
use rowflow::device::BackendKind;
use rowflow::serve::{Load, Policy, Server, SizeDist};
use std::path::{Path, PathBuf};

/// Trains and saves a small model of `representation` (DHE k = 16) into `dir/NAME`.
fn saved(dir: &Path, name: &str, representation: &str, extra: &[&str]) -> PathBuf {
    let cfg = tiny_config(dir);
    let to = dir.join(name);
    let mut args = vec![
        "train",
        "--backend",
        "cpu",
        "--config",
        cfg.to_str().unwrap(),
        "--representation",
        representation,
        "--dhe-k",
        "16",
        "--steps",
        "20",
        "--save",
        to.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = rowflow(&args);
    assert!(o.status.success(), "{}", text(&o).1);
    to
}

/// Each test sample's probability as `rowflow eval --predictions` writes it (CPU backend).
fn eval_predictions(model: &Path, file: &Path) -> Vec<f32> {
    let o = rowflow(&[
        "eval",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--predictions",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn a_served_prediction_equals_evals_for_the_same_sample() {
    let dir = tempfile::tempdir().unwrap();
    let models = [
        saved(dir.path(), "table", "table", &[]),
        saved(dir.path(), "hybrid", "hybrid", &[]),
    ];
    // Paths on the wgpu backend too where an adapter exists (lavapipe in CI): one worker per
    // backend, each owning its device on its own thread.
    let mut backends = vec![BackendKind::Cpu];
    if available_backends().iter().any(|b| b == "wgpu") {
        backends.push(BackendKind::Wgpu);
    }
    let mut server = Server::start(&models, &backends).unwrap();
    let names: Vec<String> = server.paths().iter().map(|p| p.name.clone()).collect();
    assert_eq!(names[..2], ["table@cpu", "hybrid@cpu"]);
    let evals: Vec<Vec<f32>> = models
        .iter()
        .enumerate()
        .map(|(i, m)| eval_predictions(m, &dir.path().join(format!("{i}.txt"))))
        .collect();
    assert!(
        evals.iter().all(|e| e.len() == 500),
        "one line per test sample"
    );
    for (path, name) in names.iter().enumerate() {
        let eval = &evals[path % models.len()];
        // A query as a load sends it: samples of the served half, in any order, repeated.
        let pool = server.pool();
        let query: Vec<u32> = vec![pool.start, pool.end - 1, pool.start + 7, pool.start, 3];
        let served = server.predict(path, &query).unwrap();
        // The CPU is the same code as eval's; another backend sums in its own order.
        let tol = if name.ends_with("@cpu") { 1e-6 } else { 1e-5 };
        for (&i, &p) in query.iter().zip(&served) {
            let e = eval[i as usize];
            assert!(
                (p - e).abs() <= tol,
                "{name}: sample {i}: served {p}, eval {e}"
            );
        }
    }
}

#[test]
fn a_sweep_reports_every_policy_on_the_contracts_fields() {
    let dir = tempfile::tempdir().unwrap();
    let a = saved(dir.path(), "table", "table", &[]);
    let b = saved(dir.path(), "dhe", "dhe", &[]);
    let o = rowflow(&[
        "serve",
        "--model",
        a.to_str().unwrap(),
        "--model",
        b.to_str().unwrap(),
        "--backends",
        "cpu",
        "--sweep",
        "--json",
        "--qps",
        "50,200",
        "--duration-s",
        "0.5",
        "--sla-ms",
        "50",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys = [
        "policy",
        "qps",
        "throughput",
        "correct_per_sec",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "sla_violations",
    ];
    for r in &rows {
        for k in keys {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    let policies: Vec<(&str, f64)> = rows
        .iter()
        .map(|r| (r["policy"].as_str().unwrap(), r["qps"].as_f64().unwrap()))
        .collect();
    for qps in [50.0, 200.0] {
        for p in ["scheduler", "table@cpu", "dhe@cpu"] {
            assert!(policies.contains(&(p, qps)), "{p} at {qps}: {policies:?}");
        }
    }
    // At 50 qps of queries of about 30 samples, the table path answers everything in time.
    let table = &rows[1];
    assert_eq!(table["policy"], "table@cpu");
    assert!(table["throughput"].as_f64().unwrap() > 30.0, "{table}");
    assert!(table["correct_per_sec"].as_f64().unwrap() > 0.0, "{table}");
}

#[test]
fn checkpoints_that_cannot_be_served_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none");
    let e = Server::start(std::slice::from_ref(&none), &[BackendKind::Cpu])
        .err()
        .unwrap();
    assert!(e.to_string().contains("none"), "{e}");
    let a = saved(dir.path(), "a", "table", &[]);
    let b = saved(dir.path(), "b", "table", &["--seed", "9"]);
    let e = Server::start(&[a.clone(), b], &[BackendKind::Cpu])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`seed`") && e.contains("same test split"), "{e}");
    // A truncated tensor file.
    let c = saved(dir.path(), "c", "table", &[]);
    let file = std::fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails_with(
        &rowflow(&["serve", "--model", c.to_str().unwrap(), "--backends", "cpu"]),
        "truncated",
    );
    assert!(e.contains(c.to_str().unwrap()), "{e}");
    // An SLA no path can meet, and an unknown policy.
    let out = |args: &[&str]| {
        let mut all = vec!["serve", "--model", a.to_str().unwrap(), "--backends", "cpu"];
        all.extend_from_slice(args);
        rowflow(&all)
    };
    fails_with(&out(&["--sla-ms", "0.000001"]), "no path can meet it");
    fails_with(
        &out(&["--policy", "dhe@gpu", "--qps", "10", "--duration-s", "0.1"]),
        "no such path",
    );
    fails_with(&out(&["--query-size-dist", "zipf"]), "--query-size-dist");
}

#[test]
fn a_load_beyond_the_machine_is_reported_not_queued_forever() {
    let dir = tempfile::tempdir().unwrap();
    let a = saved(dir.path(), "dhe", "dhe", &[]);
    let mut server = Server::start(&[a], &[BackendKind::Cpu]).unwrap();
    let load = Load {
        qps: 200_000.0,
        duration_s: 0.3,
        sizes: SizeDist::Fixed(1024),
        seed: 2,
    };
    let t = std::time::Instant::now();
    let r = server.run(Policy::Scheduler, &load, 5.0).unwrap();
    assert!(r.shed > r.queries / 2, "{r:?}");
    assert!(r.overload_warning().is_some());
    assert!(r.sla_violations >= r.shed);
    // Shedding bounds the queue: the run ends within its arrivals + 10 SLAs + a second.
    assert!(
        t.elapsed().as_secs_f64() < 0.3 + 0.05 + 1.0 + 2.0,
        "{:?}",
        t.elapsed()
    );
    // The server still serves afterwards.
    let ok = server
        .run(
            Policy::Static(0),
            &Load {
                qps: 20.0,
                duration_s: 0.3,
                sizes: SizeDist::Fixed(1),
                seed: 3,
            },
            1000.0,
        )
        .unwrap();
    assert_eq!(ok.shed, 0);
}
