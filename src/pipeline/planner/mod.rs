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

mod rows;
#[cfg(test)]
mod tests;

use crate::data::{Bags, RowMap};
use crate::embedding::EmbeddingError;
use crate::embedding::transfer::SlotPlan;
use rows::{AHEAD, Table};

const EMPTY: u32 = u32::MAX;

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
    Done(Vec<SlotPlan>, usize, u64),
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

    /// Checks that every row of a batch (`sparse`, with its unique-row `maps`) is inside its
    /// table, before any store reads it.
    pub fn check(&self, sparse: &[Bags], maps: &[RowMap]) -> Result<(), EmbeddingError> {
        for (table, ((m, bags), &rows)) in maps.iter().zip(sparse).zip(&self.rows).enumerate() {
            // Unique rows are sorted: the last is the largest.
            if let Some(&last) = m.unique_rows.last()
                && last >= rows
            {
                let position = bags.indices.iter().position(|&r| r >= rows).unwrap_or(0);
                return Err(EmbeddingError::RowOutOfRange {
                    table,
                    row: bags.indices.get(position).copied().unwrap_or(last),
                    position,
                    rows,
                });
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

    /// Takes over caches holding rows already: per table, its (row, slot) pairs least recently
    /// used first (a run resumed from a checkpoint, whose rows are all unpinned).
    pub fn restore(&mut self, resident: &[Vec<(u32, u32)>]) {
        for (t, r) in self.tables.iter_mut().zip(resident) {
            t.restore(r);
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
    ) -> Result<Attempt, EmbeddingError> {
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
            return Err(EmbeddingError::CacheTooSmall {
                table,
                needed: maps[table].unique(),
                slots: t.slots,
            });
        }
        let mut plans = Vec::with_capacity(self.tables.len());
        let mut depends = 0;
        for (table, ((t, m), f)) in self.tables.iter_mut().zip(maps).zip(&found).enumerate() {
            let mut p = SlotPlan::default();
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
                        let (victim, slot) =
                            t.pop_victim(step).ok_or(EmbeddingError::CacheTooSmall {
                                table,
                                needed: m.unique(),
                                slots: t.slots,
                            })?;
                        p.evict.push(victim, slot);
                        slot
                    }
                };
                depends = depends.max(t.place(row, slot, step));
                p.fetch.push(row, slot);
                p.slot_of.push(slot);
            }
            plans.push(p);
        }
        Ok(Attempt::Done(plans, shrunk, depends))
    }
}
