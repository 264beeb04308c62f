//! The lookahead pipeline: it must not change the math (same weights as all-on-device with an
//! FP32 store and nearest rounding), must always hit at the training step — counted, not
//! assumed — and must survive its hazards: rows reused every other batch, rows evicted and
//! needed again soon after, a cache exactly one window's working set, random delays in every
//! stage, a dropped prefetch, and a cache too small (an error, never a hang).

mod common;

use rowflow::config::RunConfig;
use rowflow::data::replay::Replay;
use rowflow::data::{Batch, Schema};
use rowflow::device::Optimizer;
use rowflow::device::cpu::CpuDevice;
use rowflow::device::{Device, DeviceExt};
use rowflow::embedding::{EmbeddingError, Policy};
use rowflow::pipeline::PipelineError;
use rowflow::precision::{Precision, Rounding};
use rowflow::train::{Faults, TrainError, TrainSummary, train_model};
use std::ops::ControlFlow;

/// Given batches, replayed to the run, kept at hand to work out cache sizes from.
struct Scripted {
    data: Replay,
    batches: Vec<Batch>,
    tables: usize,
}

const BATCH: usize = 16;

/// `steps` batches of 16 samples over tables of `table_rows` rows; `rows(k, t, i)` gives the
/// bag of sample `i` of batch `k` in table `t`.
fn scripted(
    steps: usize,
    table_rows: &[u32],
    rows: impl Fn(usize, usize, usize) -> Vec<u32>,
) -> Scripted {
    let mut x = 7u64;
    let mut next = move || {
        x = rowflow::rng::splitmix64(x);
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut make = |k: usize| {
        let mut b = Batch::new(4, table_rows.len());
        for i in 0..BATCH {
            for _ in 0..4 {
                b.dense.push(next() * 2.0 - 1.0);
            }
            b.labels.push((next() > 0.6) as u8 as f32);
            for (t, bags) in b.sparse.iter_mut().enumerate() {
                bags.push(&rows(k, t, i));
            }
        }
        b
    };
    let batches: Vec<Batch> = (0..steps).map(&mut make).collect();
    let mut test = Batch::new(4, table_rows.len());
    for k in 0..4 {
        let b = make(1000 + k);
        for i in 0..b.len() {
            test.push_from(&b, i);
        }
    }
    test.labels
        .iter_mut()
        .enumerate()
        .for_each(|(i, y)| *y = (i % 3 == 0) as u8 as f32);
    let schema = Schema {
        num_dense: 4,
        table_rows: table_rows.to_vec(),
    };
    Scripted {
        data: Replay::new("scripted", schema, batches.clone(), test).unwrap(),
        batches,
        tables: table_rows.len(),
    }
}

fn config(
    policy: Policy,
    cache_rows: Option<Vec<u32>>,
    lookahead: usize,
    optimizer: Optimizer,
) -> RunConfig {
    let mut c = RunConfig {
        batch_size: BATCH,
        eval_every: 0,
        hotness_every: 0,
        lookahead,
        policy,
        precision: Precision::Fp32,
        rounding: Rounding::Nearest,
        cache_rows: cache_rows.map(rowflow::config::TableRows::Each),
        ..Default::default()
    };
    if policy == Policy::AllOnDevice {
        c.cache_rows = None;
    }
    c.model.dim = 8;
    c.model.bottom_mlp = vec![8];
    c.model.top_mlp = vec![8];
    c.model.embedding_optimizer = optimizer;
    c
}

/// Trains and returns the summary and every weight (tables through store and cache, then the
/// dense parameters).
fn run<D: Device>(
    dev: &D,
    data: &Scripted,
    cfg: &RunConfig,
    faults: &Faults,
) -> (TrainSummary, Vec<f32>) {
    run_until(dev, data, cfg, faults, u64::MAX)
}

/// [`run`], stopped by the caller after step `stop`.
fn run_until<D: Device>(
    dev: &D,
    data: &Scripted,
    cfg: &RunConfig,
    faults: &Faults,
    stop: u64,
) -> (TrainSummary, Vec<f32>) {
    let mut on_step = |s: &rowflow::telemetry::Snapshot| {
        if s.step >= stop {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let (summary, model) = train_model(dev, cfg, &data.data, faults, &mut on_step).unwrap();
    let mut w = Vec::new();
    for t in 0..data.tables {
        w.extend(model.embeddings().read_table(dev, t).unwrap());
    }
    for p in model.dense_params() {
        w.extend(dev.read_f32(p.value, 0..p.len).unwrap());
    }
    (summary, w)
}

fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{what}: weight {i} is {a}, all-on-device has {b}"
        );
    }
}

/// Rows of a Zipf-ish workload over tables of 400 and 64 rows: sample `i` of batch `k` reads 3
/// rows, one of them hot.
fn zipfish(seed: u64) -> impl Fn(usize, usize, usize) -> Vec<u32> {
    move |k, t, i| {
        let h = |j: u64| {
            rowflow::rng::splitmix64(
                seed ^ ((k as u64) << 32) ^ ((t as u64) << 16) ^ (i as u64 * 8 + j),
            )
        };
        let rows = if t == 0 { 400 } else { 64 };
        vec![(h(0) % 4) as u32, (h(1) % 60) as u32, (h(2) % rows) as u32]
    }
}

fn max_unique(data: &Scripted) -> Vec<u32> {
    (0..data.tables)
        .map(|t| {
            data.batches
                .iter()
                .map(|b| {
                    let mut r = b.sparse[t].indices.clone();
                    r.sort_unstable();
                    r.dedup();
                    r.len() as u32
                })
                .max()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_lookahead_run_stopped_after_a_step_equals_a_run_of_that_many_steps() {
    // Stopping (rowflow-studio's Stop) must leave no write-back behind: the stores then hold
    // what a run of exactly that many steps leaves.
    let dev = CpuDevice::new();
    let data = scripted(30, &[400, 64], zipfish(5));
    let cache = max_unique(&data);
    let mut cfg = config(Policy::Lookahead, Some(cache), 4, Optimizer::Adagrad);
    let (stopped, got) = run_until(&dev, &data, &cfg, &Faults::default(), 7);
    // Step 8 may already be on the device when step 7 is reported: it runs to its end.
    let ran = stopped.steps;
    assert!(ran == 7 || ran == 8, "stopped after step 7 but ran {ran}");
    assert_eq!(stopped.samples, ran * BATCH as u64);
    cfg.steps = Some(ran);
    let (_, want) = run(&dev, &data, &cfg, &Faults::default());
    assert_same("stopped after step 7", &got, &want);
}

fn lookahead_keeps_the_math<D: Device>(dev: &D) {
    let seed = common::seed("lookahead_keeps_the_math");
    let data = scripted(30, &[400, 64], zipfish(seed));
    let min = max_unique(&data);
    for optimizer in [Optimizer::Adagrad, Optimizer::Sgd] {
        let (_, reference) = run(
            dev,
            &data,
            &config(Policy::AllOnDevice, None, 1, optimizer),
            &Faults::default(),
        );
        for w in [1, 4, 16] {
            for cache in [
                min.clone(),
                min.iter().map(|m| m + 13).collect(),
                vec![400, 64],
            ] {
                let cfg = config(Policy::Lookahead, Some(cache.clone()), w, optimizer);
                let (s, got) = run(dev, &data, &cfg, &Faults::default());
                assert_same(
                    &format!("W={w} cache {cache:?} {optimizer:?}"),
                    &got,
                    &reference,
                );
                assert_eq!(s.train_hit_rate, 1.0, "W={w} cache {cache:?}");
                assert_eq!(s.lookahead, Some(w));
            }
        }
    }
}

fn hazards_keep_the_math<D: Device>(dev: &D) {
    // Row 0 in every other batch; rows cycling through a cache of exactly one batch, so each is
    // evicted and needed again soon after (its fetch must wait for its write-back).
    let every_other = |k: usize, t: usize, i: usize| -> Vec<u32> {
        let base = if k % 2 == 0 { vec![0u32] } else { vec![] };
        // 16 consecutive rows of 29, moving 7 per batch: consecutive batches overlap partly.
        let spin = ((k * 7 + i) % 29) as u32 + 1 + t as u32;
        [base, vec![spin]].concat()
    };
    let data = scripted(40, &[32, 32], every_other);
    let min = max_unique(&data);
    let reference = run(
        dev,
        &data,
        &config(Policy::AllOnDevice, None, 1, Optimizer::Adagrad),
        &Faults::default(),
    )
    .1;
    for w in [1, 2, 8] {
        for cache in [min.clone(), min.iter().map(|m| m + 1).collect()] {
            let cfg = config(
                Policy::Lookahead,
                Some(cache.clone()),
                w,
                Optimizer::Adagrad,
            );
            let (s, got) = run(dev, &data, &cfg, &Faults::default());
            assert_same(
                &format!("every other batch, W={w}, cache {cache:?}"),
                &got,
                &reference,
            );
            assert_eq!(s.train_hit_rate, 1.0);
            if cache == min && w > 1 {
                assert!(
                    s.window_shrinks.unwrap() > 0,
                    "a cache of one batch cannot hold a window"
                );
            }
            // Random delays in every stage change nothing.
            for delay_seed in [1u64, 2] {
                let hooks = Faults {
                    delays: Some((delay_seed, 300)),
                    ..Default::default()
                };
                let (_, delayed) = run(dev, &data, &cfg, &hooks);
                assert_same(
                    &format!("delays {delay_seed}, W={w}, cache {cache:?}"),
                    &delayed,
                    &reference,
                );
            }
        }
    }
}

fn a_window_sized_cache_never_shrinks<D: Device>(dev: &D) {
    let data = scripted(30, &[400], zipfish(5));
    let w = 4;
    // The largest working set of any W + 1 consecutive batches: the cache holds exactly that.
    let ws = (0..data.batches.len())
        .map(|k| {
            let mut rows: Vec<u32> = (k..(k + w + 1).min(data.batches.len()))
                .flat_map(|j| data.batches[j].sparse[0].indices.clone())
                .collect();
            rows.sort_unstable();
            rows.dedup();
            rows.len() as u32
        })
        .max()
        .unwrap();
    // In flight batches are pinned too: allow for the pipeline's depth on top of the window.
    let cfg = config(Policy::Lookahead, Some(vec![400]), w, Optimizer::Sgd);
    let (s, _) = run(dev, &data, &cfg, &Faults::default());
    assert_eq!(s.window_shrinks, Some(0), "the whole table fits: no shrink");
    let cfg = config(Policy::Lookahead, Some(vec![ws]), w, Optimizer::Sgd);
    let (s, _) = run(dev, &data, &cfg, &Faults::default());
    assert_eq!(s.train_hit_rate, 1.0);
}

fn a_dropped_prefetch_is_a_counted_miss_with_the_same_weights<D: Device>(dev: &D) {
    let data = scripted(20, &[400, 64], zipfish(11));
    let cfg = config(
        Policy::Lookahead,
        Some(max_unique(&data).iter().map(|m| m + 20).collect()),
        4,
        Optimizer::Adagrad,
    );
    let (clean, reference) = run(dev, &data, &cfg, &Faults::default());
    assert_eq!(clean.train_hit_rate, 1.0);
    let hooks = Faults {
        drop_prefetch: Some((5, 0)),
        ..Default::default()
    };
    let (dropped, got) = run(dev, &data, &cfg, &hooks);
    assert!(
        dropped.train_hit_rate < 1.0,
        "the dropped prefetch shows as a train-stage miss"
    );
    assert_same("dropped prefetch", &got, &reference);
}

fn an_undersized_cache_is_a_named_error<D: Device>(dev: &D) {
    let data = scripted(10, &[400, 64], zipfish(3));
    let min = max_unique(&data);
    let cfg = config(
        Policy::Lookahead,
        Some(vec![min[0] - 1, min[1]]),
        4,
        Optimizer::Sgd,
    );
    let e = train_model(dev, &cfg, &data.data, &Faults::default(), &mut |_| {
        ControlFlow::Continue(())
    })
    .err()
    .expect("too small");
    let text = e.to_string();
    assert!(
        text.contains(&format!("at least {} cache rows", min[0])) && text.contains("table 0"),
        "{text}"
    );
    assert!(
        matches!(
            e,
            TrainError::Pipeline(PipelineError::Embedding(EmbeddingError::CacheTooSmall {
                table: 0,
                needed,
                slots,
            })) if needed == min[0] as usize && slots == min[0] - 1
        ),
        "{e:?}"
    );
}

macro_rules! lookahead_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            /// Runs `body` in a thread, failing instead of hanging.
            fn guarded(body: impl FnOnce() + Send + 'static) {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    body();
                    let _ = tx.send(());
                });
                match rx.recv_timeout(std::time::Duration::from_secs(120)) {
                    Ok(()) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the pipeline hung"),
                    Err(_) => panic!("the test body panicked (see above)"),
                }
            }
            #[test]
            fn lookahead_trains_exactly_like_all_on_device_for_w_1_4_16() {
                guarded(|| {
                    if let Some(d) = $make {
                        lookahead_keeps_the_math(&d)
                    }
                });
            }
            #[test]
            fn rows_reused_evicted_refetched_and_random_stage_delays_keep_the_math() {
                guarded(|| {
                    if let Some(d) = $make {
                        hazards_keep_the_math(&d)
                    }
                });
            }
            #[test]
            fn a_cache_of_one_window_always_hits() {
                guarded(|| {
                    if let Some(d) = $make {
                        a_window_sized_cache_never_shrinks(&d)
                    }
                });
            }
            #[test]
            fn a_dropped_prefetch_is_a_counted_train_stage_miss() {
                guarded(|| {
                    if let Some(d) = $make {
                        a_dropped_prefetch_is_a_counted_miss_with_the_same_weights(&d)
                    }
                });
            }
            #[test]
            fn an_undersized_cache_is_an_error_naming_the_minimum_not_a_hang() {
                guarded(|| {
                    if let Some(d) = $make {
                        an_undersized_cache_is_a_named_error(&d)
                    }
                });
            }
        }
    };
}

lookahead_tests!(cpu, Some(CpuDevice::new()));
lookahead_tests!(wgpu, common::wgpu_device());
lookahead_tests!(cuda, common::cuda_device());
