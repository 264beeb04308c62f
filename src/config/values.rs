//! The values a config gives per table: row counts and cache fractions, one for all tables or
//! one each.

use super::ConfigError;
use serde::{Deserialize, Serialize};

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
