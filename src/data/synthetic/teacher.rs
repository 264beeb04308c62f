//! The hidden teacher that labels synthetic samples (the **Labels** paragraph of the parent
//! module's docs): a small DLRM whose dense weights are drawn from the seed and whose embeddings
//! are hashed on demand, so tables of any size cost no memory.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use super::options::SyntheticOptions;
use crate::rng::{Stream, splitmix64};

/// Uniform value with unit variance in [-√3, √3] from 32 bits of a hash.
fn unit_uniform(bits: u32) -> f64 {
    let u = (bits as f64 + 0.5) / (1u64 << 32) as f64;
    (2.0 * u - 1.0) * 3f64.sqrt()
}

/// The hidden teacher: its weights are drawn from the seed; its embeddings are hashed on demand.
#[derive(Clone, Debug)]
pub(super) struct Teacher {
    k: usize,
    seed: u64,
    /// `k × dense_features` projection of the dense features.
    proj: Vec<f64>,
    /// Pair weights `g_ij`, DLRM order (i in 1..=T, j < i).
    pairs: Vec<f64>,
    /// `(T + 1) × k` linear weights.
    linear: Vec<f64>,
    scale: f64,
    bias: f64,
}

impl Teacher {
    pub(super) fn new(opts: &SyntheticOptions, seed: u64) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(splitmix64(Stream::Teacher.key(seed)));
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let (k, t, f) = (opts.teacher_dim, opts.tables, opts.dense_features);
        let npairs = (t + 1) * t / 2;
        let proj = (0..k * f).map(|_| normal()).collect();
        // Share the logit's variance between the pair term and the linear term.
        let pw = opts.teacher_pair_share.sqrt();
        let lw = (1.0 - opts.teacher_pair_share).sqrt();
        let pairs = (0..npairs)
            .map(|_| pw * normal() / (npairs as f64).sqrt())
            .collect();
        let linear = (0..(t + 1) * k)
            .map(|_| lw * normal() / (((t + 1) * k) as f64).sqrt())
            .collect();
        Teacher {
            k,
            seed,
            proj,
            pairs,
            linear,
            scale: opts.teacher_scale,
            bias: opts.teacher_bias,
        }
    }

    /// Components `2m` and `2m + 1` of the teacher embedding of `row` in table `t`: one hash,
    /// 32 bits each.
    fn embedding_pair(&self, t: usize, row: u32, m: usize) -> [f64; 2] {
        let cell = ((t as u64) << 40) ^ ((row as u64) << 8) ^ m as u64;
        let h = splitmix64(self.seed ^ splitmix64(Stream::TeacherEmbedding.key(cell)));
        [unit_uniform(h as u32), unit_uniform((h >> 32) as u32)]
    }

    /// The logit of a sample: its `dense` features, and per table `l` looked-up rows with the
    /// weight of each (`rows` and `weights` are `tables × l`, table-major).
    pub(super) fn logit(
        &self,
        dense: &[f32],
        rows: &[u32],
        weights: &[f64],
        l: usize,
        vecs: &mut Vec<f64>,
    ) -> f64 {
        let k = self.k;
        let t = rows.len() / l.max(1);
        vecs.clear();
        vecs.resize((t + 1) * k, 0.0);
        let fnorm = 1.0 / (dense.len().max(1) as f64).sqrt();
        for (j, v) in vecs[..k].iter_mut().enumerate() {
            let row = &self.proj[j * dense.len()..(j + 1) * dense.len()];
            *v = row
                .iter()
                .zip(dense)
                .map(|(w, x)| w * *x as f64)
                .sum::<f64>()
                * fnorm;
        }
        let lnorm = 1.0 / (l.max(1) as f64).sqrt();
        for (p, (&r, &w)) in rows.iter().zip(weights).enumerate() {
            let ti = p / l;
            let v = &mut vecs[(ti + 1) * k..(ti + 2) * k];
            for (m, pair) in v.chunks_mut(2).enumerate() {
                let e = self.embedding_pair(ti, r, m);
                for (x, e) in pair.iter_mut().zip(e) {
                    *x += e * w * lnorm;
                }
            }
        }
        let knorm = 1.0 / (k as f64).sqrt();
        let mut pair_sum = 0.0;
        let mut p = 0;
        for i in 1..=t {
            for jv in 0..i {
                let d: f64 = (0..k).map(|c| vecs[i * k + c] * vecs[jv * k + c]).sum();
                pair_sum += self.pairs[p] * d * knorm;
                p += 1;
            }
        }
        let linear: f64 = self
            .linear
            .iter()
            .zip(vecs.iter())
            .map(|(a, v)| a * v)
            .sum();
        self.bias + self.scale * (pair_sum + linear)
    }
}
