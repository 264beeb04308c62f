//! Per-kernel time of a run, for backends whose launches finish as they return (the CPU):
//! `rowflow train --profile-kernels` reports where the device step's time goes.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One kernel's launches and the seconds they took, summed over a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelTime {
    /// The kernel's name (`bag_forward` …, `copy_buffer`).
    pub kernel: String,
    /// Launches timed.
    pub launches: u64,
    /// Seconds, summed over the launches.
    pub seconds: f64,
}

/// Times launches once started; costs one relaxed load per launch until then.
#[derive(Debug, Default)]
pub struct KernelClock {
    on: AtomicBool,
    times: Mutex<BTreeMap<&'static str, (u64, f64)>>,
}

impl KernelClock {
    /// Starts timing (again from zero).
    pub fn start(&self) {
        self.lock().clear();
        self.on.store(true, Ordering::Relaxed);
    }

    /// Runs `launch`, adding its time to `kernel`'s when started.
    pub fn time<R>(&self, kernel: &'static str, launch: impl FnOnce() -> R) -> R {
        if !self.on.load(Ordering::Relaxed) {
            return launch();
        }
        let t0 = Instant::now();
        let out = launch();
        let dt = t0.elapsed().as_secs_f64();
        let mut times = self.lock();
        let e = times.entry(kernel).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += dt;
        out
    }

    /// Per kernel, the most time first; `None` when never started.
    pub fn report(&self) -> Option<Vec<KernelTime>> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        let mut out: Vec<KernelTime> = self
            .lock()
            .iter()
            .map(|(k, &(launches, seconds))| KernelTime {
                kernel: k.to_string(),
                launches,
                seconds,
            })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Some(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, (u64, f64)>> {
        // A panic elsewhere leaves valid sums.
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_only_once_started_and_sums_per_kernel() {
        let clock = KernelClock::default();
        assert_eq!(clock.time("a", || 1), 1);
        assert_eq!(clock.report(), None);
        clock.start();
        for _ in 0..3 {
            clock.time("a", || {
                std::thread::sleep(std::time::Duration::from_millis(2))
            });
        }
        clock.time("b", || ());
        let r = clock.report().unwrap();
        assert_eq!(r[0].kernel, "a");
        assert_eq!((r[0].launches, r[1].launches), (3, 1));
        assert!(
            r[0].seconds >= 0.006 && r[1].seconds < r[0].seconds,
            "{r:?}"
        );
    }
}
