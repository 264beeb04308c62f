//! Initial embedding values: uniform in `[-scale, scale]`, drawn in chunks from streams keyed by
//! `(seed, table, chunk, piece)`, so the device tables and the host stores start from the same
//! values and initialisation runs in parallel, reproducibly.

use crate::rng::splitmix64;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

/// Rows initialised per chunk (and per upload).
pub const INIT_CHUNK_ROWS: usize = 1 << 16;

/// Fills `chunk` with values uniform in `[-scale, scale]`, from a stream keyed by
/// `(seed, table, chunk index)` so initialisation is reproducible and parallel.
pub fn fill_uniform(chunk: &mut [f32], scale: f32, seed: u64, table: u64, index: u64) {
    const PIECE: usize = 1 << 14;
    chunk
        .par_chunks_mut(PIECE)
        .enumerate()
        .for_each(|(p, piece)| {
            let key =
                splitmix64(seed ^ splitmix64(table ^ splitmix64(index ^ splitmix64(p as u64))));
            let mut rng = Pcg64Mcg::seed_from_u64(key);
            piece
                .iter_mut()
                .for_each(|x| *x = rng.random_range(-scale..=scale));
        });
}
