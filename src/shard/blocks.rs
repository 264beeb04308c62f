//! Contiguous row blocks, TorchRec's row-wise split: the layout of the row-wise and
//! table-row-wise baselines, and FlexShard's layout when no row is worth treating apart.

use super::plan::{Layout, RowLayout, RowRange};
use super::topology::TableSpec;

/// Rows `0..rows` in `parts` equal contiguous blocks of `⌈rows / parts⌉` on devices
/// `first, first + 1, …` (TorchRec's row-wise split; the last blocks may be short or empty).
pub(crate) fn row_blocks(rows: u32, first: usize, parts: usize) -> Layout {
    let block = (rows as u64).div_ceil(parts as u64);
    let ranges = (0..parts as u64)
        .map(|i| {
            (
                i * block,
                ((i + 1) * block).min(rows as u64),
                first + i as usize,
            )
        })
        .filter(|(s, e, _)| s < e)
        .map(|(s, e, d)| RowRange {
            start: s as u32,
            end: e as u32,
            device: d as u32,
        })
        .collect();
    Layout::Rows(RowLayout {
        ranges,
        ..Default::default()
    })
}

/// Every table of `tables` in equal contiguous row blocks over all `devices` devices.
pub(crate) fn row_wise(tables: &[TableSpec], devices: usize) -> Vec<Layout> {
    tables
        .iter()
        .map(|t| row_blocks(t.rows, 0, devices))
        .collect()
}
