//! What one load run served: throughput, correct predictions within the SLA per second, tail
//! latency and violations — one JSON line per (policy, load).

use super::load::Load;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// One query of a run, as the dispatcher saw it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// When it arrived (its scheduled time: lateness of the dispatcher counts as latency).
    pub arrival: Instant,
    /// Its test samples.
    pub samples: Arc<Vec<u32>>,
    /// The path it went to; `None`: shed.
    pub path: Option<usize>,
    /// Its profiled service seconds there (uncorrected).
    pub profiled_s: f64,
    /// Its observed service seconds (taken by the path to answered), once answered.
    pub service_s: Option<f64>,
    /// Seconds from arrival to its predictions; `None`: shed, or not answered in time.
    pub latency_s: Option<f64>,
    /// Samples predicted right (probability ≥ 0.5 exactly when the label is 1).
    pub correct: usize,
}

/// One (policy, load): `{policy, qps, throughput, correct_per_sec, p50_ms, p95_ms, p99_ms,
/// sla_violations}` and details.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// `scheduler`, or the static path's name (`table@cpu` …).
    pub policy: String,
    /// The offered load, queries per second, as configured.
    pub qps: f64,
    /// Queries answered per second of the load.
    pub throughput: f64,
    /// Samples answered per second of the load.
    pub samples_per_sec: f64,
    /// Samples predicted right, among queries answered within the SLA, per second.
    pub correct_per_sec: f64,
    /// Latency percentiles over every query offered, in ms; `null` when that percentile falls
    /// on a shed or unanswered query.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Queries not answered within the SLA (late, shed or unanswered).
    pub sla_violations: u64,
    /// Queries offered.
    pub queries: u64,
    /// Queries shed: no path was predicted to answer them within `SHED_FACTOR` SLAs.
    pub shed: u64,
    /// Queries sent to a path and not answered by the end of the run.
    pub unanswered: u64,
    /// The SLA, ms.
    pub sla_ms: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// Queries each path took.
    pub paths: BTreeMap<String, u64>,
    /// Per path that served queries: its observed service time over its profiled one, all
    /// queries together (above 1: the path ran slower than when it was profiled alone).
    pub service_ratio: BTreeMap<String, f64>,
}

impl LoadReport {
    /// Sums up `outcomes` of a run of `load` under `policy` (path names in `names`).
    pub fn new(
        policy: String,
        load: &Load,
        sla_ms: f64,
        outcomes: &[Outcome],
        names: &[String],
    ) -> Self {
        let sla_s = sla_ms / 1e3;
        let secs = load.duration_s;
        let answered: Vec<&Outcome> = outcomes.iter().filter(|o| o.latency_s.is_some()).collect();
        let within: Vec<&Outcome> = answered
            .iter()
            .copied()
            .filter(|o| o.latency_s.is_some_and(|l| l <= sla_s))
            .collect();
        let correct: usize = within.iter().map(|o| o.correct).sum();
        let samples: usize = answered.iter().map(|o| o.samples.len()).sum();
        let mut latencies: Vec<f64> = outcomes
            .iter()
            .map(|o| o.latency_s.unwrap_or(f64::INFINITY))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let mut paths: BTreeMap<String, u64> = names.iter().map(|n| (n.clone(), 0)).collect();
        for o in outcomes {
            if let Some(p) = o.path {
                *paths.entry(names[p].clone()).or_default() += 1;
            }
        }
        let shed = outcomes.iter().filter(|o| o.path.is_none()).count() as u64;
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for o in outcomes {
            if let (Some(p), Some(s)) = (o.path, o.service_s) {
                let e = sums.entry(names[p].clone()).or_default();
                (e.0, e.1) = (e.0 + s, e.1 + o.profiled_s);
            }
        }
        let service_ratio = sums.into_iter().map(|(n, (s, p))| (n, s / p)).collect();
        LoadReport {
            policy,
            qps: load.qps,
            throughput: answered.len() as f64 / secs,
            samples_per_sec: samples as f64 / secs,
            correct_per_sec: correct as f64 / secs,
            p50_ms: percentile_ms(&latencies, 0.50),
            p95_ms: percentile_ms(&latencies, 0.95),
            p99_ms: percentile_ms(&latencies, 0.99),
            sla_violations: (outcomes.len() - within.len()) as u64,
            queries: outcomes.len() as u64,
            shed,
            unanswered: outcomes.len() as u64 - answered.len() as u64 - shed,
            sla_ms,
            duration_s: secs,
            paths,
            service_ratio,
        }
    }

    /// Whether the run's p99 is within its SLA.
    pub fn meets_sla(&self) -> bool {
        self.p99_ms.is_some_and(|p| p <= self.sla_ms)
    }

    /// A warning when the load was more than the policy's paths could take, else `None`.
    pub fn overload_warning(&self) -> Option<String> {
        let lost = self.shed + self.unanswered;
        (lost * 100 > self.queries).then(|| {
            format!(
                "{} at {} qps: {lost} of {} queries shed or unanswered — the load exceeds what \
                 this policy's paths sustain within {} SLAs here (about {:.0} qps answered)",
                self.policy,
                self.qps,
                self.queries,
                super::SHED_FACTOR,
                self.throughput
            )
        })
    }
}

/// The nearest-rank percentile `q` of sorted `latencies` (seconds), in ms; `None` when it is
/// infinite (a shed or unanswered query) or there are none.
pub fn percentile_ms(latencies: &[f64], q: f64) -> Option<f64> {
    if latencies.is_empty() {
        return None;
    }
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
    let v = latencies[rank - 1];
    v.is_finite().then_some(v * 1e3)
}

/// The header of [`text_row`]'s table.
pub fn text_header() -> String {
    format!(
        "{:<16} {:>8} {:>10} {:>12} {:>12} {:>8} {:>8} {:>8} {:>10}",
        "policy",
        "qps",
        "queries/s",
        "samples/s",
        "correct/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "violations"
    )
}

/// One report as a row of an aligned table.
pub fn text_row(r: &LoadReport) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    format!(
        "{:<16} {:>8.1} {:>10.1} {:>12.0} {:>12.0} {:>8} {:>8} {:>8} {:>10}",
        r.policy,
        r.qps,
        r.throughput,
        r.samples_per_sec,
        r.correct_per_sec,
        ms(r.p50_ms),
        ms(r.p95_ms),
        ms(r.p99_ms),
        r.sla_violations
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_null_on_lost_queries() {
        let l: Vec<f64> = (1..=100).map(|i| i as f64 / 1e3).collect();
        assert_eq!(percentile_ms(&l, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&l, 0.99), Some(99.0));
        let mut lost = l.clone();
        lost[99] = f64::INFINITY;
        assert_eq!(percentile_ms(&lost, 0.99), Some(99.0));
        lost[98] = f64::INFINITY;
        assert_eq!(percentile_ms(&lost, 0.99), None);
        assert_eq!(percentile_ms(&[], 0.5), None);
    }
}
