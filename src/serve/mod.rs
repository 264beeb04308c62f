//! Serving with a path scheduler (MP-Rec's second half): the most correct predictions within a
//! latency target.
//!
//! A *path* is a saved model (a representation: table, DHE, hybrid) on a backend; paths differ
//! in accuracy and in latency against query size. [`Server::start`] makes one path per (model,
//! backend), each on a worker thread of its own ([`path`]) that profiles its latency at sizes 1
//! to 1024 and its accuracy on the held-out half of the test split. [`Server::run`] offers a
//! [`Load`] ([`load`]: Poisson arrivals, heavy-tailed sizes, samples from the other half, so
//! every prediction has a label) under a [`Policy`] ([`scheduler`]): MP-Rec's rule — per query
//! the most accurate path predicted to finish within the SLA, else the fastest — or one path
//! always (the static policies), and reports throughput, correct predictions within the SLA per
//! second and tail latency ([`report`]). [`sweep`] runs every policy at several loads.
//!
//! Predicted completion = the path's queued work + the query's profiled service time, both
//! corrected online by the ratio of observed to profiled times ([`profile`]). The scheduler
//! plans within [`HEADROOM`] of the SLA, and a query that no path is predicted to finish within
//! [`SHED_FACTOR`] × the SLA is shed (counted as a violation) rather than queued without bound.

pub mod load;
pub mod path;
pub mod profile;
pub mod report;
pub mod scheduler;
mod server;
pub mod sweep;

pub use load::{Arrival, Load, MAX_QUERY, SizeDist};
pub use path::PathInfo;
pub use profile::{Correction, LatencyProfile};
pub use report::LoadReport;
pub use scheduler::{Choice, PathView, Policy, assign, choose};
pub use server::Server;
pub use sweep::{SweepOptions, default_loads, sweep, train_paths};

/// Fraction of the SLA the scheduler plans a query's completion within (the rest absorbs
/// latency the profile did not predict).
pub const HEADROOM: f64 = 0.8;

/// A query predicted to finish later than this many SLAs on every path it may take is shed.
pub const SHED_FACTOR: f64 = 10.0;

/// Why serving could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting or argument out of range.
    #[error("{0}")]
    Invalid(String),
    /// A checkpoint that cannot be read, or paths that cannot be served together.
    #[error("{model}: {message}")]
    Model {
        /// The checkpoint directory.
        model: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A path failed while profiling or serving.
    #[error("path {path} failed: {message}")]
    PathFailed {
        /// The path's name.
        path: String,
        /// The error.
        message: String,
    },
    /// A device could not be created.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    /// Training the paths of a sweep failed.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
}

#[cfg(test)]
mod tests;
