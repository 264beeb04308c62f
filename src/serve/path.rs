//! Paths and their workers. A path is one saved model on one backend; every path of a backend is
//! served by that backend's worker thread, which owns the device and the models (devices need
//! not be `Send`) and runs the queries it is sent in order. One worker per backend because the
//! paths of a backend share its cores or its GPU: run side by side they would slow each other
//! down in ways no profile predicts, while one queue per backend is what the scheduler can
//! reason about. At start the worker profiles each of its models' latency against query size
//! and accuracy on the held-out half of the test split.

use super::ServeError;
use super::load::MAX_QUERY;
use super::profile::LatencyProfile;
use crate::checkpoint::Checkpoint;
use crate::config::RunConfig;
use crate::data::{Batch, Dataset};
use crate::device::{BackendKind, Device};
use crate::metrics::auc;
use crate::model::{Dlrm, Representation};
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// Query sizes a path's latency is measured at.
pub const PROFILE_SIZES: [usize; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, MAX_QUERY];

/// Seconds of repetitions each profiled size gets (at least 3, at most 15 runs), after one
/// warm-up: the median then settles without slow paths taking minutes to start.
const PROFILE_SECONDS: f64 = 0.15;

/// What a path measured of itself at start.
#[derive(Clone, Debug, Serialize)]
pub struct PathInfo {
    /// `representation@backend` (`table@cpu`, `hybrid@wgpu` …), with `-2`, `-3` … after the
    /// representation when several models share one.
    pub name: String,
    /// The checkpoint directory.
    pub model: String,
    /// The model's representation.
    pub representation: Representation,
    /// The backend.
    pub backend: BackendKind,
    /// Fraction of the held-out samples predicted right at threshold 0.5.
    pub accuracy: f64,
    /// AUC on the held-out samples.
    pub auc: Option<f64>,
    /// Median service seconds against query size.
    pub latency: LatencyProfile,
}

/// A query for a path.
pub(crate) struct Job {
    /// The load run it belongs to (stale runs' jobs are skipped).
    pub run: u64,
    /// Its index in the run.
    pub id: usize,
    /// The server's index of the path.
    pub path: usize,
    /// The worker's index of the path's model.
    pub model: usize,
    /// Indices into the test split.
    pub samples: Arc<Vec<u32>>,
    /// Where the result goes.
    pub reply: Sender<Done>,
}

/// A path's answer to a [`Job`].
pub(crate) struct Done {
    pub run: u64,
    pub id: usize,
    pub path: usize,
    /// When the predictions were on the host.
    pub finished: Instant,
    /// Seconds from taking the job to finishing it.
    pub service_s: f64,
    /// Click probabilities, one per sample, or why the path failed.
    pub probs: Result<Vec<f32>, String>,
}

/// The server's end of a backend's worker.
pub(crate) struct Worker {
    /// Its paths, in the order of its models.
    pub infos: Vec<PathInfo>,
    pub jobs: Option<Sender<Job>>,
    pub thread: Option<JoinHandle<()>>,
}

/// One model a worker serves.
pub(crate) struct ModelSpec {
    pub name: String,
    pub dir: String,
    pub cfg: RunConfig,
    pub ckpt: Arc<Checkpoint>,
}

/// What a worker needs to start.
pub(crate) struct Spec {
    pub backend: BackendKind,
    pub cpu_threads: usize,
    pub models: Vec<ModelSpec>,
    pub data: Arc<dyn Dataset>,
    /// Test samples whose accuracy and latency are profiled (the rest are served).
    pub held_out: Range<usize>,
    /// The run now being served; jobs of other runs are dropped unanswered.
    pub current: Arc<AtomicU64>,
}

/// Starts the worker of `spec` and waits until it has profiled its paths.
pub(crate) fn spawn(spec: Spec) -> Result<Worker, ServeError> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let name = format!("the {} worker", spec.backend);
    let thread = std::thread::Builder::new()
        .name(format!("serve {}", spec.backend))
        .spawn(move || {
            let backend = spec.backend;
            let outcome = (|| -> Result<(), ServeError> {
                crate::on_device!(backend, cpu_threads: Some(spec.cpu_threads), |dev| {
                    serve_on(dev, &spec, &ready_tx, &jobs_rx)
                })
            })();
            if let Err(e) = outcome {
                // Before the profile, the server is waiting for this; after, it sees the
                // channel close and names the path.
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| ServeError::Invalid(format!("cannot start a thread for {name}: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(infos)) => Ok(Worker {
            infos,
            jobs: Some(jobs_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(ServeError::PathFailed {
                path: name,
                message: "its thread ended before profiling (see the message above)".into(),
            })
        }
    }
}

/// The worker's life on its device: load, profile, serve until the server hangs up.
fn serve_on<D: Device>(
    dev: &D,
    spec: &Spec,
    ready: &Sender<Result<Vec<PathInfo>, ServeError>>,
    jobs: &Receiver<Job>,
) -> Result<(), ServeError> {
    let mut models = Vec::new();
    let mut infos = Vec::new();
    for m in &spec.models {
        let (mut model, test) =
            crate::train::restore_model(dev, &m.cfg, &m.ckpt, spec.data.as_ref(), Some(MAX_QUERY))
                .map_err(|e| ServeError::Model {
                    model: m.dir.clone(),
                    message: e.to_string(),
                })?;
        let mut query = Batch::new(test.num_dense, test.sparse.len());
        infos.push(profile(dev, spec, m, &mut model, &test, &mut query)?);
        models.push((model, test, query));
    }
    if ready.send(Ok(infos)).is_err() {
        return Ok(());
    }
    let mut probs = Vec::with_capacity(MAX_QUERY);
    for job in jobs {
        if job.run != spec.current.load(Ordering::Acquire) {
            continue;
        }
        let t = Instant::now();
        let (model, test, query) = &mut models[job.model];
        let result = run_query(dev, model, test, &job.samples, query, &mut probs)
            .map(|()| probs.clone())
            .map_err(|e| e.to_string());
        let done = Done {
            run: job.run,
            id: job.id,
            path: job.path,
            finished: Instant::now(),
            service_s: t.elapsed().as_secs_f64(),
            probs: result,
        };
        let _ = job.reply.send(done);
    }
    Ok(())
}

/// Measures one path: accuracy and AUC on the held-out samples, latency against size.
fn profile<D: Device>(
    dev: &D,
    spec: &Spec,
    m: &ModelSpec,
    model: &mut Dlrm<D>,
    test: &Batch,
    query: &mut Batch,
) -> Result<PathInfo, ServeError> {
    let mut probs = Vec::with_capacity(MAX_QUERY);
    let path_err = |e: crate::model::ModelError| ServeError::PathFailed {
        path: m.name.clone(),
        message: e.to_string(),
    };
    let held: Vec<u32> = spec.held_out.clone().map(|i| i as u32).collect();
    run_query(dev, model, test, &held, query, &mut probs).map_err(path_err)?;
    let labels = &test.labels[spec.held_out.clone()];
    let right = probs
        .iter()
        .zip(labels)
        .filter(|(p, y)| (**p >= 0.5) == (**y >= 0.5))
        .count();
    let accuracy = right as f64 / labels.len().max(1) as f64;
    let a = auc(probs.as_slice(), labels);
    let mut points = Vec::with_capacity(PROFILE_SIZES.len());
    // Each run asks about other samples, as queries do: the same ones again would find their
    // rows in the CPU's caches and time a path faster than it serves.
    let mut next = 0usize;
    let mut ids = |size: usize| -> Vec<u32> {
        let out = (0..size).map(|i| held[(next + i) % held.len()]).collect();
        next = (next + size) % held.len();
        out
    };
    for &size in &PROFILE_SIZES {
        run_query(dev, model, test, &ids(size), query, &mut probs).map_err(path_err)?;
        let mut times = Vec::new();
        let started = Instant::now();
        while times.len() < 3
            || (times.len() < 15 && started.elapsed().as_secs_f64() < PROFILE_SECONDS)
        {
            let q = ids(size);
            let t = Instant::now();
            run_query(dev, model, test, &q, query, &mut probs).map_err(path_err)?;
            times.push(t.elapsed().as_secs_f64().max(1e-9));
        }
        times.sort_by(f64::total_cmp);
        points.push((size, times[times.len() / 2]));
    }
    Ok(PathInfo {
        name: m.name.clone(),
        model: m.dir.clone(),
        representation: m.cfg.model.representation,
        backend: spec.backend,
        accuracy,
        auc: a.is_finite().then_some(a),
        latency: LatencyProfile::new(points)?,
    })
}

/// Predicts test samples `ids` into `probs` (replaced), in batches the model takes.
fn run_query<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    test: &Batch,
    ids: &[u32],
    query: &mut Batch,
    probs: &mut Vec<f32>,
) -> Result<(), crate::model::ModelError> {
    probs.clear();
    for chunk in ids.chunks(model.capacity().max(1)) {
        query.clear();
        for &i in chunk {
            query.push_from(test, i as usize);
        }
        model.predict(dev, query, probs)?;
    }
    Ok(())
}
