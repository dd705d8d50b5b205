//! Latency samples and the figures printed from them: nearest-rank percentiles, milliseconds,
//! and targets a figure is held to.

use std::time::Duration;

/// The `q` quantile (0..=1) of an ascending sample, by nearest rank: the smallest value with
/// at least `q` of the sample at or below it. Zero for an empty sample.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A latency sample, sorted once when it is built.
#[derive(Clone, Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut sample: Vec<Duration>) -> Latencies {
        sample.sort_unstable();
        Latencies(sample)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// See [`percentile`].
    pub fn percentile(&self, q: f64) -> Duration {
        percentile(&self.0, q)
    }

    pub fn p50(&self) -> Duration {
        self.percentile(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.percentile(0.99)
    }

    pub fn max(&self) -> Duration {
        self.percentile(1.0)
    }

    /// The sample, sorted.
    pub fn sorted(&self) -> &[Duration] {
        &self.0
    }
}

impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(iter: I) -> Latencies {
        Latencies::new(iter.into_iter().collect())
    }
}

/// A target a figure is held to: a floor (rates) or a ceiling (latencies, sizes).
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    pub target: f64,
    pub higher_is_better: bool,
}

impl Goal {
    pub fn at_least(target: f64) -> Goal {
        Goal { target, higher_is_better: true }
    }

    pub fn at_most(target: f64) -> Goal {
        Goal { target, higher_is_better: false }
    }

    pub fn new(target: f64, higher_is_better: bool) -> Goal {
        Goal { target, higher_is_better }
    }

    pub fn is_met(&self, measured: f64) -> bool {
        if self.higher_is_better { measured >= self.target } else { measured <= self.target }
    }

    /// `>=` or `<=`, for "target >= 3000".
    pub fn comparison(&self) -> &'static str {
        if self.higher_is_better { ">=" } else { "<=" }
    }

    /// `met` or `MISSED`.
    pub fn verdict(&self, measured: f64) -> &'static str {
        if self.is_met(measured) { "met" } else { "MISSED" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_sample(values: &[u64]) -> Latencies {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentile_should_take_the_nearest_rank() {
        let l = ms_sample(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(l.len(), 10);
        assert_eq!(l.p50(), Duration::from_millis(5));
        assert_eq!(l.percentile(0.51), Duration::from_millis(6));
        assert_eq!(l.p99(), Duration::from_millis(10));
        assert_eq!(l.max(), Duration::from_millis(10));
        assert_eq!(l.percentile(0.0), Duration::from_millis(1));
    }

    #[test]
    fn percentile_should_be_zero_for_an_empty_sample() {
        assert!(Latencies::default().is_empty());
        assert_eq!(Latencies::default().p99(), Duration::ZERO);
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn goal_should_compare_in_its_direction() {
        assert_eq!(Goal::at_least(100.0).verdict(100.0), "met");
        assert_eq!(Goal::at_least(100.0).verdict(99.0), "MISSED");
        assert_eq!(Goal::at_most(50.0).verdict(51.0), "MISSED");
        assert_eq!(Goal::at_most(50.0).comparison(), "<=");
        assert_eq!(Goal::new(1.0, true).comparison(), ">=");
    }
}
