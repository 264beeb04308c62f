//! The loader thread: reads or generates batches, builds their unique-row maps and counts row
//! hotness, ahead of the device; batch buffers are recycled, so nothing is allocated per step.

use crate::data::RowMap;
use crate::data::{Batch, DataError, SampleStream};
use crate::embedding::hotness::{HotnessCounts, HotnessTracker};
use crossbeam_channel::{Receiver, Sender};
use std::time::Instant;

/// A batch with its unique-row maps, passed from the loader to the device stage and back.
pub(crate) struct Prepared {
    pub batch: Batch,
    pub maps: Vec<RowMap>,
    pub busy_s: f64,
    pub waiting_s: f64,
    /// Row hotness so far, on the steps that report it.
    pub hotness: Option<HotnessCounts>,
}

impl Prepared {
    /// An empty buffer for `tables` tables of batches with `num_dense` dense features.
    pub fn new(num_dense: usize, tables: usize) -> Self {
        Prepared {
            batch: Batch::new(num_dense, tables),
            maps: vec![RowMap::new(); tables],
            busy_s: 0.0,
            waiting_s: 0.0,
            hotness: None,
        }
    }
}

/// What the loader thread produces.
pub(crate) struct LoadJob {
    pub steps: u64,
    pub batch_size: usize,
    pub hotness_every: u64,
    pub tables: usize,
}

/// The loader thread: fills recycled batches and their unique-row maps, `steps` times, and
/// keeps the row-hotness counts.
pub(crate) fn load(
    mut stream: Box<dyn SampleStream + '_>,
    job: LoadJob,
    free: Receiver<Prepared>,
    full: Sender<Result<Prepared, DataError>>,
) {
    crate::pipeline::background();
    let mut blocked_s = 0.0;
    let mut hotness = (job.hotness_every > 0).then(|| HotnessTracker::new(job.tables));
    for step in 1..=job.steps {
        let t_wait = Instant::now();
        let Ok(mut p) = free.recv() else { return };
        let waiting_s = blocked_s + t_wait.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        if let Err(e) = stream.next_batch(job.batch_size, &mut p.batch) {
            let _ = full.send(Err(e));
            return;
        }
        for (t, (map, bags)) in p.maps.iter_mut().zip(&p.batch.sparse).enumerate() {
            map.build(bags);
            if let Some(h) = &mut hotness {
                h.observe(t, map);
            }
        }
        p.hotness = match &hotness {
            Some(h) if step % job.hotness_every == 0 || step == job.steps => Some(h.counts()),
            _ => None,
        };
        p.busy_s = t_busy.elapsed().as_secs_f64();
        p.waiting_s = waiting_s;
        let t_send = Instant::now();
        if full.send(Ok(p)).is_err() {
            return;
        }
        blocked_s = t_send.elapsed().as_secs_f64();
    }
}
