//! Fault injection for the pipeline's hazard tests (cargo feature `fault-injection`, which the
//! crate's own tests turn on): random delays in every stage and a dropped prefetch. Results must
//! not change under either. Without the feature [`Faults`] has no fields: a run has no faults.

/// The stages a delay can hit, as numbered in the delay's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum DelayedStage {
    Planner = 1,
    Stager = 2,
    Device = 3,
    Writeback = 4,
}

/// Faults to inject into a lookahead run: none by default, and none can be asked for unless
/// the feature `fault-injection` is on.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// `(seed, max µs)`: every stage sleeps a seeded random time up to `max µs` per batch.
    #[cfg(feature = "fault-injection")]
    pub delays: Option<(u64, u64)>,
    /// `(step, table)`: the stager drops the first planned fetch of that table at that step, so
    /// the device stage meets a miss it must fetch itself.
    #[cfg(feature = "fault-injection")]
    pub drop_prefetch: Option<(u64, usize)>,
}

impl Faults {
    /// Sleeps the seeded delay of `stage` at `step`, if delays are on.
    pub(crate) fn delay(&self, stage: DelayedStage, step: u64) {
        #[cfg(feature = "fault-injection")]
        if let Some((seed, max_us)) = self.delays {
            let h = crate::rng::splitmix64(seed ^ ((stage as u64) << 48) ^ step);
            std::thread::sleep(std::time::Duration::from_micros(h % (max_us + 1)));
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = (stage, step);
    }

    /// Whether the stager drops the first fetch of `table` at `step`.
    pub(crate) fn drops_prefetch(&self, step: u64, table: usize) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.drop_prefetch == Some((step, table));
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = (step, table);
            false
        }
    }
}
