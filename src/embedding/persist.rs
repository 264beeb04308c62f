//! The tables in a checkpoint, and back: rows kept whole on the device as `table.F.weight`
//! (`[rows, dim]` f32) and `table.F.adagrad` (`[rows]`); a cached table's host store in its own
//! precision (`table.F.store`, `[rows, words]` u32 as the store packs them, and
//! `table.F.store_adagrad`) and its device cache: the slots' FP32 rows and state
//! (`table.F.cache.weight`, `table.F.cache.adagrad`) and the directory
//! (`table.F.cache.slot_row` — `4294967295` for an empty slot —, `.last_use`, `.uses`,
//! `.dirty`, `.pinned`, `.free`, `.epoch`). `F` is the data's feature number. The batch counter
//! that orders on-demand uses and keys rounding noise is `embeddings.tick`.
//!
//! Restored, a table holds exactly what it held when saved, so training resumes as if it never
//! stopped.

use super::directory::DirectoryState;
use super::error::EmbeddingError;
use super::policy::Policy;
use super::tables::EmbeddingTables;
use crate::checkpoint::{Checkpoint, CheckpointError, Values};
use crate::device::{Device, DeviceExt};

impl<D: Device> EmbeddingTables<D> {
    /// Writes every table into `ckpt`, table `t` named after feature `features[t]`.
    pub fn save_into(
        &self,
        dev: &D,
        features: &[usize],
        ckpt: &mut Checkpoint,
    ) -> Result<(), EmbeddingError> {
        let dim = self.settings.dim;
        ckpt.insert(
            "embeddings.tick",
            vec![1],
            Values::I64(vec![self.tick as i64]),
        );
        for (t, table) in self.tables.iter().enumerate() {
            let name = |what: &str| format!("table.{}.{what}", features[t]);
            let slots = table.slots as usize;
            let (weight, adagrad) = match &table.cache {
                None => ("weight", "adagrad"),
                Some(_) => ("cache.weight", "cache.adagrad"),
            };
            let host_only = self.placement.policy == Policy::HostOnly;
            if !host_only || table.cache.is_none() {
                let w = dev.read_f32(&table.weights, 0..slots * dim)?;
                ckpt.insert(name(weight), vec![slots, dim], Values::F32(w));
                if let Some(s) = &table.state {
                    let s = dev.read_f32(s, 0..slots)?;
                    ckpt.insert(name(adagrad), vec![slots], Values::F32(s));
                }
            }
            let Some(cache) = &table.cache else {
                continue;
            };
            let store = super::lock_store(&cache.store);
            let (words, state) = store.raw();
            let shape = vec![table.rows as usize, store.row_words()];
            ckpt.insert(name("store"), shape, Values::U32(words.to_vec()));
            if let Some(s) = state {
                ckpt.insert(
                    name("store_adagrad"),
                    vec![s.len()],
                    Values::F32(s.to_vec()),
                );
            }
            if host_only {
                // Its slots are empty between steps and sized per batch: nothing to keep.
                continue;
            }
            let d = cache.dir.state();
            let i64s = |v: &[u64]| Values::I64(v.iter().map(|&x| x as i64).collect());
            ckpt.insert(name("cache.slot_row"), vec![slots], Values::U32(d.slot_row));
            ckpt.insert(name("cache.last_use"), vec![slots], i64s(&d.last_use));
            ckpt.insert(name("cache.uses"), vec![slots], Values::U32(d.uses));
            let dirty = d.dirty.iter().map(|&b| b as u8).collect();
            ckpt.insert(name("cache.dirty"), vec![slots], Values::U8(dirty));
            ckpt.insert(name("cache.pinned"), vec![slots], i64s(&d.pinned));
            ckpt.insert(name("cache.free"), vec![d.free.len()], Values::U32(d.free));
            ckpt.insert(
                name("cache.epoch"),
                vec![1],
                Values::I64(vec![d.epoch as i64]),
            );
        }
        Ok(())
    }

    /// Restores every table from `ckpt` (written by [`EmbeddingTables::save_into`] for tables
    /// of the same sizes, placement and precision); a tensor of another shape is refused,
    /// naming it and both shapes.
    pub fn restore_from(
        &mut self,
        dev: &D,
        features: &[usize],
        ckpt: &Checkpoint,
    ) -> Result<(), EmbeddingError> {
        let dim = self.settings.dim;
        self.tick = ckpt.i64("embeddings.tick", &[1])?[0] as u64;
        let host_only = self.placement.policy == Policy::HostOnly;
        for (t, table) in self.tables.iter_mut().enumerate() {
            let name = |what: &str| format!("table.{}.{what}", features[t]);
            let slots = table.slots as usize;
            let (weight, adagrad) = match &table.cache {
                None => ("weight", "adagrad"),
                Some(_) => ("cache.weight", "cache.adagrad"),
            };
            if !host_only || table.cache.is_none() {
                let w = ckpt.f32(&name(weight), &[slots, dim])?;
                dev.upload_elems(&table.weights, 0, w)?;
                if let Some(s) = &table.state {
                    dev.upload_elems(s, 0, ckpt.f32(&name(adagrad), &[slots])?)?;
                }
            }
            let Some(cache) = &mut table.cache else {
                continue;
            };
            {
                let mut store = super::lock_store(&cache.store);
                let rows = table.rows as usize;
                let words = ckpt.u32(&name("store"), &[rows, store.row_words()])?;
                let state = match store.has_state() {
                    true => Some(ckpt.f32(&name("store_adagrad"), &[rows])?),
                    false => None,
                };
                store
                    .restore(words, state)
                    .map_err(|m| inconsistent(t, &name("store"), m))?;
            }
            if host_only {
                continue;
            }
            let u64s = |v: &[i64]| v.iter().map(|&x| x as u64).collect();
            let free = ckpt.tensor(&name("cache.free"))?.shape.clone();
            let state = DirectoryState {
                slot_row: ckpt.u32(&name("cache.slot_row"), &[slots])?.to_vec(),
                last_use: u64s(ckpt.i64(&name("cache.last_use"), &[slots])?),
                uses: ckpt.u32(&name("cache.uses"), &[slots])?.to_vec(),
                dirty: ckpt
                    .u8(&name("cache.dirty"), &[slots])?
                    .iter()
                    .map(|&b| b != 0)
                    .collect(),
                pinned: u64s(ckpt.i64(&name("cache.pinned"), &[slots])?),
                epoch: ckpt.i64(&name("cache.epoch"), &[1])?[0] as u64,
                free: ckpt.u32(&name("cache.free"), &free)?.to_vec(),
            };
            cache
                .dir
                .restore(state)
                .map_err(|m| inconsistent(t, &name("cache.slot_row"), m))?;
        }
        Ok(())
    }

    /// The resident rows of table `t` with their slots, least recently used first (ties by row):
    /// the order in which the lookahead planner would let them go.
    pub fn resident_by_last_use(&self, t: usize) -> Vec<(u32, u32)> {
        let Some(cache) = &self.tables[t].cache else {
            return Vec::new();
        };
        let mut v: Vec<(u64, u32, u32)> = cache
            .dir
            .resident()
            .map(|(slot, row)| (cache.dir.usage(slot).1, row, slot))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, row, slot)| (row, slot)).collect()
    }
}

/// A saved tensor whose values do not fit the table (sizes checked, contents not).
fn inconsistent(t: usize, tensor: &str, message: String) -> EmbeddingError {
    EmbeddingError::Checkpoint(CheckpointError::Mismatch {
        name: tensor.into(),
        found: message,
        expected: format!("the contents of table {t}'s"),
    })
}
