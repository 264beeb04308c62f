//! Every value of a config checked against its range; the first problem names its key, its flag
//! and the range.

use super::{ConfigError, Fractions, RunConfig, TableRows};
use crate::bounds::Min;

impl RunConfig {
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
        // With its own embedding rate, `--lr 0` freezes the dense layers (the distributed
        // tests compare tables bit for bit that way); alone it would train nothing.
        let frozen_dense_ok = self.model.embedding_lr.is_some();
        real(
            "lr",
            Some("--lr"),
            self.lr as f64,
            0.0,
            frozen_dense_ok,
            1e3,
        )?;
        if let Some(e) = self.model.embedding_lr {
            real(
                "model.embedding_lr",
                Some("--embedding-lr"),
                e as f64,
                0.0,
                false,
                1e3,
            )?;
        }
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
        let rows = self.table_rows.values();
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
        m.dhe.check().map_err(|message| ConfigError::Invalid {
            key: "model.dhe",
            flag: message.contains("dhe.k ").then_some("--dhe-k"),
            message,
        })?;
        let features = match self.is_synthetic() {
            true => self.synthetic.tables,
            false => crate::data::criteo::NUM_SPARSE,
        };
        m.layout(features).map_err(|e| ConfigError::Invalid {
            key: "model.representation",
            flag: Some("--representation"),
            message: e.to_string(),
        })?;
        if self.save_every > 0 && self.save.is_none() {
            return Err(ConfigError::Invalid {
                key: "save_every",
                flag: Some("--save-every"),
                message: "checkpoints need a directory: add --save DIR".into(),
            });
        }
        let cache_rows = self
            .cache_rows
            .as_ref()
            .map_or(Vec::new(), TableRows::values);
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
        if let Some(n) = self.loader_threads {
            int("loader_threads", Some("--loader-threads"), n as u64, 1, 256)?;
        }
        if let Some(n) = self.compute_threads {
            int(
                "compute_threads",
                Some("--compute-threads"),
                n as u64,
                1,
                256,
            )?;
        }
        if let Some(g) = self.link_gbps {
            real("link_gbps", Some("--link-gbps"), g, 0.0, false, 1e6)?;
        }
        if self.is_synthetic() {
            int("synthetic.tables", None, s.tables as u64, 1, 1024)?;
            let rows = self.table_rows.per_table(s.tables)?;
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
            let rows = self.table_rows.per_table(crate::data::criteo::NUM_SPARSE)?;
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
    let min = if lo_inclusive {
        Min::AtLeast(lo)
    } else {
        Min::Above(lo)
    };
    if !min.admits(v) || v > hi {
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
