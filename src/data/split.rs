//! Features split between tables and hashed representations: a model with DHE features
//! (`model::Representation`) takes batches whose `sparse` holds only the table features' lookups
//! and whose `hashed` holds the DHE features' raw ids. [`SplitDataset`] makes such batches from any
//! dataset, so the loader, the lookahead planner and the hotness counts see only tables.

use super::{Bags, Batch, DataError, Dataset, IdBags, SampleStream, Schema};
use std::cell::RefCell;

/// Which sparse features keep table lookups and which are hashed; a feature may be both (a
/// hybrid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSplit {
    /// Features looked up in tables, in order.
    pub tables: Vec<usize>,
    /// Features whose raw ids are hashed, in order.
    pub hashed: Vec<usize>,
}

impl FeatureSplit {
    /// The schema of split batches: the tables' rows only.
    pub fn schema(&self, schema: &Schema) -> Schema {
        Schema {
            num_dense: schema.num_dense,
            table_rows: self.tables.iter().map(|&f| schema.table_rows[f]).collect(),
        }
    }

    /// Replaces `out` with `from` split: the table features' lookups (without raw ids, which
    /// only hashing reads) and the hashed features' ids. Reuses `out`'s allocations.
    pub fn apply(&self, from: &Batch, out: &mut Batch) {
        out.num_dense = from.num_dense;
        out.dense.clone_from(&from.dense);
        out.labels.clone_from(&from.labels);
        out.sparse.resize_with(self.tables.len(), Bags::new);
        for (o, &f) in out.sparse.iter_mut().zip(&self.tables) {
            let s = &from.sparse[f];
            o.offsets.clone_from(&s.offsets);
            o.indices.clone_from(&s.indices);
            o.raw.clear();
        }
        out.hashed.resize_with(self.hashed.len(), IdBags::default);
        for (o, &f) in out.hashed.iter_mut().zip(&self.hashed) {
            o.copy_ids(&from.sparse[f]);
        }
    }
}

/// A dataset whose batches are split by a [`FeatureSplit`] (its test split once, up front).
pub struct SplitDataset<'a> {
    inner: &'a dyn Dataset,
    split: FeatureSplit,
    schema: Schema,
    test: Batch,
}

impl<'a> SplitDataset<'a> {
    /// `inner` split as `split` says; errors on a feature past the dataset's.
    pub fn new(inner: &'a dyn Dataset, split: FeatureSplit) -> Result<Self, DataError> {
        let features = inner.schema().table_rows.len();
        if let Some(&f) = split
            .tables
            .iter()
            .chain(&split.hashed)
            .find(|&&f| f >= features)
        {
            return Err(DataError::Invalid(format!(
                "feature {f} does not exist: {} has {features} sparse features (0 to {})",
                inner.name(),
                features.saturating_sub(1)
            )));
        }
        let mut test = Batch::new(0, 0);
        split.apply(inner.test(), &mut test);
        Ok(SplitDataset {
            schema: split.schema(inner.schema()),
            inner,
            split,
            test,
        })
    }
}

thread_local! {
    /// A worker's unsplit batch (random-access datasets make batches on several threads).
    static UNSPLIT: RefCell<Batch> = RefCell::new(Batch::new(0, 0));
}

/// The unsplit batch buffer for `schema`'s data.
fn fresh(schema: &Schema) -> Batch {
    Batch::new(schema.num_dense, schema.table_rows.len())
}

impl Dataset for SplitDataset<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn train_samples(&self) -> u64 {
        self.inner.train_samples()
    }
    fn open_train(&self) -> Result<Box<dyn SampleStream + '_>, DataError> {
        Ok(Box::new(SplitStream {
            inner: self.inner.open_train()?,
            unsplit: fresh(self.inner.schema()),
            split: &self.split,
        }))
    }
    fn random_access(&self) -> bool {
        self.inner.random_access()
    }
    fn batch_at(&self, k: u64, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        UNSPLIT.with_borrow_mut(|unsplit| {
            let schema = self.inner.schema();
            if unsplit.sparse.len() != schema.table_rows.len() {
                *unsplit = fresh(schema);
            }
            self.inner.batch_at(k, batch_size, unsplit)?;
            self.split.apply(unsplit, out);
            Ok(())
        })
    }
    fn test(&self) -> &Batch {
        &self.test
    }
    fn teacher_auc(&self) -> Option<f64> {
        self.inner.teacher_auc()
    }
    fn skipped_lines(&self) -> u64 {
        self.inner.skipped_lines()
    }
    fn skipped_examples(&self) -> &[String] {
        self.inner.skipped_examples()
    }
}

/// The training stream of a [`SplitDataset`].
struct SplitStream<'a> {
    inner: Box<dyn SampleStream + 'a>,
    unsplit: Batch,
    split: &'a FeatureSplit,
}

impl SampleStream for SplitStream<'_> {
    fn next_batch(&mut self, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        self.inner.next_batch(batch_size, &mut self.unsplit)?;
        self.split.apply(&self.unsplit, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{SyntheticDataset, SyntheticOptions};

    #[test]
    fn split_batches_keep_table_lookups_and_hash_the_rest() {
        let opts = SyntheticOptions {
            train_samples: 40,
            test_samples: 10,
            tables: 3,
            ..SyntheticOptions::default()
        };
        let ds = SyntheticDataset::new(&opts, &[50, 60, 70], 3).unwrap();
        // Feature 1 is a hybrid (both), 2 hashed only.
        let split = FeatureSplit {
            tables: vec![0, 1],
            hashed: vec![1, 2],
        };
        let sd = SplitDataset::new(&ds, split.clone()).unwrap();
        assert_eq!(sd.schema().table_rows, vec![50, 60]);
        let (mut whole, mut part) = (Batch::new(ds.schema().num_dense, 3), Batch::new(0, 0));
        ds.batch_at(2, 8, &mut whole).unwrap();
        sd.batch_at(2, 8, &mut part).unwrap();
        assert_eq!(part.labels, whole.labels);
        assert_eq!(part.sparse, whole.sparse[..2].to_vec());
        let ids: Vec<u64> = whole.sparse[2].indices.iter().map(|&r| r as u64).collect();
        assert_eq!(part.hashed[1].ids, ids);
        assert_eq!(part.hashed[0].offsets, whole.sparse[1].offsets);
        // The stream splits the same batches, and the test split is split once.
        let mut s = sd.open_train().unwrap();
        for _ in 0..3 {
            s.next_batch(8, &mut part).unwrap();
        }
        assert_eq!(part.sparse, whole.sparse[..2].to_vec());
        assert_eq!(sd.test().hashed.len(), 2);
        let bad = FeatureSplit {
            tables: vec![0],
            hashed: vec![3],
        };
        let e = SplitDataset::new(&ds, bad).err().unwrap().to_string();
        assert!(e.contains("feature 3 does not exist"), "{e}");
    }
}
