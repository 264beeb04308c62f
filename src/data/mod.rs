//! Training data: batches, datasets and the two sources (synthetic, Criteo TSV).
//!
//! A [`Dataset`] has a training split, read as an endless [`SampleStream`] of batches (epoch
//! after epoch, each epoch from its first sample, a partial last batch dropped), and a test split
//! held in memory as one [`Batch`] for evaluation.

pub mod criteo;
pub mod replay;
mod rowmap;
pub mod sequence;
mod split;
pub mod synthetic;

pub use rowmap::RowMap;
pub use split::{FeatureSplit, SplitDataset};

use std::path::PathBuf;

/// One table's lookups for a batch in CSR form: bag `b` reads the rows
/// `indices[offsets[b] .. offsets[b + 1]]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bags {
    /// `len + 1` entries, starting at 0, non-decreasing.
    pub offsets: Vec<u32>,
    /// Row ids, each below the table's row count.
    pub indices: Vec<u32>,
    /// The raw id behind each index, before any hashing into the table (a Criteo file's 64-bit
    /// categorical value), for representations that hash ids themselves (DHE). Empty when the
    /// source's ids are its rows (synthetic data).
    pub raw: Vec<u64>,
}

impl Bags {
    /// Empty bags (no samples yet).
    pub fn new() -> Self {
        Bags {
            offsets: vec![0],
            indices: Vec::new(),
            raw: Vec::new(),
        }
    }
    /// Number of bags.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    /// True when there are no bags.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends one bag.
    pub fn push(&mut self, rows: &[u32]) {
        self.indices.extend_from_slice(rows);
        self.offsets.push(self.indices.len() as u32);
    }
    /// Appends one bag of rows with the raw ids they were hashed from (one per row).
    pub fn push_raw(&mut self, rows: &[u32], raw: &[u64]) {
        debug_assert_eq!(rows.len(), raw.len());
        self.raw.extend_from_slice(raw);
        self.push(rows);
    }
    /// The rows of bag `b`.
    pub fn bag(&self, b: usize) -> &[u32] {
        &self.indices[self.offsets[b] as usize..self.offsets[b + 1] as usize]
    }
    /// The raw ids of bag `b`'s rows (empty when the source keeps none).
    fn raw_bag(&self, b: usize) -> &[u64] {
        match self.raw.is_empty() {
            true => &[],
            false => &self.raw[self.offsets[b] as usize..self.offsets[b + 1] as usize],
        }
    }
    /// Whether the rows are the ids (no raw ids kept).
    fn ids_are_rows(&self) -> bool {
        self.raw.is_empty()
    }
    /// Appends every lookup's id (the raw id, or the row when none is kept) to `out`.
    pub fn ids_into(&self, out: &mut Vec<u64>) {
        match self.ids_are_rows() {
            true => out.extend(self.indices.iter().map(|&r| u64::from(r))),
            false => out.extend_from_slice(&self.raw),
        }
    }
    fn clear(&mut self) {
        self.offsets.clear();
        self.offsets.push(0);
        self.indices.clear();
        self.raw.clear();
    }
}

/// One hashed feature's ids for a batch in CSR form: bag `b` holds the raw ids
/// `ids[offsets[b] .. offsets[b + 1]]` (what a DHE embeds; no table, so no row range).
#[derive(Clone, Debug, PartialEq)]
pub struct IdBags {
    /// `len + 1` entries, starting at 0, non-decreasing.
    pub offsets: Vec<u32>,
    /// Raw 64-bit ids.
    pub ids: Vec<u64>,
}

impl Default for IdBags {
    fn default() -> Self {
        IdBags {
            offsets: vec![0],
            ids: Vec::new(),
        }
    }
}

impl IdBags {
    /// Number of bags.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    /// True when there are no bags.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Replaces the contents with `bags`' ids (raw ids, or rows when it keeps none).
    pub fn copy_ids(&mut self, bags: &Bags) {
        self.offsets.clone_from(&bags.offsets);
        self.ids.clear();
        bags.ids_into(&mut self.ids);
    }
    fn clear(&mut self) {
        self.offsets.clear();
        self.offsets.push(0);
        self.ids.clear();
    }
}

/// A batch of samples, column by column.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Dense features per sample.
    pub num_dense: usize,
    /// `len × num_dense` dense features, row-major.
    pub dense: Vec<f32>,
    /// `len` labels in {0, 1}.
    pub labels: Vec<f32>,
    /// One entry per table.
    pub sparse: Vec<Bags>,
    /// One entry per hashed (DHE) feature, after a [`FeatureSplit`]; empty from the sources.
    pub hashed: Vec<IdBags>,
}

impl Batch {
    /// An empty batch for `num_dense` dense features and `tables` tables.
    pub fn new(num_dense: usize, tables: usize) -> Self {
        Batch {
            num_dense,
            dense: Vec::new(),
            labels: Vec::new(),
            sparse: vec![Bags::new(); tables],
            hashed: Vec::new(),
        }
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when the batch holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Removes all samples, keeping the allocations.
    pub fn clear(&mut self) {
        self.dense.clear();
        self.labels.clear();
        self.sparse.iter_mut().for_each(Bags::clear);
        self.hashed.iter_mut().for_each(IdBags::clear);
    }
    /// Appends sample `i` of `other` (same schema).
    pub fn push_from(&mut self, other: &Batch, i: usize) {
        let d = self.num_dense;
        self.dense
            .extend_from_slice(&other.dense[i * d..(i + 1) * d]);
        self.labels.push(other.labels[i]);
        for (mine, theirs) in self.sparse.iter_mut().zip(&other.sparse) {
            match theirs.ids_are_rows() {
                true => mine.push(theirs.bag(i)),
                false => mine.push_raw(theirs.bag(i), theirs.raw_bag(i)),
            }
        }
        self.hashed.resize_with(other.hashed.len(), IdBags::default);
        for (mine, theirs) in self.hashed.iter_mut().zip(&other.hashed) {
            let (a, b) = (theirs.offsets[i] as usize, theirs.offsets[i + 1] as usize);
            mine.ids.extend_from_slice(&theirs.ids[a..b]);
            mine.offsets.push(mine.ids.len() as u32);
        }
    }
    /// Replaces `out`'s contents with samples `start .. start + len` of `self`.
    pub fn copy_range_into(&self, start: usize, len: usize, out: &mut Batch) {
        out.clear();
        let d = self.num_dense;
        out.num_dense = d;
        out.dense
            .extend_from_slice(&self.dense[start * d..(start + len) * d]);
        out.labels
            .extend_from_slice(&self.labels[start..start + len]);
        out.sparse.resize_with(self.sparse.len(), Bags::new);
        for (o, s) in out.sparse.iter_mut().zip(&self.sparse) {
            let base = s.offsets[start];
            let end = s.offsets[start + len];
            o.indices
                .extend_from_slice(&s.indices[base as usize..end as usize]);
            if !s.raw.is_empty() {
                o.raw.extend_from_slice(&s.raw[base as usize..end as usize]);
            }
            o.offsets
                .extend(s.offsets[start + 1..=start + len].iter().map(|x| x - base));
        }
        out.hashed.resize_with(self.hashed.len(), IdBags::default);
        for (o, s) in out.hashed.iter_mut().zip(&self.hashed) {
            let (base, end) = (s.offsets[start], s.offsets[start + len]);
            o.ids.extend_from_slice(&s.ids[base as usize..end as usize]);
            o.offsets
                .extend(s.offsets[start + 1..=start + len].iter().map(|x| x - base));
        }
    }
}

/// The shape of a dataset's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// Dense features per sample.
    pub num_dense: usize,
    /// Rows of each embedding table (one table per sparse feature).
    pub table_rows: Vec<u32>,
}

/// A source of training batches that never ends: after the last full batch of an epoch it starts
/// the next epoch from the first sample (a partial last batch is dropped).
pub trait SampleStream: Send {
    /// Replaces `out` with the next `batch_size` samples.
    fn next_batch(&mut self, batch_size: usize, out: &mut Batch) -> Result<(), DataError>;
}

/// A dataset: a streamed training split and an in-memory test split.
pub trait Dataset: Send + Sync {
    /// `synthetic` or the file's path, for summaries.
    fn name(&self) -> String;
    /// Dense feature count and table sizes.
    fn schema(&self) -> &Schema;
    /// Samples in one epoch of the training split.
    fn train_samples(&self) -> u64;
    /// Opens the training split at its first sample.
    fn open_train(&self) -> Result<Box<dyn SampleStream + '_>, DataError>;
    /// Whether [`Dataset::batch_at`] makes training batches — any batch, in any order, on any
    /// thread (synthetic data) — so the loader can prepare several at once. Otherwise they come
    /// in order from [`Dataset::open_train`].
    fn random_access(&self) -> bool {
        false
    }
    /// Replaces `out` with training batch `k` (0-based) of `batch_size` samples: the `k`-th batch
    /// [`Dataset::open_train`]'s stream yields (epoch after epoch, a partial last batch dropped).
    /// Only for datasets with [`Dataset::random_access`].
    fn batch_at(&self, k: u64, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        let _ = (k, batch_size, out);
        Err(DataError::Invalid(format!(
            "{} cannot make batch {k} on its own: read it in order",
            self.name()
        )))
    }
    /// The test split.
    fn test(&self) -> &Batch;
    /// The AUC of the process that generated the labels, on the test split (synthetic data
    /// only): the ceiling a model can reach.
    fn teacher_auc(&self) -> Option<f64>;
    /// Malformed lines skipped while reading (`--skip-bad-lines`).
    fn skipped_lines(&self) -> u64;
    /// The first few skipped lines' error messages (`PATH:LINE: …`), to show the user.
    fn skipped_examples(&self) -> &[String] {
        &[]
    }
}

/// Errors reading or generating data. Input errors name the place as `PATH:LINE:`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file cannot be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line that does not parse.
    #[error("{}:{line}: {}{message}", path.display(), field.as_ref().map(|f| format!("field {f}: ")).unwrap_or_default())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field's name (`label`, `I3`, `C12`) when one field is at fault.
        field: Option<String>,
        /// What was expected and what was found.
        message: String,
    },
    /// The file holds no usable samples.
    #[error("{}: {message}", path.display())]
    NoSamples {
        /// The file.
        path: PathBuf,
        /// What is missing and what to do.
        message: String,
    },
    /// Settings that cannot produce data.
    #[error("{0}")]
    Invalid(String),
}
