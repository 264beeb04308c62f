//! A dataset of batches held in memory and replayed: benchmarks generate their workload once
//! and train every configuration on the very same batches, with no generator in the loop.

use super::{Batch, DataError, Dataset, SampleStream, Schema};

/// Pre-made training batches (all of one size) and a test split.
pub struct Replay {
    name: String,
    schema: Schema,
    batches: Vec<Batch>,
    test: Batch,
}

impl Replay {
    /// Replays `batches` (at least one; all the same size) with `test` as the test split.
    pub fn new(
        name: &str,
        schema: Schema,
        batches: Vec<Batch>,
        test: Batch,
    ) -> Result<Self, DataError> {
        let Some(first) = batches.first() else {
            return Err(DataError::Invalid(
                "a replay needs at least one batch".into(),
            ));
        };
        if batches.iter().any(|b| b.len() != first.len()) {
            return Err(DataError::Invalid(
                "replayed batches must all have the same size".into(),
            ));
        }
        Ok(Replay {
            name: name.into(),
            schema,
            batches,
            test,
        })
    }

    /// Samples per replayed batch.
    pub fn batch_size(&self) -> usize {
        self.batches[0].len()
    }
}

struct ReplayStream<'a> {
    data: &'a Replay,
    next: usize,
}

impl SampleStream for ReplayStream<'_> {
    fn next_batch(&mut self, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        let b = &self.data.batches[self.next % self.data.batches.len()];
        if batch_size != b.len() {
            return Err(DataError::Invalid(format!(
                "the replayed batches hold {} samples; use --batch-size {}",
                b.len(),
                b.len()
            )));
        }
        out.clone_from(b);
        self.next += 1;
        Ok(())
    }
}

impl Dataset for Replay {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn train_samples(&self) -> u64 {
        (self.batches.len() * self.batch_size()) as u64
    }
    fn open_train(&self) -> Result<Box<dyn SampleStream + '_>, DataError> {
        Ok(Box::new(ReplayStream {
            data: self,
            next: 0,
        }))
    }
    fn test(&self) -> &Batch {
        &self.test
    }
    fn teacher_auc(&self) -> Option<f64> {
        None
    }
    fn skipped_lines(&self) -> u64 {
        0
    }
}
