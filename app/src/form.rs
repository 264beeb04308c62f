//! The run panel's settings (persisted between sessions) and their validation into a
//! `RunConfig`, with rowflow's own messages.
//!
//! Text fields are parsed as the CLI parses its flags, and the whole config is then checked by
//! `RunConfig::validate` and the placement check a run makes first, so the app shows the
//! message `rowflow train` would print, next to the field it names.

use rowflow::config::{Fractions, RunConfig, TableRows};
use rowflow::device::BackendChoice;
use rowflow::embedding::Policy;
use rowflow::precision::{Precision, Rounding};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Where the data comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataKind {
    /// rowflow's seeded generator.
    #[default]
    Synthetic,
    /// A Criteo TSV file (plain or gzip).
    Criteo,
}

/// A field of the run panel (where an error is shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Field {
    CriteoPath,
    Tables,
    TableRows,
    Pooling,
    Zipf,
    TrainSamples,
    Dim,
    Mlp,
    BatchSize,
    Lr,
    Cache,
    Lookahead,
    Steps,
    EvalEvery,
    HotnessEvery,
    Seed,
    /// Not one field (shown beside Start).
    Other,
}

/// A value that cannot be used, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The field to show it next to.
    pub field: Field,
    /// rowflow's message.
    pub message: String,
}

/// The run panel's settings, as typed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct RunForm {
    pub backend: BackendChoice,
    pub data: DataKind,
    pub criteo_path: String,
    pub tables: String,
    pub table_rows: String,
    pub pooling: String,
    pub zipf_alpha: String,
    pub train_samples: String,
    pub dim: String,
    pub bottom_mlp: String,
    pub top_mlp: String,
    pub batch_size: String,
    pub lr: String,
    pub precision: Precision,
    pub policy: Policy,
    pub cache_fraction: String,
    pub lookahead: String,
    pub rounding: Rounding,
    pub steps: String,
    pub eval_every: String,
    pub hotness_every: String,
    pub seed: String,
}

impl Default for RunForm {
    fn default() -> Self {
        let c = RunConfig::default();
        let s = &c.synthetic;
        let list = |v: &[usize]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        RunForm {
            backend: c.backend,
            data: DataKind::Synthetic,
            criteo_path: String::new(),
            tables: s.tables.to_string(),
            table_rows: match &c.table_rows {
                TableRows::One(n) => n.to_string(),
                TableRows::Each(v) => list(&v.iter().map(|&n| n as usize).collect::<Vec<_>>()),
            },
            pooling: s.pooling_factor.to_string(),
            zipf_alpha: s.zipf_alpha.to_string(),
            train_samples: s.train_samples.to_string(),
            dim: c.model.dim.to_string(),
            bottom_mlp: list(&c.model.bottom_mlp),
            top_mlp: list(&c.model.top_mlp),
            batch_size: c.batch_size.to_string(),
            lr: c.lr.to_string(),
            // The app's point is the cache at work: a cached policy by default.
            precision: Precision::Int8,
            policy: Policy::Lookahead,
            cache_fraction: "0.05".into(),
            lookahead: c.lookahead.to_string(),
            rounding: c.rounding,
            steps: "2000".into(),
            eval_every: "500".into(),
            hotness_every: "20".into(),
            seed: c.seed.to_string(),
        }
    }
}

/// Parses `text` for `flag` as clap does, with its message on failure.
fn parse<T: FromStr>(field: Field, flag: &str, value: &str, text: &str) -> Result<T, FieldError>
where
    T::Err: std::fmt::Display,
{
    text.trim().parse().map_err(|e: T::Err| FieldError {
        field,
        message: format!("invalid value '{text}' for '{flag} <{value}>': {e}"),
    })
}

fn list(field: Field, key: &str, text: &str) -> Result<Vec<usize>, FieldError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse(field, key, "N,N,…", p))
        .collect()
}

/// The field a config key belongs to.
fn field_of(key: &str) -> Field {
    match key {
        "batch_size" => Field::BatchSize,
        "steps" => Field::Steps,
        "lr" => Field::Lr,
        "table_rows" => Field::TableRows,
        "model.dim" => Field::Dim,
        k if k.starts_with("model.bottom_mlp") => Field::Mlp,
        "cache_rows" | "cache_fraction" => Field::Cache,
        "lookahead" => Field::Lookahead,
        "hotness_every" => Field::HotnessEvery,
        "eval_every" => Field::EvalEvery,
        "data" => Field::CriteoPath,
        "synthetic.tables" => Field::Tables,
        "synthetic.pooling_factor" => Field::Pooling,
        "synthetic.zipf_alpha" => Field::Zipf,
        "synthetic.train_samples" => Field::TrainSamples,
        _ => Field::Other,
    }
}

impl RunForm {
    /// The config these settings describe, checked as `rowflow train` checks it.
    pub fn to_config(&self) -> Result<RunConfig, FieldError> {
        let mut c = RunConfig {
            backend: self.backend,
            data: match self.data {
                DataKind::Synthetic => "synthetic".into(),
                DataKind::Criteo => self.criteo_path.trim().to_string(),
            },
            ..RunConfig::default()
        };
        if self.data == DataKind::Criteo && c.data.is_empty() {
            return Err(FieldError {
                field: Field::CriteoPath,
                message: "no Criteo file: type its path, choose it with Browse…, or drop it on \
                          the window"
                    .into(),
            });
        }
        let s = &mut c.synthetic;
        s.tables = parse(Field::Tables, "synthetic.tables", "N", &self.tables)?;
        s.pooling_factor = parse(
            Field::Pooling,
            "synthetic.pooling_factor",
            "L",
            &self.pooling,
        )?;
        s.zipf_alpha = parse(Field::Zipf, "synthetic.zipf_alpha", "A", &self.zipf_alpha)?;
        s.train_samples = parse(
            Field::TrainSamples,
            "synthetic.train_samples",
            "N",
            &self.train_samples,
        )?;
        c.table_rows = TableRows::parse(&self.table_rows).map_err(|e| FieldError {
            field: Field::TableRows,
            message: format!(
                "invalid value '{}' for '--table-rows': {e}",
                self.table_rows
            ),
        })?;
        c.model.dim = parse(Field::Dim, "model.dim", "D", &self.dim)?;
        c.model.bottom_mlp = list(Field::Mlp, "model.bottom_mlp", &self.bottom_mlp)?;
        c.model.top_mlp = list(Field::Mlp, "model.top_mlp", &self.top_mlp)?;
        c.batch_size = parse(Field::BatchSize, "--batch-size", "B", &self.batch_size)?;
        c.lr = parse(Field::Lr, "--lr", "X", &self.lr)?;
        c.precision = self.precision;
        c.policy = self.policy;
        c.rounding = self.rounding;
        if self.policy.is_cached() {
            c.cache_fraction =
                Some(
                    Fractions::parse(&self.cache_fraction).map_err(|e| FieldError {
                        field: Field::Cache,
                        message: format!(
                            "invalid value '{}' for '--cache-fraction': {e}",
                            self.cache_fraction
                        ),
                    })?,
                );
        }
        c.lookahead = parse(Field::Lookahead, "--lookahead", "W", &self.lookahead)?;
        c.steps = Some(parse(Field::Steps, "--steps", "N", &self.steps)?);
        c.eval_every = parse(Field::EvalEvery, "--eval-every", "N", &self.eval_every)?;
        c.hotness_every = parse(
            Field::HotnessEvery,
            "hotness_every",
            "N",
            &self.hotness_every,
        )?;
        c.seed = parse(Field::Seed, "--seed", "S", &self.seed)?;
        let invalid = |e: rowflow::config::ConfigError| FieldError {
            field: match &e {
                rowflow::config::ConfigError::Invalid { key, .. } => field_of(key),
                _ => Field::Other,
            },
            message: e.to_string(),
        };
        c.validate().map_err(invalid)?;
        if c.is_synthetic() {
            let rows = c
                .table_rows
                .per_table(c.synthetic.tables)
                .map_err(invalid)?;
            c.placement(&rows).map_err(invalid)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_errors_name_their_field_with_rowflows_message() {
        let f = RunForm::default();
        let c = f.to_config().unwrap();
        assert_eq!((c.policy, c.steps), (Policy::Lookahead, Some(2000)));
        let bad = RunForm {
            batch_size: "0".into(),
            ..f.clone()
        };
        let e = bad.to_config().unwrap_err();
        assert_eq!(e.field, Field::BatchSize);
        assert_eq!(
            e.message,
            RunConfig {
                batch_size: 0,
                ..RunConfig::default()
            }
            .validate()
            .unwrap_err()
            .to_string()
        );
        let e = RunForm {
            lr: "fast".into(),
            ..f.clone()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(e.field, Field::Lr);
        assert!(
            e.message.starts_with("invalid value 'fast' for '--lr <X>'"),
            "{}",
            e.message
        );
        let e = RunForm {
            cache_fraction: "1.5".into(),
            ..f
        }
        .to_config()
        .unwrap_err();
        assert_eq!(e.field, Field::Cache, "{}", e.message);
    }
}
