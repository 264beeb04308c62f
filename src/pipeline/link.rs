//! A modelled host↔device link, for machines that have none (CPU backend, lavapipe): there host
//! and device share memory and there is no PCIe to hide, so `--link-gbps X` charges each step's
//! host↔device bytes at X GB/s to the stage that moves them — the same rule for every policy:
//! on demand the device stage pays for its synchronous transfers; with lookahead the stager
//! pays for uploads and the write-back stage for downloads, off the device's path.

use std::time::Duration;

/// A modelled host↔device link (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    gbps: Option<f64>,
}

impl Link {
    /// A link of `gbps` GB/s, or none (transfers cost nothing extra).
    pub fn new(gbps: Option<f64>) -> Self {
        Link { gbps }
    }

    /// The link's speed, GB/s (`None`: no modelled link).
    pub fn gbps(&self) -> Option<f64> {
        self.gbps
    }

    /// Charges one step's `bytes` to the calling stage: sleeps `bytes / (gbps · 10⁹)` seconds.
    pub fn charge(&self, bytes: u64) {
        if let Some(g) = self.gbps
            && bytes > 0
        {
            std::thread::sleep(Duration::from_secs_f64(bytes as f64 / (g * 1e9)));
        }
    }
}
