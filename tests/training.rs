//! End-to-end training on the CPU backend: learning, determinism, real data.

mod common;

use rowflow::config::{RunConfig, TableRows};
use rowflow::data::synthetic::SyntheticOptions;
use rowflow::device::cpu::CpuDevice;
use rowflow::telemetry::Snapshot;
use rowflow::train::{TrainSummary, open_dataset, train};

/// A synthetic run small enough for a test: 60k training samples over 8 tables of 5,000 rows.
fn small_config(seed: u64) -> RunConfig {
    RunConfig {
        seed,
        batch_size: 256,
        eval_every: 100,
        table_rows: TableRows::One(5_000),
        synthetic: SyntheticOptions {
            train_samples: 60_000,
            test_samples: 20_000,
            teacher_tail_rank: 100.0,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(cfg: &RunConfig) -> (TrainSummary, Vec<Snapshot>) {
    run_with_base_rate(cfg).0
}

/// [`run`], and the log loss of always predicting the test split's positive rate.
fn run_with_base_rate(cfg: &RunConfig) -> ((TrainSummary, Vec<Snapshot>), f64) {
    let data = open_dataset(cfg).unwrap();
    let labels = &data.test().labels;
    let p = labels.iter().map(|&y| y as f64).sum::<f64>() / labels.len() as f64;
    let constant = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
    let mut snaps = Vec::new();
    let summary = train(&CpuDevice::new(), cfg, data.as_ref(), &mut |s| {
        snaps.push(s.clone())
    })
    .unwrap();
    ((summary, snaps), constant)
}

#[test]
fn synthetic_training_learns_towards_the_teacher() {
    let seed = common::seed("synthetic_training");
    let ((s, snaps), constant) = run_with_base_rate(&small_config(seed));
    let teacher = s.teacher_auc.unwrap();
    let auc = s.test_auc.unwrap();
    let logloss = s.test_logloss.unwrap();
    println!(
        "test AUC {auc:.4}, teacher {teacher:.4}, log loss {logloss:.4} (base rate {constant:.4})"
    );
    assert!((0.70..=0.92).contains(&teacher), "teacher AUC {teacher}");
    // 60k samples are a sixteenth of the default run, so the bar is lower than the CLI's 0.03;
    // over 45 random seeds the gap ranged 0.04–0.11.
    assert!(auc > teacher - 0.13, "test AUC {auc} vs teacher {teacher}");
    assert!(auc > 0.65);
    // It learned more than the label frequency (which a bias alone reaches in a few steps;
    // training losses of early and late batches are not comparable, as batches differ).
    assert!(
        logloss < constant - 0.02,
        "test log loss {logloss} vs {constant} for the base rate"
    );
    assert_eq!(snaps.len() as u64, s.steps);
    assert_eq!(
        s.steps,
        60_000 / 256,
        "one epoch, the partial last batch dropped"
    );
    // Telemetry is counted, not assumed: every lookup of the batch is there.
    let t = &snaps[0].total;
    assert_eq!(t.lookups, 256 * 8 * 4);
    assert!(t.unique_rows > 0 && t.unique_rows <= t.lookups && t.hits == t.unique_rows);
    assert_eq!(
        snaps.iter().filter(|s| s.test_auc.is_some()).count(),
        s.evals.len()
    );
}

#[test]
fn same_seed_gives_identical_runs_whatever_the_thread_count() {
    let mut cfg = small_config(common::seed("determinism"));
    cfg.steps = Some(60);
    cfg.eval_every = 30;
    let (a, sa) = run(&cfg);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (b, sb) = pool.install(|| run(&cfg));
    let losses = |s: &[Snapshot]| s.iter().map(|x| x.loss.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        losses(&sa),
        losses(&sb),
        "bit-identical losses on 2 threads and on 1"
    );
    assert_eq!(a.test_auc.map(f64::to_bits), b.test_auc.map(f64::to_bits));
    cfg.seed += 1;
    let (c, _) = run(&cfg);
    assert_ne!(a.test_auc, c.test_auc, "another seed gives another run");
}

#[test]
fn same_seed_gives_identical_batches_and_runs_for_1_and_n_loader_threads() {
    let mut cfg = small_config(common::seed("loader threads"));
    cfg.steps = Some(40);
    cfg.eval_every = 20;
    // Hotness is counted on the loader too: its reports must come out the same.
    cfg.hotness_every = 10;
    let runs: Vec<_> = [1, 3, 8]
        .into_iter()
        .map(|n| {
            cfg.loader_threads = Some(n);
            run(&cfg)
        })
        .collect();
    let key = |s: &[Snapshot]| {
        s.iter()
            .map(|x| {
                (
                    x.loss.to_bits(),
                    x.total.lookups,
                    x.total.unique_rows,
                    x.hotness.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (one, one_steps) = &runs[0];
    assert_eq!(one.loader_threads, 1);
    for (summary, steps) in &runs[1..] {
        assert_eq!(
            key(steps),
            key(one_steps),
            "{} threads",
            summary.loader_threads
        );
        assert_eq!(
            summary.test_auc.map(f64::to_bits),
            one.test_auc.map(f64::to_bits)
        );
    }
    cfg.loader_threads = Some(0);
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("--loader-threads"), "{e}");
}

#[test]
fn the_cpu_kernels_give_identical_runs_on_1_and_n_threads_of_their_own() {
    let mut cfg = small_config(common::seed("compute threads"));
    cfg.steps = Some(30);
    cfg.eval_every = 15;
    // Each device joins the thread that creates it to its pool: a fresh thread per device.
    let on_threads = |n: usize| {
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let dev = CpuDevice::with_threads(n).unwrap();
            assert_eq!(rowflow::device::Device::info(&dev).parallelism, n);
            let data = open_dataset(&cfg).unwrap();
            let mut losses = Vec::new();
            let s = train(&dev, &cfg, data.as_ref(), &mut |s| {
                losses.push(s.loss.to_bits())
            })
            .unwrap();
            (s, losses)
        })
        .join()
        .unwrap()
    };
    let (one, one_losses) = on_threads(1);
    assert_eq!(one.compute_threads, Some(1));
    let (three, three_losses) = on_threads(3);
    assert_eq!(three.compute_threads, Some(3));
    let (global, global_losses) = run(&cfg);
    assert_eq!(one_losses, three_losses);
    assert_eq!(
        one_losses,
        global_losses
            .iter()
            .map(|s| s.loss.to_bits())
            .collect::<Vec<_>>()
    );
    for s in [&three, &global] {
        assert_eq!(s.test_auc.map(f64::to_bits), one.test_auc.map(f64::to_bits));
    }
    cfg.compute_threads = Some(0);
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("--compute-threads"), "{e}");
}

#[test]
fn steps_win_over_epochs_and_data_wraps_around() {
    let mut cfg = small_config(3);
    cfg.synthetic.train_samples = 1000;
    cfg.batch_size = 300; // 3 full batches per epoch, 100 samples dropped each epoch
    cfg.epochs = 1;
    cfg.steps = Some(7);
    cfg.eval_every = 0;
    let (s, snaps) = run(&cfg);
    assert_eq!(s.steps, 7);
    assert_eq!(s.samples, 2100);
    assert_eq!(
        snaps.iter().filter(|s| s.test_auc.is_some()).count(),
        1,
        "evaluated once, at the end"
    );
    cfg.steps = None;
    cfg.epochs = 2;
    assert_eq!(run(&cfg).0.steps, 6);
}

#[test]
fn criteo_sample_reaches_the_hashed_logistic_regression_ballpark() {
    let Some(path) = common::shared_data("criteo_kaggle_head_10k.tsv") else {
        return;
    };
    let cfg = RunConfig {
        data: path.display().to_string(),
        epochs: 5,
        batch_size: 128,
        ..Default::default()
    };
    let (s, _) = run(&cfg);
    let auc = s.test_auc.unwrap();
    println!("Criteo head 10k: test AUC {auc:.4} after {} steps", s.steps);
    assert_eq!(s.test_samples, 2000);
    assert_eq!(s.teacher_auc, None);
    assert!(auc >= 0.70, "test AUC {auc}");
}
