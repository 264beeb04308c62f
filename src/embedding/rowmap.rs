//! The batch's unique-row map: which bags read each unique row, in CSR form.
//!
//! Built on the host (in the loader thread, off the device's critical path) and uploaded with the
//! batch. It is what makes the fused embedding backward deterministic and free of float atomics:
//! each unique row is reduced and updated by one worker, over its bags in batch order.

use crate::data::Bags;

/// Unique rows of one table in one batch, and the bags that read each (see module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowMap {
    /// Unique row ids, strictly increasing.
    pub unique_rows: Vec<u32>,
    /// `unique_rows.len() + 1` offsets into `bag_ids`.
    pub row_starts: Vec<u32>,
    /// For each occurrence, grouped by row in the order of `unique_rows`: the bag that reads it,
    /// in increasing bag order within a row.
    pub bag_ids: Vec<u32>,
    /// Scratch (row, bag) pairs, kept to avoid reallocating every batch.
    pairs: Vec<(u32, u32)>,
}

impl RowMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of unique rows.
    pub fn unique(&self) -> usize {
        self.unique_rows.len()
    }

    /// Rebuilds the map for `bags`, reusing this map's allocations.
    ///
    /// A stable radix sort of (row, bag) pairs by row: O(lookups), and stable, so the bags of a
    /// row stay in batch order.
    pub fn build(&mut self, bags: &Bags) {
        self.pairs.clear();
        self.pairs.reserve(bags.indices.len());
        for b in 0..bags.len() {
            self.pairs
                .extend(bags.bag(b).iter().map(|&r| (r, b as u32)));
        }
        radsort::sort_by_key(&mut self.pairs, |p| p.0);
        self.unique_rows.clear();
        self.row_starts.clear();
        self.bag_ids.clear();
        self.bag_ids.extend(self.pairs.iter().map(|p| p.1));
        let mut prev = None;
        for (k, &(row, _)) in self.pairs.iter().enumerate() {
            if prev != Some(row) {
                self.unique_rows.push(row);
                self.row_starts.push(k as u32);
                prev = Some(row);
            }
        }
        self.row_starts.push(self.pairs.len() as u32);
    }

    /// Builds a new map for `bags`.
    pub fn from_bags(bags: &Bags) -> Self {
        let mut m = Self::new();
        m.build(bags);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_and_across_bags_are_grouped_in_batch_order() {
        let mut bags = Bags::new();
        bags.push(&[5, 2, 5]);
        bags.push(&[]);
        bags.push(&[2, 9]);
        let m = RowMap::from_bags(&bags);
        assert_eq!(m.unique_rows, vec![2, 5, 9]);
        assert_eq!(m.row_starts, vec![0, 2, 4, 5]);
        assert_eq!(m.bag_ids, vec![0, 2, 0, 0, 2]);
    }

    #[test]
    fn empty_batch_gives_an_empty_map() {
        let m = RowMap::from_bags(&Bags::new());
        assert_eq!(m.unique(), 0);
        assert_eq!(m.row_starts, vec![0]);
    }

    #[test]
    fn rebuilding_reuses_and_replaces() {
        let mut a = Bags::new();
        a.push(&[1, 1, 1]);
        let mut b = Bags::new();
        b.push(&[7]);
        b.push(&[3]);
        let mut m = RowMap::from_bags(&a);
        m.build(&b);
        assert_eq!(m, RowMap::from_bags(&b));
        assert_eq!(m.unique_rows, vec![3, 7]);
        assert_eq!(m.bag_ids, vec![1, 0]);
    }
}
