//! Seeded synthetic click data with a known ceiling.
//!
//! Every sample `i` (training samples first, then test samples, on one time axis) is generated
//! from its own PCG stream seeded by `(seed, i)`, so any sample can be produced alone, in any
//! order, on any thread, and always comes out the same.
//!
//! **Features.** `dense_features` values drawn from N(0, 1). For each of the `tables` sparse
//! features, `pooling_factor` rows: a popularity rank `r` is drawn from Zipf(`zipf_alpha`) over
//! the table's rows (exactly, an alias table for the hottest ranks: `zipf.rs`), shifted by the drift (below) and mapped to a row id by a per-table
//! pseudo-random permutation (a 4-round Feistel network with cycle walking), so that hot rows are
//! scattered over the table as in real data.
//!
//! **Drift.** The hot set moves slowly: at sample `i` the rank-to-row map is shifted by
//! `s = i / drift_samples_per_rank` ranks (rank `r` maps to the row that had rank `r + s` at the
//! start). Rows climb towards the head over time and the head row of one period falls to the cold
//! tail, as items gain and lose popularity. `drift_samples_per_rank = 0` turns drift off.
//!
//! **Labels** come from a hidden teacher, a small DLRM with `teacher_dim`-dimensional embeddings
//! whose weights are pure functions of the seed (a hash of table, row and component, so even
//! tables of billions of rows cost no memory). With `p_0 = V·x / √F` (the dense features seen
//! through a random projection) and `p_t` the pooled teacher embeddings of table `t` scaled by
//! `1/√L`, the logit is
//! `bias + scale · (Σ_{i<j} g_ij ⟨p_i, p_j⟩ / √k + Σ_i ⟨a_i, p_i⟩)`,
//! with `g` and `a` random and normalised so that both sums have unit variance. The sparse
//! features take part in every term and the dense ones in a fraction, so labels are mostly driven
//! by the sparse features. The label is Bernoulli(sigmoid(logit)): that sampling is the noise,
//! and the teacher's own test AUC (`teacher_auc`) is the ceiling any model can reach.

mod options;
mod permutation;
mod teacher;
mod zipf;

pub use self::options::SyntheticOptions;
pub use self::permutation::Permutation;

use self::teacher::Teacher;
use super::{Batch, DataError, Dataset, SampleStream, Schema};
use crate::metrics::auc;
use crate::rng::splitmix64;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;
use std::cell::RefCell;
use std::sync::Arc;
use zipf::ZipfRanks;

/// The synthetic dataset: a generator for any sample index plus the materialised test split.
pub struct SyntheticDataset {
    opts: SyntheticOptions,
    seed: u64,
    schema: Schema,
    perms: Vec<Permutation>,
    /// Per table (tables of the same size share one).
    zipfs: Vec<Arc<ZipfRanks>>,
    teacher: Teacher,
    test: Batch,
    teacher_auc: f64,
}

impl SyntheticDataset {
    /// Builds the generator for tables of `table_rows` rows (one value per table) and generates
    /// the test split.
    pub fn new(opts: &SyntheticOptions, table_rows: &[u32], seed: u64) -> Result<Self, DataError> {
        let invalid = |m: String| Err(DataError::Invalid(m));
        if opts.tables == 0 {
            return invalid("synthetic.tables must be at least 1".into());
        }
        if table_rows.len() != opts.tables {
            return invalid(format!(
                "table_rows has {} values for {} synthetic tables",
                table_rows.len(),
                opts.tables
            ));
        }
        if table_rows.contains(&0) {
            return invalid("every table needs at least one row".into());
        }
        if opts.teacher_dim == 0 {
            return invalid("synthetic.teacher_dim must be at least 1".into());
        }
        let mut zipfs: Vec<Arc<ZipfRanks>> = Vec::with_capacity(table_rows.len());
        for (t, &rows) in table_rows.iter().enumerate() {
            let same = table_rows[..t].iter().position(|&r| r == rows);
            let z = match same {
                Some(j) => zipfs[j].clone(),
                None => Arc::new(ZipfRanks::new(rows as u64, opts.zipf_alpha).map_err(|e| {
                    DataError::Invalid(format!("synthetic.zipf_alpha {}: {e}", opts.zipf_alpha))
                })?),
            };
            zipfs.push(z);
        }
        let perms = Permutation::per_table(table_rows, seed);
        let schema = Schema {
            num_dense: opts.dense_features,
            table_rows: table_rows.to_vec(),
        };
        let mut ds = SyntheticDataset {
            opts: opts.clone(),
            seed,
            schema,
            perms,
            zipfs,
            teacher: Teacher::new(opts, seed),
            test: Batch::new(opts.dense_features, opts.tables),
            teacher_auc: f64::NAN,
        };
        let mut test = Batch::new(opts.dense_features, opts.tables);
        let mut probs = Vec::with_capacity(opts.test_samples as usize);
        let start = opts.train_samples;
        for i in start..start + opts.test_samples {
            probs.push(ds.sample_into(i, &mut test));
        }
        ds.teacher_auc = auc(&probs, &test.labels);
        ds.test = test;
        Ok(ds)
    }

    /// Appends sample `i` (training samples are `0..train_samples`, test samples follow) to
    /// `out` and returns the teacher's click probability for it.
    pub fn sample_into(&self, i: u64, out: &mut Batch) -> f64 {
        // Scratch per thread: generating a batch allocates nothing once it has run.
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::default();
        }
        SCRATCH.with_borrow_mut(|scratch| self.sample_with(i, out, scratch))
    }

    fn sample_with(&self, i: u64, out: &mut Batch, scratch: &mut Scratch) -> f64 {
        let mut rng = Pcg64Mcg::seed_from_u64(splitmix64(self.seed ^ splitmix64(i)));
        let d0 = out.dense.len();
        for _ in 0..self.opts.dense_features {
            let x: f64 = StandardNormal.sample(&mut rng);
            out.dense.push(x as f32);
        }
        let shift = i.checked_div(self.opts.drift_samples_per_rank).unwrap_or(0);
        let l = self.opts.pooling_factor;
        let Scratch {
            rows,
            weights,
            vecs,
        } = scratch;
        rows.clear();
        weights.clear();
        for (t, bags) in out.sparse.iter_mut().enumerate() {
            let n = self.schema.table_rows[t] as u64;
            for _ in 0..l {
                let rank = self.zipfs[t].sample(&mut rng);
                let row = self.perms[t].apply((rank + shift) % n) as u32;
                bags.indices.push(row);
                rows.push(row);
                weights.push(self.rank_weight(rank));
            }
            bags.offsets.push(bags.indices.len() as u32);
        }
        let logit = self.teacher.logit(&out.dense[d0..], rows, weights, l, vecs);
        let p = 1.0 / (1.0 + (-logit).exp());
        let label = rng.random::<f64>() < p;
        out.labels.push(if label { 1.0 } else { 0.0 });
        p
    }

    /// Weight of a row of popularity `rank` (0 = hottest) in the teacher: `1 / (1 + rank / R)`
    /// with `R = teacher_tail_rank` (1 for every row when `R` is 0).
    fn rank_weight(&self, rank: u64) -> f64 {
        let r0 = self.opts.teacher_tail_rank;
        if r0 > 0.0 {
            1.0 / (1.0 + rank as f64 / r0)
        } else {
            1.0
        }
    }

    /// The generator's settings.
    pub fn options(&self) -> &SyntheticOptions {
        &self.opts
    }
}

/// Per-sample working memory of [`SyntheticDataset::sample_into`].
#[derive(Default)]
struct Scratch {
    /// The sample's rows, table-major.
    rows: Vec<u32>,
    /// The teacher's weight of each row.
    weights: Vec<f64>,
    /// The teacher's vectors.
    vecs: Vec<f64>,
}

struct SyntheticStream<'a> {
    ds: &'a SyntheticDataset,
    next: u64,
}

impl SyntheticDataset {
    /// Checks that batches of `batch_size` fit the training split.
    fn check_batch(&self, batch_size: usize) -> Result<(), DataError> {
        let n = self.opts.train_samples;
        if batch_size == 0 || batch_size as u64 > n {
            return Err(DataError::Invalid(format!(
                "batch size {batch_size} does not fit the {n} training samples; \
                 use a batch size between 1 and {n}"
            )));
        }
        Ok(())
    }

    /// Replaces `out` with samples `first .. first + len`.
    fn samples_into(&self, first: u64, len: usize, out: &mut Batch) {
        out.clear();
        for i in first..first + len as u64 {
            self.sample_into(i, out);
        }
    }
}

impl SampleStream for SyntheticStream<'_> {
    fn next_batch(&mut self, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        self.ds.check_batch(batch_size)?;
        if self.next + batch_size as u64 > self.ds.opts.train_samples {
            self.next = 0; // a partial last batch is dropped; the next epoch starts
        }
        self.ds.samples_into(self.next, batch_size, out);
        self.next += batch_size as u64;
        Ok(())
    }
}

impl Dataset for SyntheticDataset {
    fn name(&self) -> String {
        "synthetic".into()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn train_samples(&self) -> u64 {
        self.opts.train_samples
    }
    fn open_train(&self) -> Result<Box<dyn SampleStream + '_>, DataError> {
        Ok(Box::new(SyntheticStream { ds: self, next: 0 }))
    }
    fn random_access(&self) -> bool {
        true
    }
    fn batch_at(&self, k: u64, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        self.check_batch(batch_size)?;
        let per_epoch = self.opts.train_samples / batch_size as u64;
        self.samples_into((k % per_epoch) * batch_size as u64, batch_size, out);
        Ok(())
    }
    fn test(&self) -> &Batch {
        &self.test
    }
    fn teacher_auc(&self) -> Option<f64> {
        Some(self.teacher_auc)
    }
    fn skipped_lines(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default generator with `train_samples` and `test_samples` samples.
    fn sized(train_samples: u64, test_samples: u64) -> SyntheticOptions {
        SyntheticOptions {
            train_samples,
            test_samples,
            ..Default::default()
        }
    }

    fn small() -> SyntheticOptions {
        sized(2000, 4000)
    }

    /// [`small`] with one table, its hot set shifted a rank every `drift_samples_per_rank`
    /// samples (0: never).
    fn one_table(drift_samples_per_rank: u64) -> SyntheticOptions {
        SyntheticOptions {
            tables: 1,
            drift_samples_per_rank,
            ..small()
        }
    }

    #[test]
    fn samples_are_reproducible_and_in_range() {
        let rows = vec![1000u32; 8];
        let a = SyntheticDataset::new(&small(), &rows, 7).unwrap();
        let b = SyntheticDataset::new(&small(), &rows, 7).unwrap();
        let (mut x, mut y) = (Batch::new(13, 8), Batch::new(13, 8));
        for i in [0u64, 5, 1999] {
            a.sample_into(i, &mut x);
            b.sample_into(i, &mut y);
        }
        assert_eq!(x, y);
        assert!(
            x.sparse
                .iter()
                .all(|bags| bags.indices.iter().all(|&r| r < 1000))
        );
        assert!(
            x.sparse
                .iter()
                .all(|bags| bags.len() == 3 && bags.indices.len() == 12)
        );
        let c = SyntheticDataset::new(&small(), &rows, 8).unwrap();
        let mut z = Batch::new(13, 8);
        for i in [0u64, 5, 1999] {
            c.sample_into(i, &mut z);
        }
        assert_ne!(x, z, "a different seed gives different data");
    }

    #[test]
    fn popularity_is_skewed_and_hot_rows_are_scattered() {
        let rows = vec![10_000u32; 1];
        let ds = SyntheticDataset::new(&one_table(0), &rows, 3).unwrap();
        let mut counts = vec![0u32; 10_000];
        for &r in &ds.test().sparse[0].indices {
            counts[r as usize] += 1;
        }
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top100: u32 = sorted[..100].iter().sum();
        let total: u32 = sorted.iter().sum();
        // Zipf(1.05) over 10,000 rows puts about half of the mass on the top 100 ranks.
        assert!(
            top100 as f64 > 0.4 * total as f64,
            "top100 {top100} of {total}"
        );
        let hottest = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .unwrap()
            .0;
        assert_ne!(
            hottest, 0,
            "the permutation moves the hottest rank away from row 0"
        );
    }

    #[test]
    fn hot_set_drifts() {
        let ds = SyntheticDataset::new(&one_table(10), &[1000], 3).unwrap();
        // Rank 0 at sample i maps to perm(i / 10): the hottest row changes over time.
        assert_ne!(ds.perms[0].apply(0), ds.perms[0].apply(100));
    }

    #[test]
    fn teacher_auc_is_in_the_target_band_and_labels_are_mixed() {
        let rows = vec![100_000u32; 8];
        let ds = SyntheticDataset::new(&sized(10, 50_000), &rows, 42).unwrap();
        let auc = ds.teacher_auc().unwrap();
        assert!((0.75..=0.90).contains(&auc), "teacher AUC {auc}");
        let ctr = ds.test().labels.iter().sum::<f32>() / ds.test().len() as f32;
        assert!((0.1..0.6).contains(&ctr), "click rate {ctr}");
    }

    #[test]
    fn batch_at_is_the_streams_kth_batch_across_epochs() {
        let ds = SyntheticDataset::new(&sized(10, 5), &[50; 8], 1).unwrap();
        let mut s = ds.open_train().unwrap();
        let (mut a, mut b) = (Batch::new(13, 8), Batch::new(13, 8));
        for k in 0..7 {
            s.next_batch(3, &mut a).unwrap();
            ds.batch_at(k, 3, &mut b).unwrap();
            assert_eq!(a, b, "batch {k}");
        }
        assert!(ds.batch_at(0, 11, &mut b).is_err());
    }

    #[test]
    fn stream_wraps_and_drops_the_partial_batch() {
        let ds = SyntheticDataset::new(&sized(10, 5), &[50; 8], 1).unwrap();
        let mut s = ds.open_train().unwrap();
        let mut b = Batch::new(13, 8);
        let mut first = Batch::new(13, 8);
        s.next_batch(4, &mut first).unwrap();
        s.next_batch(4, &mut b).unwrap();
        s.next_batch(4, &mut b).unwrap(); // samples 8, 9 are dropped: back to 0..4
        assert_eq!(b, first);
        assert!(s.next_batch(11, &mut b).is_err());
        assert!(s.next_batch(0, &mut b).is_err());
    }
}
