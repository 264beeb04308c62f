//! Hashes and seed streams shared by every module: SplitMix64 and the named streams that keep one
//! run seed's consumers independent of each other.
//!
//! Every random choice in rowflow is a pure function of the run's seed, so a run can be replayed
//! exactly. Consumers that draw from the same seed must not see the same numbers (the embedding
//! initialisation must not mirror the synthetic teacher's weights, say), so each XORs its own
//! constant into the seed: a [`Stream`]. The constants are arbitrary but fixed forever — changing
//! one changes every result of every seed — and they live here, once, with their meaning.

/// The 64-bit golden ratio, SplitMix64's increment.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a bijective 64-bit mix (`x ^= x >> 30; x *= …; x ^= x >> 27;
/// x *= …; x ^= x >> 31`, wrapping). The Criteo reader hashes categorical values with it.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One step of the SplitMix64 generator from state `x`: [`mix64`] of `x + GOLDEN_GAMMA`. A good
/// hash of any 64-bit value, used to derive independent streams from a seed.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    mix64(x.wrapping_add(GOLDEN_GAMMA))
}

/// A named seed stream: `seed ^ constant`, one constant per consumer of the run seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Initial embedding rows (device tables and host stores alike) and the rounding noise of
    /// their write-backs.
    EmbeddingInit = 0xE3B,
    /// The synthetic teacher's dense weights.
    Teacher = 0x7EAC_4E20,
    /// The synthetic teacher's embeddings, hashed per (table, row, component).
    TeacherEmbedding = 0x5EED,
    /// The per-table popularity permutations of the synthetic and sequence generators: table
    /// `t` uses `seed ^ (t + 17)` (see [`Stream::indexed`]).
    Permutation = 17,
    /// The per-table streams of the sequence generator.
    SequenceTable = 0x5E0,
    /// The 1-in-16 sample of rows whose access counts the hotness histogram keeps exactly.
    HotnessSample = 0x407,
    /// The per-feature hash coefficients and decoder weights of DHE: feature `f` uses
    /// `seed ^ (f + constant)`.
    Dhe = 0xD4E0,
}

impl Stream {
    /// The stream's key for `seed`: `seed ^ constant`.
    #[inline]
    pub fn key(self, seed: u64) -> u64 {
        seed ^ self as u64
    }

    /// The key of the `i`-th member of an indexed stream: `seed ^ (i + constant)`.
    #[inline]
    pub fn indexed(self, seed: u64, i: u64) -> u64 {
        seed ^ i.wrapping_add(self as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_generator() {
        // The first output of the reference SplitMix64 generator seeded with 0.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix64(GOLDEN_GAMMA), splitmix64(0));
    }

    #[test]
    fn streams_of_one_seed_differ() {
        let keys = [
            Stream::EmbeddingInit,
            Stream::Teacher,
            Stream::TeacherEmbedding,
            Stream::Permutation,
            Stream::SequenceTable,
            Stream::HotnessSample,
        ]
        .map(|s| s.key(42));
        for (i, a) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|b| a != b));
        }
    }
}
