//! The loader stage: reads or generates batches, builds their unique-row maps and counts row
//! hotness, ahead of the device, on several threads with the same output as one. Batch buffers circulate between the loader and the device
//! stage, so nothing is allocated per step.

use super::stage::{Laps, Ports};
use super::{PipelineError, Ready};
use crate::data::{Batch, Dataset, RowMap};
use crate::device::Device;
use crate::embedding::hotness::{HotnessCounts, HotnessTracker};
use crate::telemetry::StageTime;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::BTreeMap;

/// A batch with its unique-row maps: the buffers that circulate from the loader to the device
/// stage and back.
pub struct Prepared {
    /// The samples.
    pub batch: Batch,
    /// One unique-row map per table.
    pub maps: Vec<RowMap>,
    /// Row hotness so far, on the steps that report it.
    pub hotness: Option<HotnessCounts>,
    /// The laps of the stages the batch went through so far, in order.
    pub times: Vec<StageTime>,
}

impl Prepared {
    /// An empty buffer for `tables` tables of batches with `num_dense` dense features.
    pub fn new(num_dense: usize, tables: usize) -> Self {
        Prepared {
            batch: Batch::new(num_dense, tables),
            maps: vec![RowMap::new(); tables],
            hotness: None,
            times: Vec::with_capacity(4),
        }
    }
}

impl<D: Device> Laps for Ready<D> {
    fn laps(&mut self) -> &mut Vec<StageTime> {
        &mut self.prepared.times
    }
}

/// What the loader produces.
pub struct LoadJob {
    /// The last step to load.
    pub steps: u64,
    /// The first step to load (batch `first_step - 1` of the data).
    pub first_step: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Steps between hotness reports (0: never).
    pub hotness_every: u64,
    /// Rows of each table.
    pub table_rows: Vec<u64>,
    /// Threads preparing batches (at least 1).
    pub threads: usize,
}

/// A batch being prepared: its step and its buffer.
type Job = (u64, Prepared);

/// The loader stage: fills recycled buffers (from `ports`' input) with the next batches and
/// their unique-row maps, `job.steps` times, and keeps the row-hotness counts.
///
/// `job.threads` workers prepare batches at once: each makes a whole batch — generates it when
/// the dataset has random access (else one thread reads the stream in order and hands the batch
/// on) — and builds its row maps. This thread puts the batches back in step order and counts
/// hotness in that order, so the output is the same for any number of threads. Buffers are
/// taken in step order, so a batch waiting for an earlier one never holds up that one.
pub fn load<D: Device>(
    data: &dyn Dataset,
    job: LoadJob,
    ports: Ports<Prepared, Ready<D>>,
) -> Result<(), PipelineError> {
    let threads = job.threads.max(1);
    let free = ports.input();
    let (job_tx, job_rx) = bounded::<Job>(threads);
    let (done_tx, done_rx) = bounded::<Result<Job, PipelineError>>(threads);
    std::thread::scope(|scope| {
        let (job, done) = (&job, done_tx.clone());
        spawn(scope, "loader-read", move || {
            if let Err(e) = dispatch(data, job, &free, &job_tx) {
                let _ = done.send(Err(e));
            }
        })?;
        for _ in 0..threads {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            spawn(scope, "loader-work", move || {
                for (step, mut p) in jobs {
                    let made = prepare(data, job, step, &mut p).map(|()| (step, p));
                    if done.send(made).is_err() {
                        return;
                    }
                }
            })?;
        }
        drop((job_rx, done_tx));
        // Returns (dropping the ports, so the device stage sees the end) before the scope waits
        // for the helpers, which stop once their channels close.
        collect(job, done_rx, ports)
    })
}

/// Starts a helper thread of the loader.
fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &'static str,
    body: impl FnOnce() + Send + 'scope,
) -> Result<(), PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, body)
        .map(|_| ())
        .map_err(|source| PipelineError::Spawn {
            stage: "loader",
            source,
        })
}

/// Takes free buffers in step order and hands them to the workers; reads the stream here when
/// the dataset has no random access.
fn dispatch(
    data: &dyn Dataset,
    job: &LoadJob,
    free: &Receiver<Prepared>,
    jobs: &Sender<Job>,
) -> Result<(), PipelineError> {
    let mut stream = match data.random_access() {
        true => None,
        false => Some(data.open_train()?),
    };
    if let Some(s) = &mut stream
        && job.first_step > 1
    {
        // A resumed run: the stream's batches before the first step were trained already.
        let schema = data.schema();
        let mut skipped = Batch::new(schema.num_dense, schema.table_rows.len());
        for _ in 1..job.first_step {
            s.next_batch(job.batch_size, &mut skipped)?;
        }
    }
    for step in job.first_step..=job.steps {
        let Ok(mut p) = free.recv() else {
            return Ok(());
        };
        if let Some(s) = &mut stream {
            s.next_batch(job.batch_size, &mut p.batch)?;
        }
        if jobs.send((step, p)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A worker's part of a batch: the samples (with random access) and the row maps.
fn prepare(
    data: &dyn Dataset,
    job: &LoadJob,
    step: u64,
    p: &mut Prepared,
) -> Result<(), PipelineError> {
    if data.random_access() {
        data.batch_at(step - 1, job.batch_size, &mut p.batch)?;
    }
    for (map, bags) in p.maps.iter_mut().zip(&p.batch.sparse) {
        map.build(bags);
    }
    Ok(())
}

/// Puts prepared batches in step order, counts hotness, and sends them on.
fn collect<D: Device>(
    job: &LoadJob,
    done: Receiver<Result<Job, PipelineError>>,
    mut ports: Ports<Prepared, Ready<D>>,
) -> Result<(), PipelineError> {
    let mut hotness = (job.hotness_every > 0).then(|| HotnessTracker::new(&job.table_rows));
    let mut early = BTreeMap::new();
    for step in job.first_step..=job.steps {
        let mut p = loop {
            if let Some(p) = early.remove(&step) {
                break p;
            }
            match ports.wait(|| done.recv()) {
                Ok(made) => {
                    let (s, p) = made?;
                    early.insert(s, p);
                }
                // The helpers stopped without an error: the device stage stopped taking batches.
                Err(_) => return Ok(()),
            }
        };
        if let Some(h) = &mut hotness {
            for (t, map) in p.maps.iter().enumerate() {
                h.observe(t, map);
            }
        }
        p.hotness = match &hotness {
            Some(h) if step % job.hotness_every == 0 || step == job.steps => Some(h.counts()),
            _ => None,
        };
        p.times.clear();
        let ready = Ready {
            step,
            prepared: p,
            placed: None,
        };
        if !ports.finish(ready) {
            return Ok(());
        }
    }
    Ok(())
}

/// Seconds the loader stage takes to prepare `steps` batches of `batch_size` samples of `data`
/// on `threads` threads (row maps and hotness included), with nothing consuming them but a loop
/// that hands each buffer straight back: batch preparation alone (`rowflow bench data`).
pub fn time_loader(
    data: &dyn Dataset,
    batch_size: usize,
    steps: u64,
    threads: usize,
    hotness_every: u64,
) -> Result<f64, PipelineError> {
    use crate::device::cpu::CpuDevice;
    let schema = data.schema();
    let tables = schema.table_rows.len();
    let pool = threads.max(1) + 4;
    let (free_tx, free_rx) = bounded::<Prepared>(pool);
    for _ in 0..pool {
        let _ = free_tx.send(Prepared::new(schema.num_dense, tables));
    }
    let (ready_tx, ready_rx) = bounded::<Ready<CpuDevice>>(2);
    let job = LoadJob {
        steps,
        first_step: 1,
        batch_size,
        hotness_every,
        table_rows: schema.table_rows.iter().map(|&r| r as u64).collect(),
        threads,
    };
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        let ports = Ports::new("loader", free_rx, ready_tx);
        let loader = scope.spawn(move || load(data, job, ports));
        for ready in ready_rx {
            let _ = free_tx.send(ready.prepared);
        }
        // A loader that stopped early may wait for a buffer: closing the pool releases it.
        drop(free_tx);
        loader
            .join()
            .unwrap_or(Err(PipelineError::StageDied { stage: "loader" }))
    })?;
    Ok(started.elapsed().as_secs_f64())
}
