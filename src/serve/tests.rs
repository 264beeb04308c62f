//! The scheduler's choices on hand-built latency and accuracy tables, and the load generator's
//! rate and sizes against what was configured.

use super::load::{Load, SizeDist};
use super::profile::LatencyProfile;
use super::scheduler::{PathView, Policy, assign, choose};

/// A fast path (0.70 accurate, 1 ms at any size) and an accurate one (0.75, 1 ms per 10
/// samples, 0.1 ms at one): budget 20 ms.
fn tables() -> (LatencyProfile, LatencyProfile) {
    let fast = LatencyProfile::new(vec![(1, 1e-3), (1024, 1e-3)]).unwrap();
    let accurate = LatencyProfile::new(vec![(1, 1e-4), (10, 1e-3), (1000, 0.1)]).unwrap();
    (fast, accurate)
}

fn views<'a>(
    fast: &'a LatencyProfile,
    accurate: &'a LatencyProfile,
    backlog: [f64; 2],
    correction: [f64; 2],
) -> [PathView<'a>; 2] {
    [
        PathView {
            accuracy: 0.70,
            latency: fast,
            correction: correction[0],
            backlog_s: backlog[0],
        },
        PathView {
            accuracy: 0.75,
            latency: accurate,
            correction: correction[1],
            backlog_s: backlog[1],
        },
    ]
}

#[test]
fn a_query_that_fits_only_the_fast_path_goes_there() {
    let (f, a) = tables();
    // 500 samples: 50 ms on the accurate path, 1 ms on the fast one.
    let c = choose(&views(&f, &a, [0.0, 0.0], [1.0, 1.0]), 500, 0.020);
    assert_eq!((c.path, c.fits), (0, true));
    assert!((c.completion_s - 1e-3).abs() < 1e-12);
}

#[test]
fn a_query_that_fits_the_accurate_path_goes_there() {
    let (f, a) = tables();
    // 100 samples: 10 ms there, within 20 ms, and it is the more accurate.
    let c = choose(&views(&f, &a, [0.0, 0.0], [1.0, 1.0]), 100, 0.020);
    assert_eq!((c.path, c.fits), (1, true));
    assert!((c.service_s - 0.010).abs() < 1e-9);
}

#[test]
fn an_overloaded_queue_sends_the_query_to_the_other_path() {
    let (f, a) = tables();
    // 15 ms already queued on the accurate path: 15 + 10 > 20.
    let c = choose(&views(&f, &a, [0.0, 0.015], [1.0, 1.0]), 100, 0.020);
    assert_eq!((c.path, c.fits), (0, true));
    // Observed times three times the profile's do the same without a queue.
    let c = choose(&views(&f, &a, [0.0, 0.0], [1.0, 3.0]), 100, 0.020);
    assert_eq!(c.path, 0);
    // Both queues too long: the earliest completion, flagged as not fitting.
    let c = choose(&views(&f, &a, [0.050, 0.030], [1.0, 1.0]), 100, 0.020);
    assert_eq!((c.path, c.fits), (1, false));
    assert!((c.completion_s - 0.040).abs() < 1e-9);
}

#[test]
fn equal_accuracy_prefers_the_earlier_completion_and_static_policies_never_move() {
    let (f, a) = tables();
    let mut v = views(&f, &a, [0.0, 0.0], [1.0, 1.0]);
    v[1].accuracy = 0.70;
    assert_eq!(choose(&v, 100, 0.020).path, 0);
    let v = views(&f, &a, [0.0, 0.0], [1.0, 1.0]);
    let c = assign(Policy::Static(1), &v, 1000, 0.020);
    assert_eq!((c.path, c.fits), (1, false));
    assert_eq!(assign(Policy::Static(0), &v, 100, 0.020).path, 0);
}

#[test]
fn the_load_generator_keeps_its_rate_and_poisson_gaps() {
    let load = Load {
        qps: 2000.0,
        duration_s: 20.0,
        sizes: SizeDist::Fixed(3),
        seed: 11,
    };
    let a = load.arrivals(100..200).unwrap();
    let rate = a.len() as f64 / load.duration_s;
    assert!((rate / load.qps - 1.0).abs() < 0.02, "rate {rate}");
    let gaps: Vec<f64> = a.windows(2).map(|w| w[1].at_s - w[0].at_s).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    // Exponential gaps: the standard deviation equals the mean.
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.03,
        "cv {}",
        var.sqrt() / mean
    );
    assert!(a.windows(2).all(|w| w[0].at_s <= w[1].at_s));
    assert!(a.iter().all(|q| q.samples.len() == 3));
    assert!(
        a.iter()
            .flat_map(|q| &q.samples)
            .all(|&i| (100..200).contains(&i))
    );
    assert_eq!(
        a,
        load.arrivals(100..200).unwrap(),
        "the seed replays the load"
    );
}

#[test]
fn query_sizes_follow_the_configured_distribution() {
    let n = 40_000;
    let sizes = SizeDist::default().draw(n, 3);
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    let median = sorted[n / 2];
    assert!((15..=17).contains(&median), "median {median}");
    // P(size > 16·e^1.2) = P(Z > 1) ≈ 0.159 for log-normal(ln 16, 1.2).
    let tail = sizes
        .iter()
        .filter(|&&s| s as f64 > 16.0 * 1.2f64.exp())
        .count() as f64
        / n as f64;
    assert!((tail - 0.159).abs() < 0.01, "tail {tail}");
    assert!(sizes.iter().all(|&s| (1..=1024).contains(&s)));
    let wide: SizeDist = "lognormal:512:3".parse().unwrap();
    let clipped = wide.draw(n, 4).iter().filter(|&&s| s == 1024).count();
    assert!(
        clipped as f64 > 0.3 * n as f64,
        "sizes above 1024 are clipped to it"
    );
    let u: SizeDist = "uniform:4:8".parse().unwrap();
    let d = u.draw(n, 5);
    let mean = d.iter().sum::<usize>() as f64 / n as f64;
    assert!((mean - 6.0).abs() < 0.05 && d.iter().all(|s| (4..=8).contains(s)));
    assert_eq!("fixed:7".parse::<SizeDist>().unwrap().draw(3, 1), [7, 7, 7]);
    for bad in [
        "fixed:0",
        "fixed:2000",
        "uniform:9:3",
        "lognormal:0",
        "zipf:2",
        "fixed:x",
    ] {
        let e = bad.parse::<SizeDist>().unwrap_err().to_string();
        assert!(e.contains("--query-size-dist"), "{bad}: {e}");
    }
    assert_eq!(SizeDist::default().to_string(), "lognormal:16:1.2");
}

#[test]
fn a_bad_load_is_refused_by_name() {
    let load = |qps, duration_s| Load {
        qps,
        duration_s,
        sizes: SizeDist::Fixed(1),
        seed: 1,
    };
    assert!(
        load(0.0, 1.0)
            .arrivals(0..10)
            .unwrap_err()
            .to_string()
            .contains("--qps")
    );
    assert!(load(f64::NAN, 1.0).arrivals(0..10).is_err());
    assert!(
        load(10.0, 0.0)
            .arrivals(0..10)
            .unwrap_err()
            .to_string()
            .contains("--duration-s")
    );
    assert!(load(10.0, 1.0).arrivals(5..5).is_err());
}
