//! What a distributed run does besides its steps: the test split scored (each rank its slice,
//! rank 0 gathers the predictions), the ranks' dense weights compared, and every shard gathered
//! into one checkpoint in the single-process format.

use super::collective::{Collective, CollectiveExt};
use super::step::{Run, slice};
use super::{DistError, fnv1a};
use crate::checkpoint::{self, Checkpoint, Values};
use crate::config::RunConfig;
use crate::data::Batch;
use crate::device::Device;
use crate::metrics::{auc, log_loss};
use crate::model::Dlrm;

/// Checks that every rank ends with the same dense weights: the engine must hand every rank
/// the same sums, or the replicas of the dense layers drift apart.
pub(super) fn same_dense_weights<D: Device, C: Collective + ?Sized>(
    dev: &D,
    coll: &C,
    model: &Dlrm<D>,
) -> Result<(), DistError> {
    let mut w = Vec::new();
    model.dense_values(dev, &mut w)?;
    let hashes = coll.all_gather_u64(fnv1a(bytemuck::cast_slice(&w)))?;
    let odd: Vec<usize> = (0..hashes.len())
        .filter(|&r| hashes[r] != hashes[0])
        .collect();
    match odd.is_empty() {
        true => Ok(()),
        false => Err(DistError::Engine(format!(
            "ranks {odd:?} ended with other dense weights than rank 0: the {} all-reduce \
             gave the ranks different sums",
            coll.engine()
        ))),
    }
}

/// AUC and log loss on the test split: each rank scores its slice, rank 0 gathers them
/// (`None` on the other ranks).
pub(super) fn evaluate<D: Device, C: Collective + ?Sized>(
    dev: &D,
    run: &mut Run<'_, D, C>,
    test: &Batch,
    cfg: &RunConfig,
) -> Result<(Option<f64>, Option<f64>), DistError> {
    let (me, n) = (run.coll.rank(), run.coll.size());
    let (lo, hi) = slice(test.len(), me, n);
    let each = cfg
        .eval_batch_size
        .div_ceil(n)
        .min(run.model.capacity())
        .max(1);
    // Every rank takes part in every round, with an empty chunk once its slice is done.
    let rounds = test.len().div_ceil(n).div_ceil(each);
    let mut chunk = Batch::new(test.num_dense, test.sparse.len());
    let mut probs = Vec::with_capacity(hi - lo);
    for k in 0..rounds {
        let start = (lo + k * each).min(hi);
        let len = each.min(hi - start);
        test.copy_range_into(start, len, &mut chunk);
        let pooled = run.pooled(&chunk.sparse, len)?;
        if len > 0 {
            run.model
                .external_predict(dev, &chunk, &pooled, &mut probs)?;
        }
    }
    let mut to_root = vec![0; n];
    to_root[0] = probs.len();
    let (all, _) = run.coll.all_to_all_v(&probs, &to_root)?;
    if me != 0 {
        return Ok((None, None));
    }
    let a = auc(&all, &test.labels);
    let l = log_loss(&all, &test.labels);
    Ok((a.is_finite().then_some(a), l.is_finite().then_some(l)))
}

/// Saves a checkpoint in the single-process format: rank 0 gathers every shard's rows.
pub(super) fn save<D: Device, C: Collective + ?Sized>(
    dev: &D,
    run: &Run<'_, D, C>,
    cfg: &RunConfig,
    table_rows: &[u32],
    dir: &std::path::Path,
    step: u64,
) -> Result<(), DistError> {
    let (coll, store, model) = (run.coll, &run.store, &run.model);
    let (me, n, dim) = (coll.rank(), coll.size(), store.dim());
    let to_root = |len: usize| {
        let mut c = vec![0; n];
        c[0] = len;
        c
    };
    let mut tables = Vec::new();
    for t in 0..store.tables() {
        let (rows, values, state) = store.table(t);
        let (all_rows, _) = coll.all_to_all_v(rows, &to_root(rows.len()))?;
        let (all_values, _) = coll.all_to_all_v(values, &to_root(values.len()))?;
        let st = state.unwrap_or(&[]);
        let (all_state, _) = coll.all_to_all_v(st, &to_root(st.len()))?;
        tables.push((all_rows, all_values, all_state));
    }
    if me != 0 {
        return Ok(());
    }
    let mut ckpt = Checkpoint {
        step,
        config: serde_json::to_value(cfg).map_err(|e| checkpoint::CheckpointError::Format {
            path: dir.to_path_buf(),
            message: format!("cannot encode the run's settings: {e}"),
        })?,
        ..Checkpoint::default()
    };
    model.save_into(dev, &mut ckpt)?;
    for (t, (rows, values, state)) in tables.into_iter().enumerate() {
        let total = table_rows[t] as usize;
        // Replicated rows arrive once per holder, all equal: the last copy wins.
        let mut w = vec![0f32; total * dim];
        let mut s = vec![0f32; if state.is_empty() { 0 } else { total }];
        for (k, &r) in rows.iter().enumerate() {
            w[r as usize * dim..][..dim].copy_from_slice(&values[k * dim..][..dim]);
            if !s.is_empty() {
                s[r as usize] = state[k];
            }
        }
        ckpt.insert(
            format!("table.{t}.weight"),
            vec![total, dim],
            Values::F32(w),
        );
        if !s.is_empty() {
            ckpt.insert(format!("table.{t}.adagrad"), vec![total], Values::F32(s));
        }
    }
    ckpt.insert("embeddings.tick", vec![1], Values::I64(vec![step as i64]));
    checkpoint::save(dir, &ckpt)?;
    Ok(())
}
