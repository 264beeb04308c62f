//! What the planner knows of each row of one table: pins, slot, and when it was last unpinned
//! or evicted, in one zeroed array indexed by row id; plus the table's free slots and its LRU
//! queue of unpinned resident rows.

use crate::hostmem::{HugePages, prefetch, zeroed_slice};
use std::collections::VecDeque;

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
pub(super) const AHEAD: usize = 8;

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
pub(super) struct Table {
    pub(super) slots: u32,
    rows: allocator_api2::boxed::Box<[RowInfo], HugePages>,
    pub(super) free: Vec<u32>,
    /// Resident unpinned rows in unpin order, stale entries (re-pinned or evicted rows) being
    /// skipped when popped.
    lru: VecDeque<(u32, u32)>,
    /// Resident unpinned rows now (live entries of `lru`).
    evictable: usize,
    /// The last unpin stamp handed out.
    seq: u32,
}

impl Table {
    pub(super) fn new(rows: u32, slots: u32) -> Self {
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

    pub(super) fn pin(&mut self, row: u32) {
        let info = &mut self.rows[row as usize];
        if info.pins == 0 && info.slot1 != 0 {
            self.evictable -= 1;
        }
        info.pins += 1;
    }

    pub(super) fn unpin(&mut self, row: u32) {
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
    pub(super) fn each(&mut self, rows: &[u32], mut f: impl FnMut(&mut Self, u32)) {
        for (i, &row) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(i + AHEAD) {
                self.prefetch(ahead);
            }
            f(self, row);
        }
    }

    pub(super) fn prefetch(&self, row: u32) {
        if let Some(info) = self.rows.get(row as usize) {
            prefetch(std::slice::from_ref(info));
        }
    }

    pub(super) fn slot_of(&self, row: u32) -> Option<u32> {
        self.rows[row as usize].slot1.checked_sub(1)
    }

    /// Pops the least recently used unpinned resident row, evicting it at `step`, and frees
    /// its slot.
    pub(super) fn pop_victim(&mut self, step: u64) -> Option<(u32, u32)> {
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
    pub(super) fn place(&mut self, row: u32, slot: u32, now: u64) -> u64 {
        let info = &mut self.rows[row as usize];
        let depends = evicted_step(info.stamp, now);
        info.slot1 = slot + 1;
        info.stamp = 0;
        depends
    }

    /// Takes over a cache holding `resident` (row, slot) pairs, least recently used first, all
    /// unpinned (a run resumed from a checkpoint).
    pub(super) fn restore(&mut self, resident: &[(u32, u32)]) {
        let mut taken = vec![false; self.slots as usize];
        for &(row, slot) in resident {
            let info = &mut self.rows[row as usize];
            info.slot1 = slot + 1;
            self.seq += 1;
            info.stamp = self.seq;
            self.lru.push_back((row, self.seq));
            self.evictable += 1;
            taken[slot as usize] = true;
        }
        self.free = (0..self.slots)
            .rev()
            .filter(|&s| !taken[s as usize])
            .collect();
    }

    /// Rows that could be made room for now: free slots and unpinned resident rows.
    pub(super) fn room(&self) -> usize {
        self.free.len() + self.evictable
    }
}
