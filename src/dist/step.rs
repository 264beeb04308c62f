//! One rank's training state and one step of it: the rank's slice of the global batch, its
//! lookups through the exchange, the dense layers forward and backward, the dense gradients
//! summed over the ranks, the embedding gradients back to their rows' owners.

use super::DistError;
use super::collective::{Collective, CollectiveExt};
use super::exchange::{Exchange, pool};
use super::shard::ShardStore;
use super::traffic::Phase;
use crate::data::{Bags, Batch, DataError, SampleStream};
use crate::device::{Device, Pooling};
use crate::model::Dlrm;
use crossbeam_channel::Receiver;

/// The bounds of `rank`'s slice of `len` samples.
pub(super) fn slice(len: usize, rank: usize, n: usize) -> (usize, usize) {
    (len * rank / n, len * (rank + 1) / n)
}

/// This rank's slices of the global batches `stream` reads, `b` samples each, read on a thread
/// of `scope` two steps ahead (the single-process loader overlaps reading the same way); each
/// comes with its global batch's size.
pub(super) fn slices<'s, 'e>(
    scope: &'s std::thread::Scope<'s, 'e>,
    mut stream: Box<dyn SampleStream + 'e>,
    steps: u64,
    b: usize,
    (me, n): (usize, usize),
    (num_dense, tables): (usize, usize),
) -> Receiver<Result<(Batch, usize), DataError>> {
    let (tx, rx) = crossbeam_channel::bounded(2);
    scope.spawn(move || {
        let mut global = Batch::new(num_dense, tables);
        for _ in 0..steps {
            let next = stream.next_batch(b, &mut global).map(|()| {
                let (lo, hi) = slice(global.len(), me, n);
                let mut local = Batch::new(num_dense, tables);
                global.copy_range_into(lo, hi - lo, &mut local);
                (local, global.len())
            });
            let failed = next.is_err();
            // A closed channel: the run ended (or failed) first.
            if tx.send(next).is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// One rank's training state.
pub(super) struct Run<'c, D: Device, C: Collective + ?Sized> {
    pub coll: &'c C,
    pub model: Dlrm<D>,
    pub store: ShardStore,
    pub exch: Exchange<'c, C>,
    pub pooling: Pooling,
    /// Vectors per sample the dense part takes, and the first of each table's.
    pub tables_vec: (usize, Vec<usize>),
    pub emb_lr: f32,
    pub lr: f32,
    pub grads: Vec<f32>,
}

impl<D: Device, C: Collective + ?Sized> Run<'_, D, C> {
    /// Pools `sparse`'s lookups (vectors from the exchange) into the dense part's layout.
    pub fn pooled(&mut self, sparse: &[Bags], samples: usize) -> Result<Vec<f32>, DistError> {
        let (v, dim) = (self.tables_vec.0, self.store.dim());
        let vectors = self.exch.forward(&self.store, sparse)?;
        let mut pooled = vec![0f32; samples * v * dim];
        if samples > 0 {
            for (t, bags) in sparse.iter().enumerate() {
                let at = self.tables_vec.1[t] * dim;
                pool(
                    &vectors[t],
                    bags,
                    dim,
                    self.pooling,
                    &mut pooled,
                    v * dim,
                    at,
                )?;
            }
        }
        Ok(pooled)
    }

    /// One step on this rank's slice `local` of a global batch of `global` samples; returns the
    /// global batch's mean loss.
    pub fn step(&mut self, dev: &D, local: &Batch, global: usize) -> Result<f64, DistError> {
        let (m, dim) = (local.len(), self.store.dim());
        let (v, tv) = (self.tables_vec.0, self.tables_vec.1.clone());
        let pooled = self.pooled(&local.sparse, m)?;
        let mut dpooled = vec![0f32; m * v * dim];
        let loss = if m == 0 {
            // No sample here: this rank adds nothing to the sums, but takes part in them.
            let len = self.model.dense_params().iter().map(|p| p.len).sum();
            self.grads.clear();
            self.grads.resize(len, 0.0);
            0.0
        } else {
            let l =
                self.model
                    .external_forward_backward(dev, local, &pooled, global, &mut dpooled)?;
            self.model.dense_grads(dev, &mut self.grads)?;
            l
        };
        self.coll.all_reduce_sum(&mut self.grads)?;
        self.exch.count(Phase::Dense, 4 * self.grads.len() as u64);
        self.model.set_dense_grads(dev, &self.grads)?;
        self.model.update_dense(dev, self.lr)?;
        // The sample each lookup came from, per table: its gradient is that sample's.
        let bag_of: Vec<Vec<u32>> = local
            .sparse
            .iter()
            .map(|bags| {
                (0..bags.len())
                    .flat_map(|s| std::iter::repeat_n(s as u32, bags.bag(s).len()))
                    .collect()
            })
            .collect();
        let dp = &dpooled;
        self.exch.backward(
            &mut self.store,
            |t, j| &dp[(bag_of[t][j] as usize * v + tv[t]) * dim..][..dim],
            self.pooling,
            self.emb_lr,
        )?;
        let mut l = [loss];
        self.coll.all_reduce_sum_f64(&mut l)?;
        Ok(l[0] / global.max(1) as f64)
    }
}
