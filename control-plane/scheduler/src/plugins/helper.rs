//! Small pieces several plugins share, as in Kubernetes' `plugins/helper`: score
//! normalization and the status a plugin returns when its cycle state is missing.

use crate::framework::{NodeScore, Status};

/// Kubernetes' `DefaultNormalizeScore`: scale scores so the highest becomes `max`. With
/// `reverse`, a high raw score is bad (TaintToleration counts untolerated taints), so the
/// scaled score is subtracted from `max`. When every raw score is 0, reversed scores all
/// become `max` and plain ones stay 0.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [NodeScore]) {
    let highest = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| s.score = max);
        }
        return;
    }
    for s in scores {
        let scaled = max * s.score / highest;
        s.score = if reverse { max - scaled } else { scaled };
    }
}

/// The error Kubernetes returns when a filter or score runs without the state its
/// pre-filter or pre-score should have written (the extension point was disabled).
pub fn missing_state(key: &str) -> Status {
    Status::error(format!("reading {key:?} from cycleState: not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(raw: &[i64]) -> Vec<NodeScore> {
        raw.iter()
            .enumerate()
            .map(|(i, s)| NodeScore { name: format!("n{i}"), score: *s })
            .collect()
    }

    #[test]
    fn default_normalize_score_should_scale_to_the_highest_score() {
        let cases: &[(&str, bool, &[i64], &[i64])] = &[
            ("plain", false, &[1, 2, 3, 4, 5], &[20, 40, 60, 80, 100]),
            ("reverse", true, &[1, 2, 3, 4, 5], &[80, 60, 40, 20, 0]),
            ("plain, all zero", false, &[0, 0, 0], &[0, 0, 0]),
            ("reverse, all zero", true, &[0, 0, 0], &[100, 100, 100]),
            ("truncates", false, &[2, 4, 11], &[18, 36, 100]),
            ("empty", true, &[], &[]),
        ];
        for (name, reverse, raw, want) in cases {
            let mut s = scores(raw);
            default_normalize_score(100, *reverse, &mut s);
            let got: Vec<i64> = s.iter().map(|s| s.score).collect();
            assert_eq!(&got, want, "{name}");
        }
    }
}
