//! The per-table pseudo-random permutations that scatter popularity ranks over a table's rows,
//! shared by the synthetic and the sequence generators.

use crate::rng::{Stream, splitmix64};

/// A pseudo-random bijection of `0..n`: a 4-round (unbalanced) Feistel network on the smallest
/// power-of-two domain covering `n`, with cycle walking to stay inside `0..n` (fewer than two
/// rounds of walking on average, as the domain is under `2n`).
#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    /// Bits of the high part (`a`) and of the low part (`b`) of a value, `a + b` in all.
    high_bits: u32,
    low_bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    /// A permutation of `0..n` (n ≥ 1) chosen by `seed`.
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = (64 - (n.max(2) - 1).leading_zeros()).max(2);
        let low_bits = bits.div_ceil(2);
        let mut keys = [0u64; 4];
        for (r, k) in keys.iter_mut().enumerate() {
            *k = splitmix64(seed ^ (r as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        }
        Permutation {
            n,
            high_bits: bits - low_bits,
            low_bits,
            keys,
        }
    }

    /// One permutation per table, of `0..table_rows[t]` for table `t`, chosen by member `t` of
    /// the [`Stream::Permutation`] stream of `seed`: the synthetic and the sequence generators
    /// scatter the same seed's ranks over the same rows.
    pub(crate) fn per_table(table_rows: &[u32], seed: u64) -> Vec<Permutation> {
        table_rows
            .iter()
            .enumerate()
            .map(|(t, &rows)| {
                Permutation::new(
                    rows as u64,
                    splitmix64(Stream::Permutation.indexed(seed, t as u64)),
                )
            })
            .collect()
    }

    /// Four Feistel rounds on `a + b`-bit values. Each round maps `(l, r)` (`l` the high `a`
    /// bits, `r` the low `b` bits) to `(r, l ^ F(r))`, `r` moved to the top: a bijection of
    /// the whole domain, whatever `a` and `b`.
    fn round(&self, x: u64) -> u64 {
        let (a, b) = (self.high_bits, self.low_bits);
        let (mask_a, mask_b) = ((1u64 << a) - 1, (1u64 << b) - 1);
        let mut x = x;
        for k in self.keys {
            let (l, r) = (x >> b, x & mask_b);
            let f = splitmix64(r ^ k) & mask_a;
            x = (r << a) | (l ^ f);
        }
        x
    }

    /// The image of `x < n`.
    pub fn apply(&self, x: u64) -> u64 {
        // The domain is < 2n, so the expected number of walks is < 2.
        let mut y = self.round(x);
        while y >= self.n {
            y = self.round(y);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection_for_awkward_sizes() {
        for n in [1u64, 2, 3, 7, 100, 1000, 4097] {
            let p = Permutation::new(n, n * 31);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = p.apply(x);
                assert!(y < n, "n={n}: {x} -> {y}");
                assert!(!seen[y as usize], "n={n}: {y} hit twice");
                seen[y as usize] = true;
            }
        }
    }
}
