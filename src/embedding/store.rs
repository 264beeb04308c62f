//! `HostStore`: the backing store of one table in host memory — every row packed in its
//! precision (DESIGN.md's layouts) plus, for row-wise Adagrad, one FP32 accumulator per row.

use super::error::EmbeddingError;
use super::init::{INIT_CHUNK_ROWS, fill_uniform};
use crate::precision::{Precision, dequantize_row, quantize_row};
use rayon::prelude::*;

/// One table's rows on the host.
pub struct HostStore {
    precision: Precision,
    dim: usize,
    rows: u32,
    words: usize,
    data: Vec<u32>,
    state: Option<Vec<f32>>,
}

/// A vector of `len` copies of `value`, or an error naming table `table` and `what` it was for.
fn reserve<T: Clone>(
    len: usize,
    value: T,
    table: u64,
    what: &'static str,
) -> Result<Vec<T>, EmbeddingError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| EmbeddingError::HostMemory {
            table: table as usize,
            bytes: (len * std::mem::size_of::<T>()) as u64,
            what,
            reason: e.to_string(),
        })?;
    v.resize(len, value);
    Ok(v)
}

impl HostStore {
    /// A store of `rows` rows of `dim` values, initialised like the device tables (uniform in
    /// `[-init_scale, init_scale]` from `(seed, table)`, so an FP32 store starts bit-identical to
    /// `AllOnDevice`), then packed with nearest rounding. `adagrad_init` adds the accumulators.
    pub fn new(
        rows: u32,
        dim: usize,
        precision: Precision,
        adagrad_init: Option<f32>,
        init_scale: f32,
        seed: u64,
        table: u64,
    ) -> Result<Self, EmbeddingError> {
        let words = precision.row_words(dim);
        let mut data = reserve(rows as usize * words, 0u32, table, "host store")?;
        let state = adagrad_init
            .map(|a| reserve(rows as usize, a, table, "optimizer state"))
            .transpose()?;
        let mut chunk = vec![0f32; INIT_CHUNK_ROWS.min(rows as usize) * dim];
        for (c, first) in (0..rows as usize).step_by(INIT_CHUNK_ROWS).enumerate() {
            let n = INIT_CHUNK_ROWS.min(rows as usize - first);
            fill_uniform(&mut chunk[..n * dim], init_scale, seed, table, c as u64);
            let values = &chunk[..n * dim];
            data[first * words..(first + n) * words]
                .par_chunks_mut(words)
                .zip(values.par_chunks(dim))
                .for_each(|(dst, src)| quantize_row(precision, src, dst, None));
        }
        Ok(HostStore {
            precision,
            dim,
            rows,
            words,
            data,
            state,
        })
    }

    /// Rows in the table.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The packed layout.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// 32-bit words per packed row.
    pub fn row_words(&self) -> usize {
        self.words
    }

    /// Whether optimizer state is kept.
    pub fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// Appends the packed rows `ids` to `words` (and their state to `state`).
    pub fn gather(&self, ids: &[u32], words: &mut Vec<u32>, state: &mut Vec<f32>) {
        for &r in ids {
            let r = r as usize;
            words.extend_from_slice(&self.data[r * self.words..(r + 1) * self.words]);
            if let Some(s) = &self.state {
                state.push(s[r]);
            }
        }
    }

    /// Writes packed rows back: row `ids[i]` gets `words[i * row_words ..]` (and `state[i]`).
    pub fn scatter(&mut self, ids: &[u32], words: &[u32], state: &[f32]) {
        for (i, &r) in ids.iter().enumerate() {
            let r = r as usize;
            self.data[r * self.words..(r + 1) * self.words]
                .copy_from_slice(&words[i * self.words..(i + 1) * self.words]);
            if let Some(s) = &mut self.state {
                s[r] = state[i];
            }
        }
    }

    /// The packed rows (`rows × row_words` words in the store's precision) and the optimizer
    /// state, for a checkpoint.
    pub fn raw(&self) -> (&[u32], Option<&[f32]>) {
        (&self.data, self.state.as_deref())
    }

    /// Replaces the packed rows and state with saved ones of the same sizes; `Err` names the
    /// sizes that differ.
    pub fn restore(&mut self, words: &[u32], state: Option<&[f32]>) -> Result<(), String> {
        if words.len() != self.data.len()
            || state.map(<[f32]>::len) != self.state.as_ref().map(Vec::len)
        {
            return Err(format!(
                "a store of {} words and {:?} states for one of {} and {:?}",
                words.len(),
                state.map(<[f32]>::len),
                self.data.len(),
                self.state.as_ref().map(Vec::len)
            ));
        }
        self.data.copy_from_slice(words);
        if let (Some(mine), Some(saved)) = (&mut self.state, state) {
            mine.copy_from_slice(saved);
        }
        Ok(())
    }

    /// Row `row` as FP32 values (dequantized).
    pub fn read_row(&self, row: u32, out: &mut [f32]) {
        let r = row as usize;
        dequantize_row(
            self.precision,
            &self.data[r * self.words..(r + 1) * self.words],
            &mut out[..self.dim],
        );
    }

    /// Bytes allocated: the packed rows and the optimizer state (vector capacities).
    pub fn bytes(&self) -> u64 {
        (self.data.capacity() * 4 + self.state.as_ref().map_or(0, |s| s.capacity() * 4)) as u64
    }
}
