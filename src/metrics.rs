//! Evaluation metrics: exact AUC and log loss.

/// Exact ROC AUC by sorting (the Mann–Whitney U statistic): the probability that a random
/// positive scores above a random negative, ties counting one half. Labels are positive when
/// `> 0.5`. Returns NaN when either class is absent (AUC is undefined). Scores must not be NaN
/// (NaN scores sort last and count as the lowest).
pub fn auc<S: Copy + Into<f64>>(scores: &[S], labels: &[f32]) -> f64 {
    let n = scores.len().min(labels.len());
    let mut order: Vec<(f64, bool)> = (0..n)
        .map(|i| (scores[i].into(), labels[i] > 0.5))
        .collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let positives = order.iter().filter(|x| x.1).count() as f64;
    let negatives = n as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && order[j + 1].0 == order[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_tie = order[i..=j].iter().filter(|x| x.1).count() as f64;
        rank_sum += avg_rank * pos_in_tie;
        i = j + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Mean binary cross-entropy of probabilities `p` against labels, with `p` clamped to
/// `[1e-7, 1 - 1e-7]` so a confident mistake costs a large but finite loss.
pub fn log_loss<S: Copy + Into<f64>>(probs: &[S], labels: &[f32]) -> f64 {
    let n = probs.len().min(labels.len());
    if n == 0 {
        return f64::NAN;
    }
    let eps = 1e-7;
    let total: f64 = (0..n)
        .map(|i| {
            let p = probs[i].into().clamp(eps, 1.0 - eps);
            if labels[i] > 0.5 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    total / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_perfect_and_an_inverted_ranking() {
        assert_eq!(auc(&[0.1f32, 0.2, 0.8, 0.9], &[0., 0., 1., 1.]), 1.0);
        assert_eq!(auc(&[0.9f32, 0.8, 0.2, 0.1], &[0., 0., 1., 1.]), 0.0);
    }

    #[test]
    fn auc_hand_computed_with_ties() {
        // Positives score 0.5, 0.7; negatives 0.5, 0.2, 0.9. Pairs (pos, neg):
        // (0.5,0.5)=½ (0.5,0.2)=1 (0.5,0.9)=0 (0.7,0.5)=1 (0.7,0.2)=1 (0.7,0.9)=0 → 3.5/6.
        let s = [0.5f32, 0.7, 0.5, 0.2, 0.9];
        let y = [1., 1., 0., 0., 0.];
        assert!((auc(&s, &y) - 3.5 / 6.0).abs() < 1e-12);
        // All scores equal: every pair is a tie.
        assert_eq!(auc(&[0.3f32; 4], &[1., 0., 1., 0.]), 0.5);
    }

    #[test]
    fn auc_matches_pair_counting_on_random_data() {
        let mut x = 12345u64;
        let mut next = || {
            x = crate::rng::splitmix64(x);
            x
        };
        let n = 300;
        let s: Vec<f32> = (0..n).map(|_| (next() % 20) as f32 / 20.0).collect();
        let y: Vec<f32> = (0..n).map(|_| (next() % 3 == 0) as u8 as f32).collect();
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..n {
            for j in 0..n {
                if y[i] == 1.0 && y[j] == 0.0 {
                    pairs += 1.0;
                    wins += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((auc(&s, &y) - wins / pairs).abs() < 1e-12);
    }

    #[test]
    fn auc_is_undefined_with_one_class() {
        assert!(auc(&[0.1f32, 0.2], &[1., 1.]).is_nan());
        assert!(auc::<f32>(&[], &[]).is_nan());
    }

    #[test]
    fn log_loss_hand_computed() {
        let l = log_loss(&[0.5f32, 0.9], &[1., 0.]);
        let want = (-(0.5f64).ln() - (0.1f64).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
        assert!(log_loss(&[0.0f32], &[1.]).is_finite());
    }
}
