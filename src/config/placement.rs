//! From a config to where the rows live: the placement policy's cache sizes, and the Criteo
//! fields read as multi-hot.

use super::{ConfigError, RunConfig, TableRows};
use crate::embedding::{Placement, Policy};
use crate::precision::Precision;

impl RunConfig {
    /// The multi-hot fields as the Criteo reader takes them: 0-based column indices and the
    /// separator byte; an error names a field that is not `C1` .. `C26` or a bad separator.
    pub fn multi_hot_columns(&self) -> Result<crate::data::sequence::MultiHotColumns, ConfigError> {
        let n = crate::data::criteo::NUM_SPARSE;
        let mut columns = Vec::with_capacity(self.multi_hot.len());
        for name in &self.multi_hot {
            let c = name
                .trim()
                .strip_prefix(['C', 'c'])
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|&c| (1..=n).contains(&c))
                .ok_or_else(|| ConfigError::Invalid {
                    key: "multi_hot",
                    flag: Some("--multi-hot"),
                    message: format!(
                        "`{name}` is not a categorical field: name them C1 .. C{n}, e.g. `--multi-hot C3,C12`"
                    ),
                })?;
            if !columns.contains(&(c - 1)) {
                columns.push(c - 1);
            }
        }
        let sep = self.multi_hot_separator;
        if !sep.is_ascii() || matches!(sep, '\t' | '\n' | '\r') {
            return Err(ConfigError::Invalid {
                key: "multi_hot_separator",
                flag: None,
                message: format!(
                    "{sep:?} cannot separate values: use one ASCII character other than a tab or \
                     line break, such as `,` or `|`"
                ),
            });
        }
        Ok(crate::data::sequence::MultiHotColumns {
            columns,
            separator: sep as u8,
        })
    }

    /// Where the embedding rows of tables with `table_rows` rows live.
    pub fn placement(&self, table_rows: &[u32]) -> Result<Placement, ConfigError> {
        let bad = |key, flag, message: String| ConfigError::Invalid {
            key,
            flag: Some(flag),
            message,
        };
        let sized = self.cache_fraction.is_some() || self.cache_rows.is_some();
        match self.policy {
            Policy::AllOnDevice => {
                if self.precision != Precision::Fp32 {
                    return Err(bad(
                        "precision",
                        "--precision",
                        format!(
                            "{} needs a host store, but policy all-on-device keeps FP32 rows on the device; \
                         add --policy lru (or lfu, host-only)",
                            self.precision.name()
                        ),
                    ));
                }
                if sized {
                    return Err(bad(
                        "cache_fraction",
                        "--cache-fraction",
                        "policy all-on-device has no cache; add --policy lru (or lfu)".into(),
                    ));
                }
                return Ok(Placement::all_on_device());
            }
            Policy::HostOnly if sized => {
                return Err(bad(
                    "cache_fraction",
                    "--cache-fraction",
                    "policy host-only has no cache; drop --cache-fraction/--cache-rows".into(),
                ));
            }
            _ => {}
        }
        if self.cache_fraction.is_some() && self.cache_rows.is_some() {
            return Err(bad(
                "cache_rows",
                "--cache-rows",
                "give either --cache-rows or --cache-fraction, not both".into(),
            ));
        }
        let n = table_rows.len();
        let cache_rows: Vec<u32> = match (&self.cache_rows, &self.cache_fraction) {
            (Some(TableRows::One(total)), _) => {
                let all: u64 = table_rows.iter().map(|&r| r as u64).sum();
                table_rows
                    .iter()
                    .map(|&r| {
                        ((*total as u64 * r as u64) as f64 / all as f64)
                            .round()
                            .max(1.0) as u32
                    })
                    .collect()
            }
            (Some(rows @ TableRows::Each(_)), _) => rows.expand(n, "cache_rows", "--cache-rows")?,
            (None, fractions) => {
                let f = match fractions {
                    None => vec![0.05; n],
                    Some(f) => f.expand(n, "cache_fraction", "--cache-fraction")?,
                };
                for &x in &f {
                    if !(x > 0.0 && x <= 1.0) {
                        return Err(bad(
                            "cache_fraction",
                            "--cache-fraction",
                            format!("{x} is out of range: expected a fraction with 0 < F <= 1"),
                        ));
                    }
                }
                table_rows
                    .iter()
                    .zip(&f)
                    .map(|(&r, &x)| (r as f64 * x).ceil().max(1.0) as u32)
                    .collect()
            }
        };
        Ok(Placement {
            policy: self.policy,
            precision: self.precision,
            rounding: self.rounding,
            cache_rows: cache_rows
                .iter()
                .zip(table_rows)
                .map(|(&c, &r)| c.clamp(1, r.max(1)))
                .collect(),
        })
    }
}
