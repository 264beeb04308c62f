//! One rank's shard of the embedding tables: the rows a plan gives it (its own rows and the
//! replicas it holds), FP32 in host memory, with Adagrad's accumulators when the rule has them.
//!
//! Rows start from the values a single-process run gives them (the same chunked streams, keyed
//! by the global row), and the shard updates them with the CPU backend's own fused backward
//! kernels, so a sharded run applies the single-process run's arithmetic, sum for sum.

use super::DistError;
use crate::device::cpu::{BagGrads, bag_backward_adagrad, bag_backward_sgd};
use crate::device::{OptimizerRule, Pooling};
use crate::embedding::init::{INIT_CHUNK_ROWS, fill_uniform};
use crate::model::ModelConfig;
use crate::shard::{Router, Source};

/// The rows of one table this rank holds.
pub struct TableShard {
    /// Global row ids held, strictly increasing.
    rows: Vec<u32>,
    /// The held rows as runs of consecutive ids, `(first id, its index in rows)`: one run per
    /// range of a row-wise or table-wise plan, so finding a row is a search among few runs.
    runs: Vec<(u32, u32)>,
    /// `rows.len() × dim` values.
    values: Vec<f32>,
    /// Adagrad's accumulator per held row.
    state: Option<Vec<f32>>,
}

/// The runs of consecutive ids in `rows` (strictly increasing): `(first id, index)` each.
fn runs_of(rows: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        let follows = i > 0 && rows[i - 1] + 1 == r;
        if !follows {
            runs.push((r, i as u32));
        }
    }
    runs
}

/// The gradient units one table received in a step, in global batch order: each is one lookup
/// of local row `local[k]` from a bag of `len[k]` lookups, its gradient row `k` of `grads`.
pub struct Units<'a> {
    /// Local row (index into the shard) of each unit.
    pub local: &'a [u32],
    /// Length of the bag each unit came from (mean pooling divides by it).
    pub len: &'a [u32],
    /// `units × dim` gradients.
    pub grads: &'a [f32],
}

/// This rank's rows of every table.
pub struct ShardStore {
    dim: usize,
    rule: OptimizerRule,
    pooling: Pooling,
    tables: Vec<TableShard>,
}

impl ShardStore {
    /// The rows `router` routes to `rank` itself, initialised as a single-process run of
    /// `model` and `seed` (the embedding stream's key) initialises them.
    pub fn new(
        router: &Router,
        rank: usize,
        table_rows: &[u32],
        model: &ModelConfig,
        seed: u64,
    ) -> Result<ShardStore, DistError> {
        let (dim, init_scale) = (model.dim, model.embedding_init_scale);
        let (rule, pooling) = (model.embedding_rule(), model.pooling);
        let mut tables = Vec::with_capacity(table_rows.len());
        for (t, &n) in table_rows.iter().enumerate() {
            if router.column_shards(t).is_some() {
                return Err(DistError::Config(format!(
                    "table {t} is column-sharded; distributed training runs row and table \
                     layouts only: plan with --planner row-wise, table-wise or flexshard"
                )));
            }
            let rows: Vec<u32> = (0..n)
                .filter(|&r| router.source(t, r, rank) == Some(Source::Local))
                .collect();
            let mut values = vec![0f32; rows.len() * dim];
            // Each initialisation chunk of the full table once, copying the rows held.
            let mut chunk = Vec::new();
            let mut have = usize::MAX;
            for (k, &r) in rows.iter().enumerate() {
                let c = r as usize / INIT_CHUNK_ROWS;
                if c != have {
                    let first = c * INIT_CHUNK_ROWS;
                    let len = INIT_CHUNK_ROWS.min(n as usize - first) * dim;
                    chunk.resize(len, 0.0);
                    fill_uniform(&mut chunk, init_scale, seed, t as u64, c as u64);
                    have = c;
                }
                let at = (r as usize - c * INIT_CHUNK_ROWS) * dim;
                values[k * dim..][..dim].copy_from_slice(&chunk[at..at + dim]);
            }
            let state = rule.has_state().then(|| vec![rule.init; rows.len()]);
            tables.push(TableShard {
                runs: runs_of(&rows),
                rows,
                values,
                state,
            });
        }
        Ok(ShardStore {
            dim,
            rule,
            pooling,
            tables,
        })
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tables (all of them; a shard may hold no row of some).
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// Rows of table `t` held here.
    pub fn held(&self, t: usize) -> usize {
        self.tables[t].rows.len()
    }

    /// Bytes of the rows (and accumulators) held.
    pub fn bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|s| 4 * (s.values.len() + s.state.as_ref().map_or(0, Vec::len)) as u64)
            .sum()
    }

    /// The local index of global row `row` of table `t`, if held here.
    pub fn local(&self, t: usize, row: u32) -> Option<u32> {
        let s = &self.tables[t];
        let k = s
            .runs
            .partition_point(|&(first, _)| first <= row)
            .checked_sub(1)?;
        let (first, at) = s.runs[k];
        let i = at + (row - first);
        (s.rows.get(i as usize) == Some(&row)).then_some(i)
    }

    /// The values of local row `local` of table `t`.
    pub fn row(&self, t: usize, local: u32) -> &[f32] {
        &self.tables[t].values[local as usize * self.dim..][..self.dim]
    }

    /// Appends the values of local row `local` of table `t` to `out`.
    pub fn push_row(&self, t: usize, local: u32, out: &mut Vec<f32>) {
        out.extend_from_slice(&self.tables[t].values[local as usize * self.dim..][..self.dim]);
    }

    /// The global rows of table `t` held here, their values and accumulators.
    pub fn table(&self, t: usize) -> (&[u32], &[f32], Option<&[f32]>) {
        let s = &self.tables[t];
        (&s.rows, &s.values, s.state.as_deref())
    }

    /// Applies the step's gradient units of table `t` at rate `lr` with the CPU backend's
    /// fused backward: each held row's units summed in their order, then the optimizer.
    pub fn apply(&mut self, t: usize, units: &Units<'_>, lr: f32) -> Result<(), DistError> {
        self.apply_with(t, units, lr, self.pooling)
    }

    /// [`ShardStore::apply`] with an explicit pooling (per-lookup units use `Sum`).
    pub fn apply_with(
        &mut self,
        t: usize,
        units: &Units<'_>,
        lr: f32,
        pooling: Pooling,
    ) -> Result<(), DistError> {
        let n = units.local.len();
        if n == 0 {
            return Ok(());
        }
        // The unique-row map: units grouped by row, in unit order within a row.
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&k| units.local[k as usize]);
        let mut unique_rows = Vec::new();
        let mut row_starts = Vec::new();
        for (i, &k) in order.iter().enumerate() {
            let r = units.local[k as usize];
            if unique_rows.last() != Some(&r) {
                unique_rows.push(r);
                row_starts.push(i as u32);
            }
        }
        row_starts.push(n as u32);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for &l in units.len {
            offsets.push(offsets.last().copied().unwrap_or(0) + l.max(1));
        }
        let grads = BagGrads {
            unique_rows: &unique_rows,
            row_starts: &row_starts,
            bag_ids: &order,
            offsets: &offsets,
            pooling,
            grad: units.grads,
            grad_stride: self.dim,
            grad_offset: 0,
        };
        let s = &mut self.tables[t];
        let rows = s.rows.len() as u32;
        let done = match &mut s.state {
            None => bag_backward_sgd(&mut s.values, rows, self.dim, &grads, lr),
            Some(state) => bag_backward_adagrad(
                &mut s.values,
                state,
                rows,
                self.dim,
                &grads,
                lr,
                self.rule.eps,
            ),
        };
        done.map_err(|e| DistError::Engine(format!("table {t}: shard update: {e}")))
    }

    /// Per local row of table `t` in `units`, the sum of its units' gradients (the same sums
    /// [`ShardStore::apply_with`] takes), for rows whose sums must first be added over ranks.
    pub fn row_sums(
        &self,
        t: usize,
        units: &Units<'_>,
        pooling: Pooling,
    ) -> Result<Vec<(u32, Vec<f32>)>, DistError> {
        // The fused SGD kernel at rate −1 on a zeroed copy of the rows leaves exactly each
        // row's gradient sum (0 − (−1)·g = g).
        let mut unique: Vec<u32> = units.local.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let renamed: Vec<u32> = units
            .local
            .iter()
            .map(|r| unique.binary_search(r).unwrap_or_default() as u32)
            .collect();
        let mut scratch = ShardStore {
            dim: self.dim,
            rule: OptimizerRule {
                optimizer: crate::device::Optimizer::Sgd,
                ..self.rule
            },
            pooling,
            tables: (0..=t)
                .map(|_| TableShard {
                    runs: runs_of(&unique),
                    rows: unique.clone(),
                    values: vec![0.0; unique.len() * self.dim],
                    state: None,
                })
                .collect(),
        };
        let renamed_units = Units {
            local: &renamed,
            len: units.len,
            grads: units.grads,
        };
        scratch.apply_with(t, &renamed_units, -1.0, pooling)?;
        let sums = &scratch.tables[t].values;
        Ok(unique
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                (
                    self.tables[t].rows[r as usize],
                    sums[i * self.dim..][..self.dim].to_vec(),
                )
            })
            .collect())
    }

    /// Applies one summed gradient to local row `local` of table `t` at rate `lr`.
    pub fn apply_sum(
        &mut self,
        t: usize,
        local: u32,
        grad: &[f32],
        lr: f32,
    ) -> Result<(), DistError> {
        let units = Units {
            local: &[local],
            len: &[1],
            grads: grad,
        };
        self.apply_with(t, &units, lr, Pooling::Sum)
    }
}

#[cfg(test)]
mod tests {
    use super::runs_of;

    #[test]
    fn rows_are_found_through_their_runs() {
        let rows = [3u32, 4, 5, 9, 20, 21];
        let runs = runs_of(&rows);
        assert_eq!(runs, vec![(3, 0), (9, 3), (20, 4)]);
        let store = super::TableShard {
            runs,
            rows: rows.to_vec(),
            values: Vec::new(),
            state: None,
        };
        let s = super::ShardStore {
            dim: 0,
            rule: crate::device::OptimizerRule {
                optimizer: crate::device::Optimizer::Sgd,
                eps: 0.0,
                init: 0.0,
            },
            pooling: crate::device::Pooling::Sum,
            tables: vec![store],
        };
        for r in 0..25 {
            let want = rows.iter().position(|&x| x == r).map(|i| i as u32);
            assert_eq!(s.local(0, r), want, "row {r}");
        }
    }
}
