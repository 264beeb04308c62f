//! The loader stage: reads or generates batches, builds their unique-row maps and counts row
//! hotness, ahead of the device. Batch buffers circulate between the loader and the device
//! stage, so nothing is allocated per step.

use super::stage::{Laps, Ports};
use super::{PipelineError, Ready};
use crate::data::{Batch, RowMap, SampleStream};
use crate::device::Device;
use crate::embedding::hotness::{HotnessCounts, HotnessTracker};
use crate::telemetry::StageTime;

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
    /// Batches to load.
    pub steps: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Steps between hotness reports (0: never).
    pub hotness_every: u64,
    /// Rows of each table.
    pub table_rows: Vec<u64>,
}

/// The loader stage: fills recycled buffers (from `ports`' input) with the next batches and
/// their unique-row maps, `job.steps` times, and keeps the row-hotness counts.
pub fn load<D: Device>(
    mut stream: Box<dyn SampleStream + '_>,
    job: LoadJob,
    mut ports: Ports<Prepared, Ready<D>>,
) -> Result<(), PipelineError> {
    let mut hotness = (job.hotness_every > 0).then(|| HotnessTracker::new(&job.table_rows));
    for step in 1..=job.steps {
        let Some(mut p) = ports.recv() else {
            return Ok(());
        };
        stream.next_batch(job.batch_size, &mut p.batch)?;
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
