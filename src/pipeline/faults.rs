//! Fault injection for the pipeline's hazard tests (cargo feature `fault-injection`, which the
//! crate's own tests turn on): random delays in every stage and a dropped prefetch. Results must
//! not change under either. Without the feature the faults are a zero-sized no-op and are not
//! part of the public API.

/// The stages a delay can hit, as numbered in the delay's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum DelayedStage {
    Planner = 1,
    Stager = 2,
    Device = 3,
    Writeback = 4,
}

/// Faults to inject into a lookahead run.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// `(seed, max µs)`: every stage sleeps a seeded random time up to `max µs` per batch.
    pub delays: Option<(u64, u64)>,
    /// `(step, table)`: the stager drops the first planned fetch of that table at that step, so
    /// the device stage meets a miss it must fetch itself.
    pub drop_prefetch: Option<(u64, usize)>,
}

/// No faults (the feature `fault-injection` is off).
#[cfg(not(feature = "fault-injection"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults;

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
