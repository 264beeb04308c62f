//! The values a config gives per table — row counts, cache fractions, cache sizes — each one
//! value for all tables or one value per table.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::str::FromStr;

/// One value for every table, or one value per table in table order (`table_rows = 1000` or
/// `table_rows = [1000, 2000]`; `--table-rows 1000` or `--table-rows 1000,2000`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerTable<T> {
    /// The same value for every table.
    One(T),
    /// One value per table, in table order.
    Each(Vec<T>),
}

/// Rows per embedding table.
pub type TableRows = PerTable<u32>;

/// Cache sizes as fractions of each table.
pub type Fractions = PerTable<f64>;

impl<T: Clone> PerTable<T> {
    /// Parses `V` or `V,V,…`; `what` names a value in the error (`a row count`).
    fn parse_list(s: &str, what: &str) -> Result<Self, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        let values: Result<Vec<T>, _> = s.split(',').map(|v| v.trim().parse::<T>()).collect();
        match values {
            Ok(mut v) if v.len() == 1 => Ok(PerTable::One(v.remove(0))),
            Ok(v) => Ok(PerTable::Each(v)),
            Err(e) => Err(format!(
                "expected {what} or a comma-separated list of them: {e}"
            )),
        }
    }

    /// The values given, in order.
    pub fn values(&self) -> Vec<T> {
        match self {
            PerTable::One(v) => vec![v.clone()],
            PerTable::Each(v) => v.clone(),
        }
    }

    /// The value of each of `tables` tables, or an error naming the config `key` and its
    /// `flag` when a list has the wrong length.
    pub fn expand(
        &self,
        tables: usize,
        key: &'static str,
        flag: &'static str,
    ) -> Result<Vec<T>, ConfigError> {
        match self {
            PerTable::One(v) => Ok(vec![v.clone(); tables]),
            PerTable::Each(v) if v.len() == tables => Ok(v.clone()),
            PerTable::Each(v) => Err(ConfigError::Invalid {
                key,
                flag: Some(flag),
                message: format!(
                    "{} values given for {tables} tables; give one value or {tables}",
                    v.len()
                ),
            }),
        }
    }
}

impl TableRows {
    /// Parses `100000` or `1000,2000,…` (the `--table-rows` and `--cache-rows` syntax).
    pub fn parse(s: &str) -> Result<TableRows, String> {
        Self::parse_list(s, "a row count")
    }

    /// The size of each of `tables` tables.
    pub fn per_table(&self, tables: usize) -> Result<Vec<u32>, ConfigError> {
        self.expand(tables, "table_rows", "--table-rows")
    }
}

impl Fractions {
    /// Parses `0.05` or `0.05,0.1,…` (the `--cache-fraction` syntax).
    pub fn parse(s: &str) -> Result<Fractions, String> {
        Self::parse_list(s, "a fraction")
    }
}
