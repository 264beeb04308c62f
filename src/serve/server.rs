//! The in-process server: its paths' workers, and one load run through them under a policy.

use super::load::Load;
use super::path::{self, Done, Job, ModelSpec, PathInfo, Spec, Worker};
use super::profile::Correction;
use super::report::{LoadReport, Outcome};
use super::scheduler::{PathView, Policy, assign};
use super::{HEADROOM, SHED_FACTOR, ServeError};
use crate::config::{RunConfig, machine_cores};
use crate::data::Dataset;
use crate::device::BackendKind;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Run settings paths of one server must share: they decide the test split it serves.
const SAME_DATA: [&str; 6] = [
    "data",
    "synthetic",
    "table_rows",
    "test_fraction",
    "multi_hot",
    "multi_hot_separator",
];

/// A server: one path per (model, backend), one worker per backend, and the labels of the test
/// split they serve.
pub struct Server {
    workers: Vec<Worker>,
    /// Per path: its worker and its model's index there.
    paths: Vec<(usize, usize)>,
    labels: Vec<f32>,
    /// Test samples a load draws from (the other ones were held out for the profiles).
    pool: std::ops::Range<u32>,
    current: Arc<AtomicU64>,
}

impl Server {
    /// Loads every checkpoint in `models` (directories written by `rowflow train --save`) and
    /// starts one path per (model, backend in `backends`), profiling each in turn.
    pub fn start(models: &[PathBuf], backends: &[BackendKind]) -> Result<Server, ServeError> {
        if models.is_empty() || backends.is_empty() {
            return Err(ServeError::Invalid(
                "a server needs at least one --model and one backend".into(),
            ));
        }
        let mut loaded = Vec::new();
        for dir in models {
            loaded.push(load_model(dir)?);
        }
        let (first_dir, first) = (&models[0], &loaded[0].0);
        for (dir, (cfg, _)) in models.iter().zip(&loaded).skip(1) {
            same_data(first_dir, first, dir, cfg)?;
        }
        let data: Arc<dyn Dataset> =
            Arc::from(
                crate::train::open_dataset(first).map_err(|e| ServeError::Model {
                    model: first_dir.display().to_string(),
                    message: format!("cannot open its data: {e}"),
                })?,
            );
        let test = data.test();
        if test.len() < 2 {
            return Err(ServeError::Model {
                model: first_dir.display().to_string(),
                message: format!(
                    "its test split has {} samples; serving needs at least 2 (half to profile, \
                     half to serve)",
                    test.len()
                ),
            });
        }
        let half = test.len() / 2;
        let current = Arc::new(AtomicU64::new(0));
        let loaded: Vec<(RunConfig, Arc<_>)> =
            loaded.into_iter().map(|(c, k)| (c, Arc::new(k))).collect();
        let mut workers: Vec<Worker> = Vec::new();
        let mut paths = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for &backend in backends {
            let mut specs = Vec::new();
            for ((cfg, ckpt), dir) in loaded.iter().zip(models) {
                let repr = cfg.model.representation.name();
                let mut name = format!("{repr}@{backend}");
                let mut k = 2;
                while names.contains(&name) {
                    name = format!("{repr}-{k}@{backend}");
                    k += 1;
                }
                names.push(name.clone());
                paths.push((workers.len(), specs.len()));
                specs.push(ModelSpec {
                    name,
                    dir: dir.display().to_string(),
                    cfg: cfg.clone(),
                    ckpt: Arc::clone(ckpt),
                });
            }
            workers.push(path::spawn(Spec {
                backend,
                // The worker has the backend to itself: its models run one query at a time.
                cpu_threads: machine_cores(),
                models: specs,
                data: Arc::clone(&data),
                held_out: 0..half,
                current: Arc::clone(&current),
            })?);
        }
        Ok(Server {
            workers,
            paths,
            labels: test.labels.clone(),
            pool: half as u32..test.len() as u32,
            current,
        })
    }

    /// The paths, in the order policies index them.
    pub fn paths(&self) -> Vec<&PathInfo> {
        self.paths
            .iter()
            .map(|&(w, m)| &self.workers[w].infos[m])
            .collect()
    }

    /// Test-split samples loads draw from (the held-out ones profiled the paths).
    pub fn pool(&self) -> std::ops::Range<u32> {
        self.pool.clone()
    }

    /// Refuses an SLA that no path can meet even for a query of one sample on an idle server.
    pub fn check_sla(&self, sla_ms: f64) -> Result<(), ServeError> {
        if !(sla_ms.is_finite() && sla_ms > 0.0) {
            return Err(ServeError::Invalid(format!(
                "--sla-ms {sla_ms}: must be a positive number of milliseconds"
            )));
        }
        let fastest = self
            .paths()
            .into_iter()
            .map(|p| (p.latency.seconds(1) * 1e3, &p.name))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match fastest {
            Some((ms, name)) if ms > sla_ms => Err(ServeError::Invalid(format!(
                "--sla-ms {sla_ms}: no path can meet it; the fastest, {name}, takes {ms:.3} ms \
                 for a query of one sample: raise --sla-ms"
            ))),
            _ => Ok(()),
        }
    }

    /// Predicts test samples `samples` on path `path`, waiting for the answer (one query, as
    /// a load would send it). Takes the server whole (`&mut`), as a load run does: a query
    /// between runs must not be mistaken for one of theirs.
    pub fn predict(&mut self, path: usize, samples: &[u32]) -> Result<Vec<f32>, ServeError> {
        let run = self.current.fetch_add(1, Ordering::AcqRel) + 1;
        let (tx, rx) = crossbeam_channel::unbounded();
        self.send(path, run, 0, samples.to_vec(), &tx)?;
        let done = rx.recv().map_err(|_| self.died(path))?;
        done.probs.map_err(|message| ServeError::PathFailed {
            path: self.paths()[path].name.clone(),
            message,
        })
    }

    /// Offers `load` under `policy` with an SLA of `sla_ms` and reports what was served.
    pub fn run(
        &mut self,
        policy: Policy,
        load: &Load,
        sla_ms: f64,
    ) -> Result<LoadReport, ServeError> {
        self.check_sla(sla_ms)?;
        let infos = self.paths();
        if let Policy::Static(i) = policy
            && i >= infos.len()
        {
            return Err(ServeError::Invalid(format!(
                "no path {i}: the server has {}",
                infos.len()
            )));
        }
        let arrivals = load.arrivals(self.pool())?;
        let sla_s = sla_ms / 1e3;
        let shed_s = SHED_FACTOR * sla_s;
        let run = self.current.fetch_add(1, Ordering::AcqRel) + 1;
        let (tx, rx) = crossbeam_channel::unbounded::<Done>();
        self.settle(run, &tx, &rx)?;
        let mut queues: Vec<Queue> = self.workers.iter().map(|_| Queue::default()).collect();
        let mut corrections = vec![Correction::default(); infos.len()];
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(arrivals.len());
        let mut open = 0usize;
        let start = Instant::now();
        // Records an answer; whether it was one of this run's.
        let take = |d: Done,
                    q: &mut [Queue],
                    corrections: &mut [Correction],
                    o: &mut [Outcome]|
         -> Result<bool, ServeError> {
            if d.run != run {
                return Ok(false);
            }
            let probs = d.probs.map_err(|message| ServeError::PathFailed {
                path: infos[d.path].name.clone(),
                message,
            })?;
            let out = &mut o[d.id];
            out.latency_s = Some(d.finished.duration_since(out.arrival).as_secs_f64());
            out.service_s = Some(d.service_s);
            out.correct = probs
                .iter()
                .zip(out.samples.iter())
                .filter(|(p, i)| (**p >= 0.5) == (self.labels[**i as usize] >= 0.5))
                .count();
            q[self.paths[d.path].0].finish(d.finished);
            corrections[d.path].observe(out.profiled_s, d.service_s);
            Ok(true)
        };
        for (id, a) in arrivals.into_iter().enumerate() {
            let at = start + Duration::from_secs_f64(a.at_s);
            // Take in completions until the query is due.
            loop {
                let now = Instant::now();
                if now >= at {
                    break;
                }
                match rx.recv_timeout(at - now) {
                    Ok(d) => {
                        open -= take(d, &mut queues, &mut corrections, &mut outcomes)? as usize
                    }
                    Err(_) => break,
                }
            }
            while let Ok(d) = rx.try_recv() {
                open -= take(d, &mut queues, &mut corrections, &mut outcomes)? as usize;
            }
            let now = Instant::now();
            let backlog: Vec<f64> = queues.iter().map(|q| q.backlog_s(now)).collect();
            let views: Vec<PathView> = infos
                .iter()
                .zip(&self.paths)
                .zip(&corrections)
                .map(|((p, &(w, _)), c)| PathView {
                    accuracy: p.accuracy,
                    latency: &p.latency,
                    correction: c.ratio(),
                    backlog_s: backlog[w],
                })
                .collect();
            let size = a.samples.len();
            let choice = assign(policy, &views, size, HEADROOM * sla_s);
            let samples = Arc::new(a.samples);
            let mut outcome = Outcome {
                arrival: at,
                samples: Arc::clone(&samples),
                path: None,
                profiled_s: choice.service_s / views[choice.path].correction,
                service_s: None,
                latency_s: None,
                correct: 0,
            };
            // Waiting counts from the arrival, so a late dispatch is the server's own delay.
            let late = now.saturating_duration_since(at).as_secs_f64();
            if late + choice.completion_s <= shed_s {
                outcome.path = Some(choice.path);
                queues[self.paths[choice.path].0].start(now, choice.service_s);
                self.send_shared(choice.path, run, id, samples, &tx)?;
                open += 1;
            }
            outcomes.push(outcome);
        }
        let deadline = start + Duration::from_secs_f64(load.duration_s + shed_s + 1.0);
        while open > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(d) => open -= take(d, &mut queues, &mut corrections, &mut outcomes)? as usize,
                Err(_) => break,
            }
        }
        // Whatever is still queued belongs to a finished run: the workers skip it.
        self.current.fetch_add(1, Ordering::AcqRel);
        let names: Vec<String> = infos.iter().map(|p| p.name.clone()).collect();
        let policy_name = match policy {
            Policy::Scheduler => "scheduler".to_string(),
            Policy::Static(i) => names[i].clone(),
        };
        Ok(LoadReport::new(
            policy_name,
            load,
            sla_ms,
            &outcomes,
            &names,
        ))
    }

    /// Waits until every worker has put the previous run behind it: the query it was running
    /// finished and the ones left queued skipped. Otherwise a run after an overloaded one would
    /// start behind its leftovers, and the policies compared would not start alike.
    fn settle(
        &self,
        run: u64,
        tx: &crossbeam_channel::Sender<Done>,
        rx: &crossbeam_channel::Receiver<Done>,
    ) -> Result<(), ServeError> {
        for w in 0..self.workers.len() {
            let path = self.paths.iter().position(|&(pw, _)| pw == w).unwrap_or(0);
            self.send(path, run, usize::MAX, Vec::new(), tx)?;
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(d) if d.id == usize::MAX => break,
                    Ok(_) => continue,
                    Err(_) => {
                        return Err(ServeError::PathFailed {
                            path: self.paths()[path].name.clone(),
                            message: "its worker did not finish the previous run's query within \
                                      60 s"
                                .into(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn send(
        &self,
        path: usize,
        run: u64,
        id: usize,
        samples: Vec<u32>,
        reply: &crossbeam_channel::Sender<Done>,
    ) -> Result<(), ServeError> {
        self.send_shared(path, run, id, Arc::new(samples), reply)
    }

    fn send_shared(
        &self,
        path: usize,
        run: u64,
        id: usize,
        samples: Arc<Vec<u32>>,
        reply: &crossbeam_channel::Sender<Done>,
    ) -> Result<(), ServeError> {
        let (worker, model) = self.paths[path];
        let job = Job {
            run,
            id,
            path,
            model,
            samples,
            reply: reply.clone(),
        };
        let sent = self.workers[worker].jobs.as_ref().map(|j| j.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.died(path)),
        }
    }

    fn died(&self, path: usize) -> ServeError {
        ServeError::PathFailed {
            path: self.paths()[path].name.clone(),
            message: "its worker thread has ended".into(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.current.fetch_add(1, Ordering::AcqRel);
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A worker's queued work as the dispatcher predicts it.
#[derive(Default)]
struct Queue {
    /// Predicted service seconds of the queries sent and not yet answered, oldest first.
    pending: VecDeque<f64>,
    /// When the oldest of them started (the previous one's answer, or its dispatch).
    head_since: Option<Instant>,
}

impl Queue {
    fn start(&mut self, now: Instant, service_s: f64) {
        if self.pending.is_empty() {
            self.head_since = Some(now);
        }
        self.pending.push_back(service_s);
    }

    fn finish(&mut self, at: Instant) {
        self.pending.pop_front();
        self.head_since = Some(at);
    }

    /// Predicted seconds from `now` until the queued work is done.
    fn backlog_s(&self, now: Instant) -> f64 {
        let (Some(&head), Some(since)) = (self.pending.front(), self.head_since) else {
            return 0.0;
        };
        let total: f64 = self.pending.iter().sum();
        let ran = now.saturating_duration_since(since).as_secs_f64();
        total - ran.min(head)
    }
}

/// The run settings and checkpoint in `dir`.
fn load_model(dir: &Path) -> Result<(RunConfig, crate::checkpoint::Checkpoint), ServeError> {
    let model = || dir.display().to_string();
    let ckpt = crate::checkpoint::load(dir).map_err(|e| ServeError::Model {
        model: model(),
        message: format!("cannot load it: {e}"),
    })?;
    let mut cfg: RunConfig =
        serde_json::from_value(ckpt.config.clone()).map_err(|e| ServeError::Model {
            model: model(),
            message: format!(
                "its manifest's config is not this version's ({e}): retrain it, or serve it \
                 with the rowflow that saved it"
            ),
        })?;
    (cfg.save, cfg.resume, cfg.save_every) = (None, None, 0);
    Ok((cfg, ckpt))
}

/// Refuses to serve `b` beside `a` when they would not read the same test split.
fn same_data(a_dir: &Path, a: &RunConfig, b_dir: &Path, b: &RunConfig) -> Result<(), ServeError> {
    let (va, vb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let synthetic = a.is_synthetic();
    for key in SAME_DATA.iter().copied().chain(synthetic.then_some("seed")) {
        if va[key] != vb[key] {
            return Err(ServeError::Model {
                model: b_dir.display().to_string(),
                message: format!(
                    "`{key}` = {} here but {} in {}: the paths of one server must serve the \
                     same test split; serve them separately",
                    vb[key],
                    va[key],
                    a_dir.display()
                ),
            });
        }
    }
    Ok(())
}
