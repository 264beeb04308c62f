//! The lookahead planner: decides, for each batch, which of its rows hit, which are fetched into
//! which slot, and which resident rows are evicted to make room — seeing the next W batches.
//!
//! Rules (DESIGN.md, ScratchPipe):
//! - A row is *pinned* while any batch that reads it is in the window (received, not planned)
//!   or in flight (planned, not yet trained). Pinned rows are never victims, so a row resident
//!   or being inserted for an earlier batch is a hit for later ones and is never re-fetched
//!   from the (stale) host store.
//! - Victims are unpinned rows: first those no batch in the window reads, least recently used
//!   first (rows become unpinned in the order of their last use, so a FIFO of unpin events is
//!   exact LRU); then, only when the window's working set exceeds the cache, rows of the
//!   farthest batches — the planner shortens the window (`window_shrinks`), which is Belady's
//!   farthest-next-use-first within the window. Batches left out stay out (unpinned) until the
//!   pipeline lets them back, one per step, so a window that does not fit is not unpinned and
//!   pinned again in full at every step.
//! - If a batch's misses still do not fit while earlier batches are in flight, the planner waits
//!   for them to finish (their rows unpin). With nothing in flight, the batch alone exceeds the
//!   cache: an error naming the minimum cache size.
//! - A fetch of a row evicted by an earlier plan depends on that eviction's write-back: the plan
//!   records the step, and the stager waits for the write-back to land before reading the store.

use crate::data::RowMap;
use crate::device::DeviceError;
use crate::hostmem::{HugePages, prefetch, zeroed_slice};
use std::collections::VecDeque;

const EMPTY: u32 = u32::MAX;

/// One table's plan for one batch.
#[derive(Clone, Debug, Default)]
pub struct TablePlan {
    /// The slot of each unique row of the batch (in the order of its unique-row map).
    pub slot_of: Vec<u32>,
    /// Rows to fetch from the host store, and their slots.
    pub fetch_rows: Vec<u32>,
    /// Slots of `fetch_rows`.
    pub fetch_slots: Vec<u32>,
    /// Rows to write back and evict before the fetches, and their slots.
    pub evict_rows: Vec<u32>,
    /// Slots of `evict_rows`.
    pub evict_slots: Vec<u32>,
}

/// Why planning cannot go on.
#[derive(Debug)]
pub enum PlanError {
    /// A row id past its table.
    OutOfRange {
        /// The table.
        table: usize,
        /// The row id.
        row: u32,
        /// Rows in the table.
        rows: u32,
    },
    /// The batch alone needs more slots than the cache has.
    TooSmall {
        /// The table.
        table: usize,
        /// Unique rows the batch reads from it.
        needed: usize,
        /// Slots its cache has.
        slots: u32,
    },
}

impl From<PlanError> for DeviceError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::OutOfRange { table, row, rows } => DeviceError::IndexOutOfRange {
                kernel: "bag_forward",
                index: row,
                position: table,
                rows,
            },
            PlanError::TooSmall {
                table,
                needed,
                slots,
            } => DeviceError::InvalidArgument {
                kernel: "dequantize_rows",
                message: format!(
                    "table {table}: one batch reads {needed} unique rows but the cache holds {slots}; \
                     the lookahead policy needs at least {needed} cache rows for this table \
                     (raise --cache-rows or --cache-fraction)"
                ),
            },
        }
    }
}

/// What the planner knows of one row. Every row of a table has one, in an array indexed by row
/// id: a hash map holding only the rows in play would be smaller, but each of the five
/// touches per row and batch (pin, look up, place, unpin, evict) would then be a probe at a
/// random address; the array costs 12 bytes per table row (a sixth of an INT8 row of 64
/// values) and is read in row order, since unique rows are sorted. All-zero is the state of a
/// row nothing has touched.
#[derive(Clone, Copy, Default, bytemuck::Zeroable)]
#[repr(C)]
struct RowInfo {
    /// Batches in the window or in flight that read the row.
    pins: u32,
    /// Its slot plus one; 0 while not resident.
    slot1: u32,
    /// Resident: when it was last unpinned (its place in the LRU queue; 0 never). Not
    /// resident: [`evicted_stamp`] of the step that last evicted it (0 never).
    stamp: u32,
}

/// How many rows ahead the planner loads row entries.
const AHEAD: usize = 8;

/// Evicted-step stamps count modulo this (0 is "never").
const STAMP_MOD: u64 = u32::MAX as u64;

/// The stamp recording an eviction planned at `step`.
fn evicted_stamp(step: u64) -> u32 {
    (step % STAMP_MOD) as u32 + 1
}

/// The step a stamp recorded, as seen while planning `now` (0: none, or so old that its
/// write-back has long landed). Steps wrap modulo [`STAMP_MOD`]; a stamp of `now`'s own
/// residue is at least that many steps old, so it is treated as none rather than as `now`
/// (whose write-back cannot land before this plan is staged).
fn evicted_step(stamp: u32, now: u64) -> u64 {
    if stamp == 0 {
        return 0;
    }
    let back = (now % STAMP_MOD + STAMP_MOD - (stamp - 1) as u64) % STAMP_MOD;
    if back == 0 || back > now {
        0
    } else {
        now - back
    }
}

/// Planning state of one table.
struct Table {
    slots: u32,
    rows: allocator_api2::boxed::Box<[RowInfo], HugePages>,
    free: Vec<u32>,
    /// Resident unpinned rows in unpin order, stale entries (re-pinned or evicted rows) being
    /// skipped when popped.
    lru: VecDeque<(u32, u32)>,
    /// Resident unpinned rows now (live entries of `lru`).
    evictable: usize,
    /// The last unpin stamp handed out.
    seq: u32,
}

impl Table {
    fn new(rows: u32, slots: u32) -> Self {
        Table {
            slots,
            rows: zeroed_slice(rows as usize),
            free: (0..slots).rev().collect(),
            lru: VecDeque::new(),
            evictable: 0,
            seq: 0,
        }
    }

    fn is_live(info: &RowInfo, seq: u32) -> bool {
        info.pins == 0 && info.slot1 != 0 && info.stamp == seq
    }

    fn pin(&mut self, row: u32) {
        let info = &mut self.rows[row as usize];
        if info.pins == 0 && info.slot1 != 0 {
            self.evictable -= 1;
        }
        info.pins += 1;
    }

    fn unpin(&mut self, row: u32) {
        if self.seq == u32::MAX {
            self.renumber();
        }
        let info = &mut self.rows[row as usize];
        info.pins = info.pins.saturating_sub(1);
        if info.pins == 0 && info.slot1 != 0 {
            self.seq += 1;
            info.stamp = self.seq;
            self.lru.push_back((row, self.seq));
            self.evictable += 1;
        }
        // Drop stale entries in bulk when they outnumber the live ones, so the queue stays
        // bounded.
        if self.lru.len() > 4 * (self.evictable + self.slots as usize) + 1024 {
            let rows = &self.rows;
            self.lru
                .retain(|&(r, s)| Self::is_live(&rows[r as usize], s));
        }
    }

    /// Renumbers the live LRU entries from 1 when the 32-bit sequence is spent (every 4 billion
    /// unpins), keeping their order.
    fn renumber(&mut self) {
        let rows = &mut self.rows;
        self.lru
            .retain(|&(r, s)| Self::is_live(&rows[r as usize], s));
        self.seq = 0;
        for (row, s) in self.lru.iter_mut() {
            self.seq += 1;
            *s = self.seq;
            rows[*row as usize].stamp = self.seq;
        }
    }

    /// Applies `f` to every row of `rows`, loading each row's entry a few rows ahead: the
    /// entries of a batch's rows are scattered over the array, and touching them one after
    /// another would wait for memory at each.
    fn each(&mut self, rows: &[u32], mut f: impl FnMut(&mut Self, u32)) {
        for (i, &row) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(i + AHEAD) {
                self.prefetch(ahead);
            }
            f(self, row);
        }
    }

    fn prefetch(&self, row: u32) {
        if let Some(info) = self.rows.get(row as usize) {
            prefetch(std::slice::from_ref(info));
        }
    }

    fn slot_of(&self, row: u32) -> Option<u32> {
        self.rows[row as usize].slot1.checked_sub(1)
    }

    /// Pops the least recently used unpinned resident row, evicting it at `step`, and frees
    /// its slot.
    fn pop_victim(&mut self, step: u64) -> Option<(u32, u32)> {
        while let Some((row, seq)) = self.lru.pop_front() {
            if let Some(&(ahead, _)) = self.lru.get(AHEAD) {
                self.prefetch(ahead);
            }
            let info = &mut self.rows[row as usize];
            if Self::is_live(info, seq) {
                let slot = info.slot1 - 1;
                info.slot1 = 0;
                info.stamp = evicted_stamp(step);
                self.evictable -= 1;
                return Some((row, slot));
            }
        }
        None
    }

    /// Puts `row` (pinned by the batch being planned at `now`) in `slot`; returns the step
    /// whose eviction of it must be written back before it is fetched (0: none).
    fn place(&mut self, row: u32, slot: u32, now: u64) -> u64 {
        let info = &mut self.rows[row as usize];
        let depends = evicted_step(info.stamp, now);
        info.slot1 = slot + 1;
        info.stamp = 0;
        depends
    }

    /// Rows that could be made room for now: free slots and unpinned resident rows.
    fn room(&self) -> usize {
        self.free.len() + self.evictable
    }
}

/// The planner of every table.
pub struct Planner {
    tables: Vec<Table>,
    rows: Vec<u32>,
}

/// The outcome of trying to plan a batch.
pub enum Attempt {
    /// Planned: one plan per table; how many of the farthest window batches were left out
    /// (unpinned, and still unpinned: the caller pins them again when they may come back);
    /// and the latest step whose write-back the fetches depend on (0: none).
    Done(Vec<TablePlan>, usize, u64),
    /// Not enough room until in-flight batches finish.
    Wait,
}

impl Planner {
    /// A planner for tables of `rows` rows with caches of `slots` slots.
    pub fn new(rows: &[u32], slots: &[u32]) -> Self {
        Planner {
            tables: rows
                .iter()
                .zip(slots)
                .map(|(&r, &s)| Table::new(r, s))
                .collect(),
            rows: rows.to_vec(),
        }
    }

    /// Checks that every row of a batch is inside its table (before any store reads it).
    pub fn check(&self, maps: &[RowMap]) -> Result<(), PlanError> {
        for (table, (m, &rows)) in maps.iter().zip(&self.rows).enumerate() {
            // Unique rows are sorted: the last is the largest.
            if let Some(&row) = m.unique_rows.last()
                && row >= rows
            {
                return Err(PlanError::OutOfRange { table, row, rows });
            }
        }
        Ok(())
    }

    /// A batch enters the window (or flight): its rows are pinned.
    pub fn pin(&mut self, maps: &[RowMap]) {
        for (t, m) in self.tables.iter_mut().zip(maps) {
            t.each(&m.unique_rows, Table::pin);
        }
    }

    /// A batch leaves (trained, or pushed out of a shortened window): its rows are unpinned.
    pub fn unpin(&mut self, maps: &[RowMap]) {
        for (t, m) in self.tables.iter_mut().zip(maps) {
            t.each(&m.unique_rows, Table::unpin);
        }
    }

    /// [`Planner::unpin`] for a batch given by its unique rows per table.
    pub fn unpin_rows(&mut self, rows: &[Vec<u32>]) {
        for (t, r) in self.tables.iter_mut().zip(rows) {
            t.each(r, Table::unpin);
        }
    }

    /// Plans `maps` (the batch at `step`, already pinned) with `far` the pinned window batches
    /// after it, farthest last. `in_flight` says whether earlier batches are still training.
    pub fn plan(
        &mut self,
        step: u64,
        maps: &[RowMap],
        far: &[&[RowMap]],
        in_flight: bool,
    ) -> Result<Attempt, PlanError> {
        // One lookup per row: its slot now (or EMPTY), kept for the assignment below.
        let mut found: Vec<Vec<u32>> = Vec::with_capacity(maps.len());
        let mut misses = Vec::with_capacity(maps.len());
        for (t, m) in self.tables.iter().zip(maps) {
            let rows = &m.unique_rows;
            let f: Vec<u32> = (0..rows.len())
                .map(|i| {
                    if let Some(&ahead) = rows.get(i + AHEAD) {
                        t.prefetch(ahead);
                    }
                    t.slot_of(rows[i]).unwrap_or(EMPTY)
                })
                .collect();
            misses.push(f.iter().filter(|&&s| s == EMPTY).count());
            found.push(f);
        }
        // Shorten the window, farthest batch first, until every table has room.
        let mut shrunk = 0;
        while shrunk < far.len() && self.tables.iter().zip(&misses).any(|(t, &m)| t.room() < m) {
            self.unpin(far[far.len() - 1 - shrunk]);
            shrunk += 1;
        }
        let short = self
            .tables
            .iter()
            .zip(&misses)
            .position(|(t, &m)| t.room() < m);
        if let Some(table) = short {
            // Put the window back as it was before deciding.
            for b in far[far.len() - shrunk..].iter().rev() {
                self.pin(b);
            }
            if in_flight {
                return Ok(Attempt::Wait);
            }
            let t = &self.tables[table];
            return Err(PlanError::TooSmall {
                table,
                needed: maps[table].unique(),
                slots: t.slots,
            });
        }
        let mut plans = Vec::with_capacity(self.tables.len());
        let mut depends = 0;
        for ((t, m), f) in self.tables.iter_mut().zip(maps).zip(&found) {
            let mut p = TablePlan::default();
            for (&row, &hit) in m.unique_rows.iter().zip(f) {
                // Rows pinned by this batch cannot have moved since the lookup above.
                if hit != EMPTY {
                    p.slot_of.push(hit);
                    continue;
                }
                let slot = match t.free.pop() {
                    Some(s) => s,
                    None => {
                        // `room` counted this victim: there is one.
                        let (victim, slot) = t.pop_victim(step).ok_or(PlanError::TooSmall {
                            table: 0,
                            needed: m.unique(),
                            slots: t.slots,
                        })?;
                        p.evict_rows.push(victim);
                        p.evict_slots.push(slot);
                        slot
                    }
                };
                depends = depends.max(t.place(row, slot, step));
                p.fetch_rows.push(row);
                p.fetch_slots.push(slot);
                p.slot_of.push(slot);
            }
            plans.push(p);
        }
        Ok(Attempt::Done(plans, shrunk, depends))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Bags;

    fn maps(rows: &[&[u32]]) -> Vec<RowMap> {
        rows.iter()
            .map(|r| {
                let mut b = Bags::new();
                b.push(r);
                RowMap::from_bags(&b)
            })
            .collect()
    }

    fn done(a: Attempt) -> (Vec<TablePlan>, usize, u64) {
        match a {
            Attempt::Done(p, s, d) => (p, s, d),
            Attempt::Wait => panic!("expected a plan"),
        }
    }

    #[test]
    fn pinned_rows_are_hits_and_never_victims() {
        let mut p = Planner::new(&[100], &[3]);
        let (b1, b2, b3) = (maps(&[&[1, 2]]), maps(&[&[2, 3]]), maps(&[&[4]]));
        for b in [&b1, &b2, &b3] {
            p.pin(b);
        }
        let (p1, ..) = done(p.plan(1, &b1, &[&b2, &b3], false).unwrap());
        assert_eq!(p1[0].fetch_rows, vec![1, 2]);
        let (p2, ..) = done(p.plan(2, &b2, &[&b3], true).unwrap());
        assert_eq!(
            p2[0].fetch_rows,
            vec![3],
            "row 2 is a hit: it is resident for batch 1"
        );
        // Batch 3 needs a slot: rows 1..3 are all pinned (in flight) until batch 1 finishes.
        assert!(matches!(p.plan(3, &b3, &[], true).unwrap(), Attempt::Wait));
        p.unpin(&b1); // batch 1 trained: row 1 is free to go, row 2 is still pinned by batch 2
        let (p3, ..) = done(p.plan(3, &b3, &[], true).unwrap());
        assert_eq!(
            (p3[0].evict_rows.clone(), p3[0].fetch_rows.clone()),
            (vec![1], vec![4])
        );
    }

    #[test]
    fn a_full_window_is_shortened_farthest_first_and_counted() {
        let mut p = Planner::new(&[100], &[2]);
        let (b1, b2, b3) = (maps(&[&[1]]), maps(&[&[2]]), maps(&[&[3, 4]]));
        for b in [&b1, &b2, &b3] {
            p.pin(b);
        }
        let (_, shrunk, _) = done(p.plan(1, &b1, &[&b2, &b3], false).unwrap());
        assert_eq!(shrunk, 0);
        p.unpin(&b1);
        let (plan, shrunk, _) = done(p.plan(2, &b2, &[&b3], false).unwrap());
        assert!(shrunk == 0 && plan[0].fetch_rows == vec![2]);
        p.unpin(&b2);
        let (plan, _, _) = done(p.plan(3, &b3, &[], false).unwrap());
        assert_eq!(plan[0].evict_rows.len(), 2);
    }

    #[test]
    fn a_window_that_does_not_fit_leaves_its_farthest_batch_out() {
        let mut p = Planner::new(&[100], &[2]);
        let (b1, b2, b3) = (maps(&[&[1, 2]]), maps(&[&[3, 4]]), maps(&[&[1]]));
        for b in [&b1, &b2, &b3] {
            p.pin(b);
        }
        let (_, shrunk, _) = done(p.plan(1, &b1, &[&b2, &b3], false).unwrap());
        assert_eq!(shrunk, 0);
        p.unpin(&b1); // row 1 stays pinned by batch 3
        let (plan, shrunk, _) = done(p.plan(2, &b2, &[&b3], false).unwrap());
        assert_eq!(shrunk, 1, "batch 3 had to leave the window");
        let mut evicted = plan[0].evict_rows.clone();
        evicted.sort();
        assert_eq!(evicted, vec![1, 2]);
        p.unpin(&b2);
        p.pin(&b3); // back in the window, to be planned
        let (plan, _, dep) = done(p.plan(3, &b3, &[], false).unwrap());
        assert_eq!((plan[0].fetch_rows.clone(), dep), (vec![1], 2));
    }

    #[test]
    fn a_batch_bigger_than_the_cache_names_the_minimum() {
        let mut p = Planner::new(&[100], &[2]);
        let b = maps(&[&[1, 2, 3]]);
        p.pin(&b);
        match p.plan(1, &b, &[], false) {
            Err(PlanError::TooSmall {
                needed: 3,
                slots: 2,
                ..
            }) => {}
            _ => panic!("expected the minimum-size error"),
        }
    }

    #[test]
    fn refetching_an_evicted_row_waits_for_its_write_back() {
        let mut p = Planner::new(&[100], &[1]);
        let (b1, b2, b3) = (maps(&[&[7]]), maps(&[&[8]]), maps(&[&[7]]));
        p.pin(&b1);
        let _ = done(p.plan(1, &b1, &[], false).unwrap());
        p.unpin(&b1);
        p.pin(&b2);
        let (plan, _, dep) = done(p.plan(2, &b2, &[], false).unwrap());
        assert_eq!((plan[0].evict_rows.clone(), dep), (vec![7], 0));
        p.unpin(&b2);
        p.pin(&b3);
        let (_, _, dep) = done(p.plan(3, &b3, &[], false).unwrap());
        assert_eq!(dep, 2, "row 7 was evicted by the plan of step 2");
    }
}
