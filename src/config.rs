//! `RunConfig`: everything a training run needs, from a TOML file and command-line overrides,
//! validated into clear errors that name the key (and its flag) and the accepted range.

use crate::data::synthetic::SyntheticOptions;
use crate::device::BackendChoice;
use crate::embedding::{Placement, Policy};
use crate::model::ModelConfig;
use crate::precision::{Precision, Rounding};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Rows per embedding table: one value for every table, or one value per table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TableRows {
    /// The same size for every table.
    One(u32),
    /// One size per table, in table order.
    Each(Vec<u32>),
}

impl TableRows {
    /// Parses `100000` or `1000,2000,…` (the `--table-rows` syntax).
    pub fn parse(s: &str) -> Result<TableRows, String> {
        let values: Result<Vec<u32>, _> = s.split(',').map(|v| v.trim().parse::<u32>()).collect();
        match values {
            Ok(v) if v.len() == 1 => Ok(TableRows::One(v[0])),
            Ok(v) => Ok(TableRows::Each(v)),
            Err(e) => Err(format!(
                "expected a row count or a comma-separated list of them: {e}"
            )),
        }
    }

    /// The size of each of `tables` tables, or an error naming the mismatch.
    pub fn expand(&self, tables: usize) -> Result<Vec<u32>, ConfigError> {
        match self {
            TableRows::One(n) => Ok(vec![*n; tables]),
            TableRows::Each(v) if v.len() == tables => Ok(v.clone()),
            TableRows::Each(v) => Err(ConfigError::Invalid {
                key: "table_rows",
                flag: Some("--table-rows"),
                message: format!(
                    "{} values given for {tables} tables; give one value or {tables}",
                    v.len()
                ),
            }),
        }
    }
}

/// Cache sizes as fractions of each table: one for every table, or one per table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fractions {
    /// The same fraction of every table.
    One(f64),
    /// One fraction per table.
    Each(Vec<f64>),
}

impl Fractions {
    /// Parses `0.05` or `0.05,0.1,…` (the `--cache-fraction` syntax).
    pub fn parse(s: &str) -> Result<Fractions, String> {
        let values: Result<Vec<f64>, _> = s.split(',').map(|v| v.trim().parse::<f64>()).collect();
        match values {
            Ok(v) if v.len() == 1 => Ok(Fractions::One(v[0])),
            Ok(v) => Ok(Fractions::Each(v)),
            Err(e) => Err(format!(
                "expected a fraction or a comma-separated list of them: {e}"
            )),
        }
    }
}

/// A whole training run's settings (a TOML file; flags override its keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// `auto`, `cpu`, `wgpu` or `cuda`.
    pub backend: BackendChoice,
    /// `synthetic` or the path of a Criteo TSV file (plain or gzip).
    pub data: String,
    /// Training steps; wins over `epochs` when set.
    pub steps: Option<u64>,
    /// Passes over the training split (a partial last batch of each is dropped).
    pub epochs: u64,
    /// Samples per training step.
    pub batch_size: usize,
    /// Samples per evaluation forward pass.
    pub eval_batch_size: usize,
    /// Learning rate of every optimizer.
    pub lr: f32,
    /// Seed of the data generator and of the model's initial weights.
    pub seed: u64,
    /// Evaluate on the test split every N steps (0: only at the end).
    pub eval_every: u64,
    /// Rows of each embedding table (Criteo: hashing buckets per categorical feature).
    pub table_rows: TableRows,
    /// Fraction of a data file's lines, at its end, held out as the test split.
    pub test_fraction: f64,
    /// Write one telemetry `Snapshot` per step to this JSON-lines file.
    pub telemetry: Option<PathBuf>,
    /// Write the run's summary as one JSON object to this file.
    pub summary_json: Option<PathBuf>,
    /// Skip and count malformed data lines instead of failing.
    pub skip_bad_lines: bool,
    /// Categorical fields of a Criteo file read as lists of values (multi-hot, sequence
    /// features), by name, `C1` .. `C26`; each value is hashed like a one-hot value and the
    /// field's bag holds them all. Empty: every field is one-hot.
    pub multi_hot: Vec<String>,
    /// The character between values inside a multi-hot field (not a tab).
    pub multi_hot_separator: char,
    /// Where embedding rows live: `all-on-device`, `host-only`, `lru`, `lfu`.
    pub policy: Policy,
    /// Precision of the host backing store (cached policies).
    pub precision: Precision,
    /// Rounding of rows written back to the store.
    pub rounding: Rounding,
    /// Cache size as a fraction of each table (default 0.05 for `lru`/`lfu`).
    pub cache_fraction: Option<Fractions>,
    /// Cache size in rows: one value is a global budget shared by the tables in proportion to
    /// their sizes; a list gives each table's.
    pub cache_rows: Option<TableRows>,
    /// Steps between row-hotness reports in the telemetry (0: never).
    pub hotness_every: u64,
    /// Batches the lookahead planner sees ahead (`--policy lookahead`).
    pub lookahead: usize,
    /// Charge host↔device bytes to a modelled link of this many GB/s (machines without one:
    /// the CPU backend, lavapipe). `null`: no modelled link.
    pub link_gbps: Option<f64>,
    /// Model sizes and optimizers.
    pub model: ModelConfig,
    /// The synthetic generator's settings.
    pub synthetic: SyntheticOptions,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            backend: BackendChoice::Auto,
            data: "synthetic".into(),
            steps: None,
            epochs: 1,
            batch_size: 256,
            eval_batch_size: 4096,
            lr: 0.05,
            seed: 1,
            eval_every: 1000,
            table_rows: TableRows::One(100_000),
            test_fraction: 0.2,
            telemetry: None,
            summary_json: None,
            skip_bad_lines: false,
            multi_hot: Vec::new(),
            multi_hot_separator: ',',
            policy: Policy::AllOnDevice,
            precision: Precision::Fp32,
            rounding: Rounding::Stochastic,
            cache_fraction: None,
            cache_rows: None,
            hotness_every: 100,
            lookahead: 8,
            link_gbps: None,
            model: ModelConfig::default(),
            synthetic: SyntheticOptions::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys or wrong types.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A value outside its range.
    #[error("invalid {key}{}: {message}", flag.map(|f| format!(" ({f})")).unwrap_or_default())]
    Invalid {
        /// The config key, dotted for sections (`model.dim`).
        key: &'static str,
        /// The command-line flag setting it, if any.
        flag: Option<&'static str>,
        /// The value and the accepted range.
        message: String,
    },
}

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

    /// Reads a TOML config file (missing keys take their defaults).
    pub fn from_file(path: &Path) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<RunConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// Whether the data is the embedded synthetic generator.
    pub fn is_synthetic(&self) -> bool {
        self.data == "synthetic"
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
            (Some(rows @ TableRows::Each(_)), _) => rows.expand(n)?,
            (None, fractions) => {
                let f = match fractions {
                    None => vec![0.05; n],
                    Some(Fractions::One(f)) => vec![*f; n],
                    Some(Fractions::Each(v)) if v.len() == n => v.clone(),
                    Some(Fractions::Each(v)) => {
                        return Err(bad(
                            "cache_fraction",
                            "--cache-fraction",
                            format!(
                                "{} values given for {n} tables; give one value or {n}",
                                v.len()
                            ),
                        ));
                    }
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

    /// Checks every value; the first problem is returned, naming its key, flag and range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.multi_hot_columns()?;
        if self.is_synthetic() && !self.multi_hot.is_empty() {
            return Err(ConfigError::Invalid {
                key: "multi_hot",
                flag: Some("--multi-hot"),
                message: "multi-hot fields are read from a Criteo file (`--data PATH`); the \
                          synthetic generator has none"
                    .into(),
            });
        }
        let m = &self.model;
        let s = &self.synthetic;
        int(
            "batch_size",
            Some("--batch-size"),
            self.batch_size as u64,
            1,
            1 << 20,
        )?;
        int(
            "eval_batch_size",
            None,
            self.eval_batch_size as u64,
            1,
            1 << 20,
        )?;
        if let Some(steps) = self.steps {
            int("steps", Some("--steps"), steps, 1, u64::MAX >> 1)?;
        }
        int("epochs", Some("--epochs"), self.epochs, 1, 1_000_000)?;
        real("lr", Some("--lr"), self.lr as f64, 0.0, false, 1e3)?;
        real(
            "test_fraction",
            Some("--test-fraction"),
            self.test_fraction,
            0.0,
            false,
            1.0,
        )
        .and_then(|_| {
            if self.test_fraction < 1.0 {
                Ok(())
            } else {
                Err(range_error(
                    "test_fraction",
                    Some("--test-fraction"),
                    self.test_fraction,
                    "a fraction with 0 < F < 1",
                ))
            }
        })?;
        if self.data.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "data",
                flag: Some("--data"),
                message: "empty: expected `synthetic` or the path of a Criteo TSV file".into(),
            });
        }
        let min_rows = if self.is_synthetic() { 1 } else { 2 };
        let rows = match &self.table_rows {
            TableRows::One(n) => vec![*n],
            TableRows::Each(v) => v.clone(),
        };
        if rows.is_empty() {
            return Err(ConfigError::Invalid {
                key: "table_rows",
                flag: Some("--table-rows"),
                message: "empty list: expected one row count or one per table".into(),
            });
        }
        for r in rows {
            int(
                "table_rows",
                Some("--table-rows"),
                r as u64,
                min_rows,
                1 << 31,
            )?;
        }
        int("model.dim", None, m.dim as u64, 1, 4096)?;
        for &h in m.bottom_mlp.iter().chain(&m.top_mlp) {
            int(
                "model.bottom_mlp / model.top_mlp",
                None,
                h as u64,
                1,
                1 << 16,
            )?;
        }
        real(
            "model.adagrad_eps",
            None,
            m.adagrad_eps as f64,
            0.0,
            false,
            1.0,
        )?;
        real(
            "model.adagrad_init",
            None,
            m.adagrad_init as f64,
            0.0,
            true,
            1e3,
        )?;
        real(
            "model.embedding_init_scale",
            None,
            m.embedding_init_scale as f64,
            0.0,
            true,
            1e3,
        )?;
        let cache_rows = match &self.cache_rows {
            Some(TableRows::One(n)) => vec![*n],
            Some(TableRows::Each(v)) => v.clone(),
            None => Vec::new(),
        };
        for v in cache_rows {
            int("cache_rows", Some("--cache-rows"), v as u64, 1, 1 << 31)?;
        }
        int("hotness_every", None, self.hotness_every, 0, u64::MAX >> 1)?;
        int(
            "lookahead",
            Some("--lookahead"),
            self.lookahead as u64,
            1,
            1024,
        )?;
        if let Some(g) = self.link_gbps {
            real("link_gbps", Some("--link-gbps"), g, 0.0, false, 1e6)?;
        }
        if self.is_synthetic() {
            int("synthetic.tables", None, s.tables as u64, 1, 1024)?;
            let rows = self.table_rows.expand(s.tables)?;
            // Per-table cache sizes are checked against the data's own tables when training
            // starts (a run may bring its own dataset).
            if !matches!(self.cache_rows, Some(TableRows::Each(_)))
                && !matches!(self.cache_fraction, Some(Fractions::Each(_)))
            {
                self.placement(&rows)?;
            }
            int(
                "synthetic.pooling_factor",
                None,
                s.pooling_factor as u64,
                1,
                4096,
            )?;
            real("synthetic.zipf_alpha", None, s.zipf_alpha, 0.0, true, 10.0)?;
            int(
                "synthetic.dense_features",
                None,
                s.dense_features as u64,
                1,
                4096,
            )?;
            int(
                "synthetic.train_samples",
                None,
                s.train_samples,
                1,
                u64::MAX >> 1,
            )?;
            int("synthetic.test_samples", None, s.test_samples, 2, 1 << 30)?;
            int("synthetic.teacher_dim", None, s.teacher_dim as u64, 1, 256)?;
            real(
                "synthetic.teacher_scale",
                None,
                s.teacher_scale,
                0.0,
                true,
                1e3,
            )?;
            real(
                "synthetic.teacher_bias",
                None,
                s.teacher_bias.abs(),
                0.0,
                true,
                1e3,
            )?;
        } else {
            let rows = self.table_rows.expand(crate::data::criteo::NUM_SPARSE)?;
            self.placement(&rows)?;
        }
        Ok(())
    }
}

fn range_error(
    key: &'static str,
    flag: Option<&'static str>,
    value: impl std::fmt::Display,
    expected: &str,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        flag,
        message: format!("{value} is out of range: expected {expected}"),
    }
}

fn int(
    key: &'static str,
    flag: Option<&'static str>,
    v: u64,
    lo: u64,
    hi: u64,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(range_error(
            key,
            flag,
            v,
            &format!("an integer from {lo} to {hi}"),
        ));
    }
    Ok(())
}

/// `lo < v <= hi` (or `lo <= v` when `lo_inclusive`), finite.
fn real(
    key: &'static str,
    flag: Option<&'static str>,
    v: f64,
    lo: f64,
    lo_inclusive: bool,
    hi: f64,
) -> Result<(), ConfigError> {
    let above = if lo_inclusive { v >= lo } else { v > lo };
    if !v.is_finite() || !above || v > hi {
        let op = if lo_inclusive { "<=" } else { "<" };
        return Err(range_error(
            key,
            flag,
            v,
            &format!("a number with {lo} {op} x <= {hi}"),
        ));
    }
    Ok(())
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |p| before.len() - p - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RunConfig::default().validate().unwrap();
    }

    #[test]
    fn batch_size_zero_names_the_key_and_flag() {
        let c = RunConfig {
            batch_size: 0,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("batch_size (--batch-size)") && e.contains("from 1 to"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let text = "seed = 3\n[model]\ndim = 8\nwidth = 4\n";
        let e = RunConfig::from_toml(text, Path::new("run.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("run.toml:4:"), "{e}");
        assert!(e.contains("width"), "{e}");
    }

    #[test]
    fn toml_sets_nested_keys_and_keeps_defaults() {
        let text = "lr = 0.1\ntable_rows = [10, 20]\n[synthetic]\ntables = 2\n[model]\ndim = 8\n";
        let c = RunConfig::from_toml(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.lr, 0.1);
        assert_eq!(c.model.dim, 8);
        assert_eq!(c.model.top_mlp, ModelConfig::default().top_mlp);
        assert_eq!(c.table_rows.expand(2).unwrap(), vec![10, 20]);
        c.validate().unwrap();
    }

    #[test]
    fn ranges_are_checked() {
        let bad = [
            RunConfig {
                lr: 0.0,
                ..Default::default()
            },
            RunConfig {
                lr: f32::NAN,
                ..Default::default()
            },
            RunConfig {
                test_fraction: 1.0,
                ..Default::default()
            },
            RunConfig {
                steps: Some(0),
                ..Default::default()
            },
            RunConfig {
                table_rows: TableRows::Each(vec![5; 3]),
                ..Default::default()
            },
            RunConfig {
                table_rows: TableRows::One(0),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let e = RunConfig {
            test_fraction: 1.5,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            e.to_string().contains("test_fraction (--test-fraction)"),
            "{e}"
        );
    }

    #[test]
    fn the_example_config_spells_out_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default.toml");
        assert_eq!(RunConfig::from_file(&path).unwrap(), RunConfig::default());
    }

    #[test]
    fn table_rows_parse() {
        assert_eq!(TableRows::parse("7").unwrap(), TableRows::One(7));
        assert_eq!(
            TableRows::parse("1,2, 3").unwrap(),
            TableRows::Each(vec![1, 2, 3])
        );
        assert!(TableRows::parse("1,x").is_err());
    }
}
