//! What can go wrong with embedding tables, in the user's words: tables, rows, cache sizes.

use crate::device::DeviceError;

/// An embedding-table error. A user's mistake (a cache too small for one batch, a row past its
/// table) names the table and what to do; device failures pass through as [`DeviceError`].
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// One batch reads more distinct rows of a table than its cache has slots.
    #[error(
        "table {table}: one batch reads {needed} unique rows but its cache holds {slots}; raise \
         --cache-rows or --cache-fraction to at least {needed} cache rows for this table"
    )]
    CacheTooSmall {
        /// The table (0-based, in the data's order).
        table: usize,
        /// Distinct rows the batch reads from it.
        needed: usize,
        /// Slots its cache has.
        slots: u32,
    },
    /// A lookup past the end of its table (the data's categories exceed `--table-rows`).
    #[error(
        "table {table}: row {row} (lookup {position} of the batch) is past the table's {rows} \
         rows; check the data's table sizes (--table-rows)"
    )]
    RowOutOfRange {
        /// The table.
        table: usize,
        /// The row id.
        row: u32,
        /// Its position in the batch's lookups of that table.
        position: usize,
        /// Rows in the table.
        rows: u32,
    },
    /// The host cannot hold a table's backing store.
    #[error("table {table}: cannot allocate {bytes} bytes of host memory for its {what}: {reason}")]
    HostMemory {
        /// The table.
        table: usize,
        /// Bytes requested.
        bytes: u64,
        /// `host store` or `optimizer state`.
        what: &'static str,
        /// The allocator's answer.
        reason: String,
    },
    /// An operation only tables kept whole on the device support.
    #[error(
        "table {table} lives in a host store behind a cache; only tables kept whole on the \
         device (policy all-on-device) can be overwritten"
    )]
    NotOnDevice {
        /// The table.
        table: usize,
    },
    /// A checkpoint that does not fit the tables (another shape, a missing tensor).
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A batch or plan that does not fit the tables: a bug in rowflow's pipeline, not the
    /// user's input.
    #[error("table {table}: {message} (a bug in rowflow; please report it)")]
    Inconsistent {
        /// The table.
        table: usize,
        /// What does not fit.
        message: String,
    },
    /// The device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
}
