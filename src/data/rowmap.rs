//! The batch's unique-row map: which bags read each unique row, in CSR form.
//!
//! Built on the host (in the loader thread, off the device's critical path) and uploaded with the
//! batch. It is what makes the fused embedding backward deterministic and free of float atomics:
//! each unique row is reduced and updated by one worker, over its bags in batch order.

use super::Bags;

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
    /// For each occurrence, in the same order as `bag_ids`: its position in the batch's index
    /// list (so renaming the lookups costs one pass, no search).
    pub positions: Vec<u32>,
    /// Scratch (row, position) pairs and the bag of each position, kept to avoid reallocating
    /// every batch.
    pairs: Vec<(u32, u32)>,
    bag_of: Vec<u32>,
}

impl RowMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes allocated by the map's vectors.
    pub fn bytes(&self) -> u64 {
        (4 * (self.unique_rows.capacity()
            + self.row_starts.capacity()
            + self.bag_ids.capacity()
            + self.positions.capacity()
            + self.bag_of.capacity())
            + 8 * self.pairs.capacity()) as u64
    }

    /// Number of unique rows.
    pub fn unique(&self) -> usize {
        self.unique_rows.len()
    }

    /// Rebuilds the map for `bags`, reusing this map's allocations.
    ///
    /// A stable radix sort of (row, position) pairs by row: O(lookups), and stable, so the
    /// occurrences of a row stay in batch order.
    pub fn build(&mut self, bags: &Bags) {
        self.pairs.clear();
        self.pairs
            .extend(bags.indices.iter().enumerate().map(|(p, &r)| (r, p as u32)));
        self.bag_of.clear();
        for b in 0..bags.len() {
            let len = bags.bag(b).len();
            self.bag_of.extend(std::iter::repeat_n(b as u32, len));
        }
        radsort::sort_by_key(&mut self.pairs, |p| p.0);
        self.unique_rows.clear();
        self.row_starts.clear();
        self.positions.clear();
        self.positions.extend(self.pairs.iter().map(|p| p.1));
        self.bag_ids.clear();
        let bag_of = &self.bag_of;
        self.bag_ids
            .extend(self.positions.iter().map(|&p| bag_of[p as usize]));
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

    /// Writes into `out[p]`, for every lookup position `p` of the batch, the name `names[u]` of
    /// its unique row `u`: the batch's indices renamed (to cache slots, say) in one pass.
    pub fn rename_lookups(&self, names: &[u32], out: &mut Vec<u32>) {
        out.clear();
        out.resize(self.positions.len(), 0);
        for (u, &name) in names.iter().enumerate() {
            for &p in &self.positions[self.row_starts[u] as usize..self.row_starts[u + 1] as usize]
            {
                out[p as usize] = name;
            }
        }
    }

    /// Writes into `out` this map with every row renamed: unique row `u` becomes `names[u]`
    /// (distinct values, e.g. cache slots). `out` is sorted by the new names, each row keeping
    /// its bags in batch order, so kernels see the same sums in the same order.
    pub fn rename_into(&self, names: &[u32], out: &mut RowMap) {
        out.pairs.clear();
        out.pairs
            .extend(names.iter().enumerate().map(|(u, &n)| (n, u as u32)));
        radsort::sort_by_key(&mut out.pairs, |p| p.0);
        out.unique_rows.clear();
        out.row_starts.clear();
        out.bag_ids.clear();
        out.positions.clear();
        out.row_starts.push(0);
        for &(name, u) in &out.pairs {
            let (a, b) = (
                self.row_starts[u as usize] as usize,
                self.row_starts[u as usize + 1] as usize,
            );
            out.unique_rows.push(name);
            out.bag_ids.extend_from_slice(&self.bag_ids[a..b]);
            out.positions.extend_from_slice(&self.positions[a..b]);
            out.row_starts.push(out.bag_ids.len() as u32);
        }
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
    fn renaming_sorts_by_the_new_names_and_keeps_each_rows_bags() {
        let mut bags = Bags::new();
        bags.push(&[5, 2, 5]);
        bags.push(&[9, 2]);
        let m = RowMap::from_bags(&bags); // unique 2, 5, 9
        let mut r = RowMap::new();
        m.rename_into(&[7, 0, 3], &mut r); // 2 -> 7, 5 -> 0, 9 -> 3
        assert_eq!(r.unique_rows, vec![0, 3, 7]);
        assert_eq!(r.row_starts, vec![0, 2, 3, 5]);
        assert_eq!(r.bag_ids, vec![0, 0, 1, 0, 1]);
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
