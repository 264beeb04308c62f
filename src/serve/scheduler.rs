//! Which path serves a query: MP-Rec's rule, or one path always (the static policies).

use super::profile::LatencyProfile;

/// How a server assigns queries to its paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Per query, the most accurate path predicted to finish it within the SLA; if none, the
    /// one predicted to finish first.
    Scheduler,
    /// Every query to path `i`.
    Static(usize),
}

/// What the scheduler knows of one path when a query arrives.
#[derive(Clone, Copy, Debug)]
pub struct PathView<'a> {
    /// Fraction of held-out samples the path predicts right at threshold 0.5.
    pub accuracy: f64,
    /// Its profiled service time against query size.
    pub latency: &'a LatencyProfile,
    /// Observed over profiled service time so far ([`super::profile::Correction`]).
    pub correction: f64,
    /// Predicted seconds until the work already queued on it is done.
    pub backlog_s: f64,
}

impl PathView<'_> {
    /// Predicted service seconds of a query of `size` samples.
    pub fn service_s(&self, size: usize) -> f64 {
        self.latency.seconds(size) * self.correction
    }
}

/// The decision for one query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// The path that serves it.
    pub path: usize,
    /// Its predicted service seconds there.
    pub service_s: f64,
    /// Predicted seconds from now until it completes there (backlog + service).
    pub completion_s: f64,
    /// Whether that completion is within the budget.
    pub fits: bool,
}

/// MP-Rec's rule: among the paths whose predicted completion (backlog + corrected service
/// time) is within `budget_s`, the most accurate (ties: the one finishing first); if none
/// fits, the one finishing first. `paths` must not be empty.
pub fn choose(paths: &[PathView<'_>], size: usize, budget_s: f64) -> Choice {
    let options: Vec<Choice> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let service_s = p.service_s(size);
            let completion_s = p.backlog_s + service_s;
            Choice {
                path: i,
                service_s,
                completion_s,
                fits: completion_s <= budget_s,
            }
        })
        .collect();
    let earliest = |a: &&Choice, b: &&Choice| a.completion_s.total_cmp(&b.completion_s);
    let best = options
        .iter()
        .filter(|c| c.fits)
        .max_by(|a, b| {
            let acc = paths[a.path].accuracy.total_cmp(&paths[b.path].accuracy);
            acc.then_with(|| earliest(b, a))
        })
        .or_else(|| options.iter().min_by(earliest));
    *best.expect("a server has at least one path")
}

/// The path `policy` gives a query of `size` samples.
pub fn assign(policy: Policy, paths: &[PathView<'_>], size: usize, budget_s: f64) -> Choice {
    match policy {
        Policy::Scheduler => choose(paths, size, budget_s),
        Policy::Static(i) => {
            let service_s = paths[i].service_s(size);
            let completion_s = paths[i].backlog_s + service_s;
            Choice {
                path: i,
                service_s,
                completion_s,
                fits: completion_s <= budget_s,
            }
        }
    }
}
