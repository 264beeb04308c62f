//! The directory of a device cache: row → slot (a map sized by the cache, not by the table) and
//! per-slot metadata (row, last use, use count, dirty, pinned), which the replacement policies
//! read and the cache updates. Every change keeps the map and the slots in step, so a lookup is
//! always one probe.

use crate::hostmem::{HugeMap, huge_map};

const EMPTY: u32 = u32::MAX;

/// Row → slot map and per-slot metadata.
pub struct Directory {
    map: HugeMap<u32, u32>,
    occupied: usize,
    slot_row: Vec<u32>,
    last_use: Vec<u64>,
    uses: Vec<u32>,
    dirty: Vec<bool>,
    pinned: Vec<u64>,
    epoch: u64,
    /// Free slots for on-demand inserts (the lookahead planner chooses slots itself).
    free: Vec<u32>,
}

impl Directory {
    /// An empty directory of `slots` slots.
    pub fn new(slots: u32) -> Self {
        let n = slots as usize;
        Directory {
            map: huge_map(n),
            occupied: 0,
            slot_row: vec![EMPTY; n],
            last_use: vec![0; n],
            uses: vec![0; n],
            dirty: vec![false; n],
            pinned: vec![0; n],
            epoch: 1,
            free: (0..slots).rev().collect(),
        }
    }

    /// Slots in the cache.
    pub fn slots(&self) -> u32 {
        self.slot_row.len() as u32
    }

    /// Slots holding a row.
    pub fn occupied(&self) -> usize {
        self.occupied
    }

    /// The slot holding `row`.
    pub fn lookup(&self, row: u32) -> Option<u32> {
        self.map.get(&row).copied()
    }

    /// Unpins every slot (a new step begins).
    pub fn begin_step(&mut self) {
        self.epoch += 1;
    }

    /// Marks a slot used at `tick` and pins it for the current step.
    pub fn touch(&mut self, slot: u32, tick: u64) {
        let s = slot as usize;
        self.last_use[s] = tick;
        self.uses[s] = self.uses[s].saturating_add(1);
        self.pinned[s] = self.epoch;
    }

    /// Marks a slot modified (it will be written back when evicted).
    pub fn mark_dirty(&mut self, slot: u32) {
        self.dirty[slot as usize] = true;
    }

    /// `(uses, last use)` of a slot.
    pub fn usage(&self, slot: u32) -> (u32, u64) {
        (self.uses[slot as usize], self.last_use[slot as usize])
    }

    /// Occupied slots not pinned by the current step.
    pub fn evictable(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots()).filter(|&s| {
            self.slot_row[s as usize] != EMPTY && self.pinned[s as usize] != self.epoch
        })
    }

    /// On demand: puts `row` in a free slot, if any.
    pub fn insert(&mut self, row: u32) -> Option<u32> {
        let slot = self.free.pop()?;
        self.slot_row[slot as usize] = row;
        self.map.insert(row, slot);
        self.occupied += 1;
        self.uses[slot as usize] = 0;
        Some(slot)
    }

    /// On demand: empties `slot`; returns its row and whether it was dirty.
    pub fn evict(&mut self, slot: u32) -> (u32, bool) {
        let s = slot as usize;
        let row = std::mem::replace(&mut self.slot_row[s], EMPTY);
        self.map.remove(&row);
        self.occupied -= 1;
        let dirty = std::mem::take(&mut self.dirty[s]);
        self.free.push(slot);
        (row, dirty)
    }

    /// Planned: puts `row` in `slot`, which must be empty (the lookahead planner chose it);
    /// `Err` describes a plan that does not fit the cache.
    pub fn place(&mut self, row: u32, slot: u32) -> Result<(), String> {
        let s = slot as usize;
        if self.slot_row.get(s) != Some(&EMPTY) {
            return Err(format!(
                "the plan puts row {row} in slot {slot}, which is not empty"
            ));
        }
        self.slot_row[s] = row;
        self.map.insert(row, slot);
        self.occupied += 1;
        Ok(())
    }

    /// Planned: empties `slot` (the lookahead planner evicts it); returns its row, if any.
    pub fn vacate(&mut self, slot: u32) -> Option<u32> {
        let row = std::mem::replace(self.slot_row.get_mut(slot as usize)?, EMPTY);
        (row != EMPTY).then(|| {
            self.map.remove(&row);
            self.occupied -= 1;
            row
        })
    }

    /// The row in `slot`, if any.
    pub fn row_in(&self, slot: u32) -> Option<u32> {
        self.slot_row
            .get(slot as usize)
            .copied()
            .filter(|&r| r != EMPTY)
    }

    /// Free slots.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Bytes allocated by the directory: the hash map and the per-slot vectors.
    pub fn bytes(&self) -> u64 {
        (self.map.allocation_size()
            + self.slot_row.capacity() * 4
            + self.last_use.capacity() * 8
            + self.uses.capacity() * 4
            + self.dirty.capacity()
            + self.pinned.capacity() * 8
            + self.free.capacity() * 4) as u64
    }

    /// Occupied slots with their rows.
    pub fn resident(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.slot_row
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != EMPTY)
            .map(|(s, r)| (s as u32, *r))
    }

    /// Everything the directory holds, for a checkpoint.
    pub fn state(&self) -> DirectoryState {
        DirectoryState {
            slot_row: self.slot_row.clone(),
            last_use: self.last_use.clone(),
            uses: self.uses.clone(),
            dirty: self.dirty.clone(),
            pinned: self.pinned.clone(),
            epoch: self.epoch,
            free: self.free.clone(),
        }
    }

    /// Replaces the directory with a saved one of the same slot count; `Err` says what does
    /// not fit (another size, a row twice, a free slot that is occupied).
    pub fn restore(&mut self, s: DirectoryState) -> Result<(), String> {
        let n = self.slot_row.len();
        let sizes = [
            s.slot_row.len(),
            s.last_use.len(),
            s.uses.len(),
            s.dirty.len(),
        ];
        if sizes.iter().chain([&s.pinned.len()]).any(|&l| l != n) {
            return Err(format!("a directory of {sizes:?} slots for a cache of {n}"));
        }
        let mut map = huge_map(n);
        let mut occupied = 0;
        for (slot, &row) in s.slot_row.iter().enumerate() {
            if row != EMPTY {
                if map.insert(row, slot as u32).is_some() {
                    return Err(format!("row {row} is in two slots"));
                }
                occupied += 1;
            }
        }
        // Only on-demand inserts keep the free list up to date (the lookahead planner chooses
        // slots itself), so it is kept as saved; it must name slots of this cache.
        if s.free.iter().any(|&f| f as usize >= n) {
            return Err(format!("the free list names a slot past the cache's {n}"));
        }
        *self = Directory {
            map,
            occupied,
            slot_row: s.slot_row,
            last_use: s.last_use,
            uses: s.uses,
            dirty: s.dirty,
            pinned: s.pinned,
            epoch: s.epoch,
            free: s.free,
        };
        Ok(())
    }
}

/// A directory's contents ([`Directory::state`]): per slot its row (`u32::MAX`: empty), last
/// use, use count, dirty flag and pin epoch; the current epoch; the free slots in the order
/// on-demand inserts take them (from the end).
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryState {
    /// Row per slot.
    pub slot_row: Vec<u32>,
    /// Tick (on demand) or step (lookahead) of each slot's last use.
    pub last_use: Vec<u64>,
    /// Uses per slot.
    pub uses: Vec<u32>,
    /// Modified since fetched.
    pub dirty: Vec<bool>,
    /// The epoch each slot was last pinned in.
    pub pinned: Vec<u64>,
    /// The current epoch.
    pub epoch: u64,
    /// Free slots.
    pub free: Vec<u32>,
}
