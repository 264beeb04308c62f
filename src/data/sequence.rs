//! Variable-length sequence features: per sample and per table, a sequence of row ids whose
//! embeddings are all kept (pooling `none`), as in the user-history features of sequence
//! recommendation models.
//!
//! A sequence table's lookups for a batch are stored in the same CSR form as pooled bags
//! ([`Bags`]): sample `b` reads `indices[offsets[b] .. offsets[b + 1]]`. The difference is in what
//! a consumer does with them: a pooled bag becomes one vector, a sequence keeps one vector per
//! element, so every element is one embedding that travels through a sharded all-to-all.
//!
//! **Synthetic sequences** ([`SequenceGenerator`]) follow the synthetic generator's conventions
//! (src/data/synthetic/): popularity ranks from Zipf(`zipf_alpha`) mapped to row ids by the same
//! per-table Feistel permutation, so hot rows are scattered over the table; `zipf_alpha = 0` is a
//! uniform workload with no skew. Lengths come from a [`LengthDistribution`] with mean
//! `mean_length`. Every `(stream, table)` pair draws from its own PCG stream seeded by
//! `(seed, stream, table)`, so a batch can be generated alone, on any thread, and always comes out
//! the same.
//!
//! **Criteo multi-hot columns** ([`MultiHotColumns`]): a categorical field may hold several hex
//! values separated by a separator byte (e.g. `a1b2,c3d4,e5f6`); each value is hashed into the
//! field's table exactly as a one-hot Criteo value is (src/data/criteo/parse.rs), and the field
//! becomes a sequence of those rows. An empty field is the missing row (0) alone, as for a one-hot
//! field.

use super::synthetic::Permutation;
use super::{Bags, DataError};
use crate::bounds::Min;
use crate::rng::{Stream, splitmix64};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

named_enum! {
    /// How sequence lengths are drawn; every variant has mean `mean_length` (rounded where it must
    /// be an integer).
    pub enum LengthDistribution as "kebab-case" {
        /// Every sequence has `round(mean_length)` elements.
        Fixed,
        /// Uniform on `1 ..= 2·round(mean_length) − 1` (mean `round(mean_length)`).
        Uniform,
        /// Geometric on `1, 2, …` with success probability `1 / mean_length`: many short histories
        /// and a long tail of long ones, capped at 16 × the mean.
        Geometric,
    }
}

/// Settings of synthetic sequence features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceOptions {
    /// Rows of each sequence table (one table per sequence feature).
    pub table_rows: Vec<u32>,
    /// Zipf exponent of row popularity; 0 draws rows uniformly (no skew).
    pub zipf_alpha: f64,
    /// Mean elements per sequence (`L`).
    pub mean_length: f64,
    /// Distribution of the lengths.
    pub lengths: LengthDistribution,
}

/// Popularity of one table's rows: Zipf ranks, or uniform.
#[derive(Clone, Debug)]
enum Popularity {
    Zipf(Zipf<f64>),
    Uniform(u32),
}

/// Seeded generator of sequence batches (see the module docs).
#[derive(Clone, Debug)]
pub struct SequenceGenerator {
    opts: SequenceOptions,
    seed: u64,
    perms: Vec<Permutation>,
    popularity: Vec<Popularity>,
}

impl SequenceGenerator {
    /// Validates `opts` and builds the generator.
    pub fn new(opts: &SequenceOptions, seed: u64) -> Result<Self, DataError> {
        let invalid = |m: String| Err(DataError::Invalid(m));
        if opts.table_rows.is_empty() {
            return invalid("sequence features need at least one table".into());
        }
        if let Some(t) = opts.table_rows.iter().position(|&r| r == 0) {
            return invalid(format!("sequence table {t} has 0 rows; give it at least 1"));
        }
        Min::AtLeast(1.0)
            .check("the mean sequence length", opts.mean_length)
            .map_err(DataError::Invalid)?;
        Min::AtLeast(0.0)
            .check("Zipf alpha (0: uniform)", opts.zipf_alpha)
            .map_err(DataError::Invalid)?;
        let mut popularity = Vec::with_capacity(opts.table_rows.len());
        for &rows in &opts.table_rows {
            popularity.push(if opts.zipf_alpha == 0.0 {
                Popularity::Uniform(rows)
            } else {
                let z = Zipf::new(rows as f64, opts.zipf_alpha).map_err(|e| {
                    DataError::Invalid(format!("Zipf alpha {}: {e}", opts.zipf_alpha))
                })?;
                Popularity::Zipf(z)
            });
        }
        let perms = Permutation::per_table(&opts.table_rows, seed);
        Ok(SequenceGenerator {
            opts: opts.clone(),
            seed,
            perms,
            popularity,
        })
    }

    /// The generator's settings.
    pub fn options(&self) -> &SequenceOptions {
        &self.opts
    }

    /// The row of popularity rank `rank` (0 = hottest) in table `t`.
    pub fn row_of_rank(&self, t: usize, rank: u64) -> u32 {
        self.perms[t].apply(rank) as u32
    }

    /// One sequence length.
    fn length(&self, rng: &mut Pcg64Mcg) -> usize {
        let mean = self.opts.mean_length;
        let m = mean.round().max(1.0) as usize;
        match self.opts.lengths {
            LengthDistribution::Fixed => m,
            LengthDistribution::Uniform => rng.random_range(1..=2 * m - 1),
            LengthDistribution::Geometric => {
                // Inversion: ⌈ln U / ln(1 − p)⌉ with p = 1 / mean is geometric on 1, 2, ….
                let p = 1.0 / mean;
                if p >= 1.0 {
                    return 1;
                }
                let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let k = (u.ln() / (1.0 - p).ln()).ceil().max(1.0);
                (k as usize).min(16 * m)
            }
        }
    }

    /// Table `t`'s sequences for `samples` samples of stream `stream` (e.g. one device's share
    /// of one step: each stream is independent of every other).
    pub fn table_batch(&self, stream: u64, t: usize, samples: usize) -> Bags {
        let key = splitmix64(
            self.seed ^ splitmix64(stream ^ splitmix64(Stream::SequenceTable.key(t as u64))),
        );
        let mut rng = Pcg64Mcg::seed_from_u64(key);
        let mut bags = Bags::new();
        let approx = samples * self.opts.mean_length.round().max(1.0) as usize;
        bags.offsets.reserve(samples);
        bags.indices.reserve(approx + approx / 8);
        for _ in 0..samples {
            let len = self.length(&mut rng);
            for _ in 0..len {
                let rank = match &self.popularity[t] {
                    Popularity::Zipf(z) => z.sample(&mut rng) as u64 - 1,
                    Popularity::Uniform(n) => rng.random_range(0..*n) as u64,
                };
                bags.indices.push(self.row_of_rank(t, rank));
            }
            bags.offsets.push(bags.indices.len() as u32);
        }
        bags
    }

    /// Every table's sequences for `samples` samples of stream `stream`.
    pub fn batch(&self, stream: u64, samples: usize) -> Vec<Bags> {
        (0..self.opts.table_rows.len())
            .map(|t| self.table_batch(stream, t, samples))
            .collect()
    }
}

/// Criteo categorical fields read as sequences of several values (a reader option; see the
/// module docs). Fields are named `C1` .. `C26` by their 1-based number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiHotColumns {
    /// The multi-hot fields, as 0-based indices into `C1` .. `C26` (`C1` is 0).
    pub columns: Vec<usize>,
    /// The byte between values inside one field (`,` by default; never a tab).
    pub separator: u8,
}

impl Default for MultiHotColumns {
    fn default() -> Self {
        MultiHotColumns {
            columns: Vec::new(),
            separator: b',',
        }
    }
}

impl MultiHotColumns {
    /// Checks the settings against `sparse_fields` categorical fields.
    pub fn validate(&self, sparse_fields: usize) -> Result<(), DataError> {
        if self.separator == b'\t' || self.separator == b'\n' || self.separator == b'\r' {
            return Err(DataError::Invalid(
                "the multi-hot separator cannot be a tab or a line break (they delimit fields \
                 and lines); use `,` or `|`"
                    .into(),
            ));
        }
        if let Some(&c) = self.columns.iter().find(|&&c| c >= sparse_fields) {
            return Err(DataError::Invalid(format!(
                "multi-hot column index {c} is out of range: there are {sparse_fields} \
                 categorical fields (indices 0 ..= {})",
                sparse_fields - 1
            )));
        }
        Ok(())
    }

    /// Splits one field's bytes into its values (nothing for an empty field; the reader treats
    /// that as the missing row).
    pub fn split<'a>(&self, field: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let sep = self.separator;
        field
            .split(move |&b| b == sep)
            .filter(move |_| !field.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(alpha: f64, lengths: LengthDistribution) -> SequenceOptions {
        SequenceOptions {
            table_rows: vec![10_000, 500],
            zipf_alpha: alpha,
            mean_length: 20.0,
            lengths,
        }
    }

    #[test]
    fn sequences_are_reproducible_and_in_range() {
        let g = SequenceGenerator::new(&opts(1.05, LengthDistribution::Uniform), 3).unwrap();
        let a = g.batch(7, 64);
        assert_eq!(a, g.batch(7, 64));
        assert_ne!(a, g.batch(8, 64), "another stream gives other sequences");
        for (t, bags) in a.iter().enumerate() {
            assert_eq!(bags.len(), 64);
            let n = g.options().table_rows[t];
            assert!(bags.indices.iter().all(|&r| r < n));
            assert!((0..64).all(|b| (1..=39).contains(&bags.bag(b).len())));
        }
    }

    #[test]
    fn lengths_have_the_requested_mean() {
        for d in [
            LengthDistribution::Fixed,
            LengthDistribution::Uniform,
            LengthDistribution::Geometric,
        ] {
            let g = SequenceGenerator::new(&opts(0.0, d), 1).unwrap();
            let b = g.table_batch(0, 0, 20_000);
            let mean = b.indices.len() as f64 / 20_000.0;
            assert!((mean - 20.0).abs() < 0.5, "{d:?}: mean {mean}");
        }
    }

    #[test]
    fn skewed_sequences_concentrate_on_few_rows_and_uniform_ones_do_not() {
        let top_share = |alpha: f64| {
            let g = SequenceGenerator::new(&opts(alpha, LengthDistribution::Fixed), 5).unwrap();
            let b = g.table_batch(0, 0, 5_000);
            let mut counts = vec![0u32; 10_000];
            b.indices.iter().for_each(|&r| counts[r as usize] += 1);
            counts.sort_unstable_by(|a, b| b.cmp(a));
            counts[..100].iter().sum::<u32>() as f64 / b.indices.len() as f64
        };
        assert!(top_share(1.05) > 0.4);
        assert!(top_share(0.0) < 0.03);
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut o = opts(1.05, LengthDistribution::Fixed);
        o.mean_length = 0.5;
        assert!(SequenceGenerator::new(&o, 1).is_err());
        o.mean_length = 10.0;
        o.table_rows = vec![0];
        assert!(SequenceGenerator::new(&o, 1).is_err());
        o.table_rows = vec![10];
        o.zipf_alpha = -1.0;
        assert!(SequenceGenerator::new(&o, 1).is_err());
    }

    #[test]
    fn multi_hot_fields_split_into_values() {
        let m = MultiHotColumns {
            columns: vec![2],
            separator: b',',
        };
        let v: Vec<&[u8]> = m.split(b"a1,b2,c3").collect();
        assert_eq!(v, vec![&b"a1"[..], b"b2", b"c3"]);
        assert_eq!(m.split(b"").count(), 0);
        assert!(m.validate(26).is_ok());
        let bad = MultiHotColumns {
            columns: vec![26],
            ..Default::default()
        };
        assert!(bad.validate(26).unwrap_err().to_string().contains("26"));
    }
}
