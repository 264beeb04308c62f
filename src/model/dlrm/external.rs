//! The dense half of a step whose embeddings live elsewhere (a distributed run's shards): the
//! pooled vectors come from the host, their gradient goes back to it, and the dense gradients
//! can be read and replaced between backward and update (the all-reduce of data parallelism).

use super::Dlrm;
use crate::data::Batch;
use crate::device::{BceLoss, Device, DeviceExt, InteractionBackward, InteractionShape, sigmoid};
use crate::model::ModelError;

impl<D: Device> Dlrm<D> {
    /// Embedding vectors per sample (`[samples, vectors, dim]` is the pooled layout).
    pub fn vectors(&self) -> usize {
        self.vectors
    }

    fn upload_pooled(
        &mut self,
        dev: &D,
        batch: &Batch,
        pooled: &[f32],
    ) -> Result<usize, ModelError> {
        let n = self.upload_inputs(dev, batch)?;
        let want = n * self.vectors * self.dim;
        if pooled.len() != want {
            return Err(ModelError::Config(format!(
                "{} pooled values for {n} samples of {} vectors of {} (want {want})",
                pooled.len(),
                self.vectors,
                self.dim
            )));
        }
        dev.upload_elems(&self.pooled, 0, pooled)?;
        Ok(n)
    }

    /// Forward and backward of the dense layers on `batch` with the given pooled embeddings
    /// (`[samples, vectors, dim]`), the loss scaled as one part of a batch of `global_samples`
    /// (so gradients summed over the parts equal the whole batch's). Leaves the dense gradients
    /// in the MLPs' buffers (see [`Dlrm::dense_grads`]), writes the pooled embeddings' gradient
    /// into `dpooled` and returns the sum of the per-sample losses.
    pub fn external_forward_backward(
        &mut self,
        dev: &D,
        batch: &Batch,
        pooled: &[f32],
        global_samples: usize,
        dpooled: &mut [f32],
    ) -> Result<f64, ModelError> {
        let n = self.upload_pooled(dev, batch, pooled)?;
        self.forward_dense(dev, n)?;
        dev.bce_loss(&BceLoss {
            logits: self.top.output(),
            labels: self.labels.buffer(),
            loss: &self.loss,
            dlogits: self.top.output_grad(),
            batch: n as u32,
            scale: 1.0 / global_samples as f32,
        })?;
        self.top.backward(dev, &self.inter, Some(&self.dinter), n)?;
        dev.interaction_backward(&InteractionBackward {
            dense: self.bottom.output(),
            emb: &self.pooled,
            dout: &self.dinter,
            ddense: self.bottom.output_grad(),
            demb: &self.dpooled,
            shape: InteractionShape {
                batch: n as u32,
                tables: self.vectors as u32,
                dim: self.dim as u32,
            },
        })?;
        self.bottom.backward(dev, self.dense_in.buffer(), None, n)?;
        dev.download_f32(&self.dpooled, 0, &mut dpooled[..pooled.len()])?;
        dev.download_f32(&self.loss, 0, &mut self.host_out[..n])?;
        Ok(self.host_out[..n].iter().map(|&l| l as f64).sum())
    }

    /// Click probabilities of `batch` with the given pooled embeddings, appended to `out`.
    pub fn external_predict(
        &mut self,
        dev: &D,
        batch: &Batch,
        pooled: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let n = self.upload_pooled(dev, batch, pooled)?;
        self.forward_dense(dev, n)?;
        dev.download_f32(self.top.output(), 0, &mut self.host_out[..n])?;
        out.extend(self.host_out[..n].iter().map(|&z| sigmoid(z)));
        Ok(())
    }

    /// Every dense gradient (the order of [`Dlrm::dense_params`]) into `out`, replacing it.
    pub fn dense_grads(&self, dev: &D, out: &mut Vec<f32>) -> Result<(), ModelError> {
        out.clear();
        for p in self.dense_params() {
            let at = out.len();
            out.resize(at + p.len, 0.0);
            dev.download_f32(p.grad, 0, &mut out[at..])?;
        }
        Ok(())
    }

    /// Every dense weight, in [`Dlrm::dense_grads`]'s layout.
    pub fn dense_values(&self, dev: &D, out: &mut Vec<f32>) -> Result<(), ModelError> {
        out.clear();
        for p in self.dense_params() {
            let at = out.len();
            out.resize(at + p.len, 0.0);
            dev.download_f32(p.value, 0, &mut out[at..])?;
        }
        Ok(())
    }

    /// Replaces every dense gradient with `grads` (laid out as [`Dlrm::dense_grads`] writes).
    pub fn set_dense_grads(&self, dev: &D, grads: &[f32]) -> Result<(), ModelError> {
        let mut at = 0;
        for p in self.dense_params() {
            dev.upload_elems(p.grad, 0, &grads[at..at + p.len])?;
            at += p.len;
        }
        Ok(())
    }

    /// Applies the dense gradients at rate `lr` (after [`Dlrm::set_dense_grads`]).
    pub fn update_dense(&mut self, dev: &D, lr: f32) -> Result<(), ModelError> {
        self.top.update(dev, lr)?;
        self.bottom.update(dev, lr)?;
        Ok(())
    }
}
