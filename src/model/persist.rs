//! The model in a checkpoint, and back: every dense and DHE parameter under its
//! [`Dlrm::dense_params`] name (`bottom.layer0.weight` `[out, in]`, `top.layer2.bias` `[out]`,
//! `dhe.3.layer0.weight`, …) with Adagrad's accumulators as `NAME.adagrad`, and the embedding
//! tables as `crate::embedding` writes them (`table.F.…`, `F` the data's feature number).

use super::{Dlrm, ModelError};
use crate::checkpoint::{Checkpoint, Values};
use crate::device::{Device, DeviceExt};

impl<D: Device> Dlrm<D> {
    /// Writes every parameter, its optimizer state and the tables into `ckpt`.
    pub fn save_into(&self, dev: &D, ckpt: &mut Checkpoint) -> Result<(), ModelError> {
        for p in self.dense_params() {
            let v = dev.read_f32(p.value, 0..p.len)?;
            ckpt.insert(p.name.clone(), p.shape.clone(), Values::F32(v));
            if let Some(s) = p.state {
                let v = dev.read_f32(s, 0..p.len)?;
                ckpt.insert(
                    format!("{}.adagrad", p.name),
                    p.shape.clone(),
                    Values::F32(v),
                );
            }
        }
        let features = &self.layout().split.tables;
        self.embeddings().save_into(dev, features, ckpt)?;
        Ok(())
    }

    /// Restores what [`Dlrm::save_into`] wrote, from a model of the same sizes; a tensor of
    /// another shape is refused, naming it and both shapes.
    pub fn restore_from(&mut self, dev: &D, ckpt: &Checkpoint) -> Result<(), ModelError> {
        for p in self.dense_params() {
            let v = ckpt.f32(&p.name, &p.shape).map_err(checkpoint)?;
            dev.upload_elems(p.value, 0, v)?;
            if let Some(s) = p.state {
                let name = format!("{}.adagrad", p.name);
                dev.upload_elems(s, 0, ckpt.f32(&name, &p.shape).map_err(checkpoint)?)?;
            }
        }
        let features = self.layout().split.tables.clone();
        self.embeddings_mut().restore_from(dev, &features, ckpt)?;
        Ok(())
    }
}

fn checkpoint(e: crate::checkpoint::CheckpointError) -> ModelError {
    ModelError::Embedding(e.into())
}
