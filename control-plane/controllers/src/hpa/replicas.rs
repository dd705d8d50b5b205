//! The HPA's replica calculator, as Kubernetes'
//! `pkg/controller/podautoscaler/replica_calculator.go`: from the pods of the scale target and
//! their metric samples, how many replicas would bring the metric to its target. Pure logic: the
//! caller lists the pods and fetches the samples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The usage-ratio tolerance when the HPA sets none (kube's `--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// What the calculator needs to know of one pod of the scale target (kube reads the `v1.Pod`).
#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub name: String,
    /// `status.phase`: "Pending", "Running", "Succeeded" or "Failed".
    pub phase: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The Ready condition's status is "True" ("Unknown" counts as not ready).
    pub ready: bool,
    /// The Ready condition's `lastTransitionTime`; `None` when the pod has no Ready condition.
    pub ready_transition: Option<DateTime<Utc>>,
    /// `status.startTime`.
    pub start_time: Option<DateTime<Utc>>,
    /// Sum of the containers' requests of the resource (milli-units), when every container sets one.
    pub request: Option<i64>,
}

/// One pod's metric sample (kube's `metrics.PodMetric`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Milli-units.
    pub value: i64,
    pub timestamp: DateTime<Utc>,
    /// The window the sample was averaged over.
    pub window: Duration,
}

/// A metric target (kube's `autoscaling/v2` `MetricTarget`), values in milli-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `averageUtilization`: percent of the pods' requests.
    Utilization(i32),
    /// `averageValue`: per pod.
    AverageValue(i64),
    /// `value`: in total.
    Value(i64),
}

/// A metric's replica proposal (what kube's `Get*Replicas` functions return).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    /// Current utilization percent, for `Target::Utilization` only; from the samples before any
    /// missing or unready pod was filled in.
    pub utilization: Option<i32>,
    /// Current average (or, for `Target::Value`, total) in milli-units, for the HPA status.
    pub raw_average: i64,
    /// The oldest sample that entered the calculation; `None` for object and external metrics.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why no replica count could be computed; `Display` gives kube's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalcError {
    NoPods,
    /// No sample is left to compute from; holds kube's explanation.
    NoMetrics(String),
    /// A pod whose usage enters the calculation has no request; holds the pod's name.
    MissingRequest(String),
    /// The target type does not apply to this metric source (API validation rejects it).
    UnsupportedTarget(&'static str),
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPods => {
                f.write_str("no pods returned by selector while calculating replica count")
            }
            Self::NoMetrics(why) => f.write_str(why),
            Self::MissingRequest(pod) => write!(f, "missing request for the resource in Pod {pod}"),
            Self::UnsupportedTarget(what) => write!(f, "unsupported target type: {what}"),
        }
    }
}

impl std::error::Error for CalcError {}

/// Scale-up and scale-down usage-ratio tolerances (kube's `Tolerances`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub up: f64,
    pub down: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self { up: DEFAULT_TOLERANCE, down: DEFAULT_TOLERANCE }
    }
}

/// The clock and the controller settings the calculation depends on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub now: DateTime<Utc>,
    /// kube's `--horizontal-pod-autoscaler-cpu-initialization-period` (5m).
    pub cpu_initialization_period: Duration,
    /// kube's `--horizontal-pod-autoscaler-initial-readiness-delay` (30s).
    pub initial_readiness_delay: Duration,
    pub tolerance: Tolerances,
}

impl Timing {
    /// kube-controller-manager's defaults at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            tolerance: Tolerances::default(),
        }
    }
}

/// Whether a usage ratio is close enough to 1 to leave the scale alone (kube's `Tolerances.isWithin`).
pub fn within_tolerance(ratio: f64, t: &Tolerances) -> bool {
    (1.0 - t.down) <= ratio && ratio <= (1.0 + t.up)
}

/// Running pods whose Ready condition is true (kube's `getReadyPodsCount`).
pub fn ready_pod_count(pods: &[PodInfo]) -> i32 {
    let n = pods.iter().filter(|p| p.phase == "Running" && p.ready).count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Replicas for a Resource (or ContainerResource) metric: kube's `GetResourceReplicas` for
/// `Target::Utilization` and `GetRawResourceReplicas` for `Target::AverageValue`. `cpu` turns on
/// the CPU-only readiness rules, since a starting pod's CPU burst says nothing about steady load.
pub fn resource_replicas(
    current: i32,
    target: Target,
    metrics: &HashMap<String, Sample>,
    pods: &[PodInfo],
    cpu: bool,
    t: &Timing,
) -> Result<Recommendation, CalcError> {
    let usage = match target {
        Target::Utilization(target) => {
            Usage::Utilization { target, pods: pods.iter().map(|p| (p.name.as_str(), p)).collect() }
        }
        Target::AverageValue(target) => Usage::Average { target },
        Target::Value(_) => {
            return Err(CalcError::UnsupportedTarget("Value for a resource metric"));
        }
    };
    calculate(current, metrics, pods, cpu, &usage, t)
}

/// Replicas for a Pods metric, a per-pod average against `target_average_milli` (kube's
/// `GetMetricReplicas`/`calcPlainMetricReplicas`); `raw_average` is the current average.
pub fn plain_replicas(
    current: i32,
    target_average_milli: i64,
    metrics: &HashMap<String, Sample>,
    pods: &[PodInfo],
    t: &Timing,
) -> Result<Recommendation, CalcError> {
    calculate(current, metrics, pods, false, &Usage::Average { target: target_average_milli }, t)
}

/// Replicas for an Object or External metric whose (summed) value is `value_milli`: kube's
/// `GetObjectMetricReplicas`/`GetExternalMetricReplicas` for `Target::Value`, and
/// `GetObjectPerPodMetricReplicas`/`GetExternalPerPodMetricReplicas` for `Target::AverageValue`.
/// `Target::Utilization` does not apply (validation rejects it) and keeps `current`.
pub fn object_replicas(
    current: i32,
    target: Target,
    value_milli: i64,
    ready_pods: i32,
    t: &Timing,
) -> Recommendation {
    let (replicas, raw_average) = match target {
        Target::Value(target) => {
            let ratio = value_milli as f64 / target as f64;
            // From zero replicas no pod is ready to scale by; kube lets the ratio alone decide.
            let replicas = if current == 0 {
                ceil_i32(ratio)
            } else if within_tolerance(ratio, &t.tolerance) {
                current
            } else {
                ceil_i32(ratio * f64::from(ready_pods))
            };
            (replicas, value_milli)
        }
        Target::AverageValue(per_pod) => {
            let ratio = value_milli as f64 / (per_pod as f64 * f64::from(current));
            let replicas = if within_tolerance(ratio, &t.tolerance) {
                current
            } else {
                ceil_i32(value_milli as f64 / per_pod as f64)
            };
            let average = if current > 0 {
                (value_milli as f64 / f64::from(current)).ceil() as i64
            } else {
                value_milli
            };
            (replicas, average)
        }
        Target::Utilization(_) => (current, value_milli),
    };
    Recommendation { replicas, utilization: None, raw_average, timestamp: None }
}

/// How a set of per-pod values compares to the target.
enum Usage<'a> {
    Utilization { target: i32, pods: HashMap<&'a str, &'a PodInfo> },
    Average { target: i64 },
}

impl Usage<'_> {
    /// The usage ratio, the utilization percent and the raw average (kube's
    /// `GetResourceUtilizationRatio` / `GetMetricUsageRatio`).
    fn ratio(&self, values: &BTreeMap<&str, i64>) -> Result<(f64, Option<i32>, i64), CalcError> {
        match self {
            Self::Utilization { target, pods } => {
                let (mut used, mut requested, mut entries) = (0i128, 0i128, 0i128);
                for (name, value) in values {
                    // Samples of pods outside the selector have no request to compare with.
                    let Some(pod) = pods.get(name) else { continue };
                    let request =
                        pod.request.ok_or_else(|| CalcError::MissingRequest(pod.name.clone()))?;
                    used += i128::from(*value);
                    requested += i128::from(request);
                    entries += 1;
                }
                if requested == 0 {
                    return Err(CalcError::NoMetrics(
                        "no metrics returned matched known pods".into(),
                    ));
                }
                // kube truncates to a whole percent before taking the ratio; the tolerance
                // checks depend on it.
                let utilization = saturate_i32(used * 100 / requested);
                let average = i64::try_from(used / entries).unwrap_or(i64::MAX);
                Ok((f64::from(utilization) / f64::from(*target), Some(utilization), average))
            }
            Self::Average { target } => {
                let total: i128 = values.values().map(|v| i128::from(*v)).sum();
                let count = i128::try_from(values.len()).unwrap_or(i128::MAX).max(1);
                let average = i64::try_from(total / count).unwrap_or(i64::MAX);
                Ok((average as f64 / *target as f64, None, average))
            }
        }
    }

    /// What a pod without a sample is assumed to use on a scale-down: as much as the target asks
    /// (at least its whole request), so that missing samples never speed a scale-down up.
    fn scale_down_fill(&self, pod: &str) -> Result<i64, CalcError> {
        match self {
            Self::Utilization { target, pods } => {
                let request = pods
                    .get(pod)
                    .and_then(|p| p.request)
                    .ok_or_else(|| CalcError::MissingRequest(pod.to_string()))?;
                Ok(request.saturating_mul(i64::from((*target).max(100))) / 100)
            }
            Self::Average { target } => Ok(*target),
        }
    }
}

/// The pods sorted the way kube's `groupPods` does.
#[derive(Default)]
struct Groups<'a> {
    ready: usize,
    unready: BTreeSet<&'a str>,
    missing: BTreeSet<&'a str>,
    ignored: BTreeSet<&'a str>,
}

fn group<'a>(
    pods: &'a [PodInfo],
    metrics: &HashMap<String, Sample>,
    cpu: bool,
    t: &Timing,
) -> Groups<'a> {
    let mut g = Groups::default();
    for pod in pods {
        let name = pod.name.as_str();
        if pod.deleting || pod.phase == "Failed" {
            g.ignored.insert(name);
        } else if pod.phase == "Pending" {
            g.unready.insert(name);
        } else if let Some(sample) = metrics.get(name) {
            if cpu && cpu_unready(pod, sample, t) {
                g.unready.insert(name);
            } else {
                g.ready += 1;
            }
        } else {
            g.missing.insert(name);
        }
    }
    g
}

/// Whether a pod's CPU sample must not be trusted yet: during the initialization period, unless
/// the pod is ready and a whole sample window has passed since it became so; afterwards, only if
/// it has never been ready.
fn cpu_unready(pod: &PodInfo, sample: &Sample, t: &Timing) -> bool {
    let (Some(start), Some(transition)) = (pod.start_time, pod.ready_transition) else {
        return true;
    };
    if plus(start, t.cpu_initialization_period) > t.now {
        !pod.ready || sample.timestamp < plus(transition, sample.window)
    } else {
        !pod.ready && plus(start, t.initial_readiness_delay) > transition
    }
}

/// The part of `GetResourceReplicas` and `calcPlainMetricReplicas` they share.
fn calculate(
    current: i32,
    metrics: &HashMap<String, Sample>,
    pods: &[PodInfo],
    cpu: bool,
    usage: &Usage<'_>,
    t: &Timing,
) -> Result<Recommendation, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group(pods, metrics, cpu, t);
    let used = |name: &str| !g.ignored.contains(name) && !g.unready.contains(name);
    let mut values: BTreeMap<&str, i64> =
        metrics.iter().filter(|(n, _)| used(n)).map(|(n, s)| (n.as_str(), s.value)).collect();
    if values.is_empty() {
        return Err(CalcError::NoMetrics(
            "did not receive metrics for targeted pods (pods might be unready)".into(),
        ));
    }
    let timestamp = metrics.iter().filter(|(n, _)| used(n)).map(|(_, s)| s.timestamp).min();

    let (ratio, utilization, raw_average) = usage.ratio(&values)?;
    let answer = |replicas| Recommendation { replicas, utilization, raw_average, timestamp };
    let tol = &t.tolerance;

    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if within_tolerance(ratio, tol) {
            return Ok(answer(current));
        }
        return Ok(answer(ceil_i32(ratio * g.ready as f64)));
    }

    // Assume the worst for the direction we are heading in, so that pods we know nothing about
    // can only dampen the change.
    if ratio < 1.0 {
        for pod in &g.missing {
            values.insert(pod, usage.scale_down_fill(pod)?);
        }
    } else if ratio > 1.0 {
        for pod in &g.missing {
            values.insert(pod, 0);
        }
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            values.insert(pod, 0);
        }
    }

    let (new_ratio, _, _) = usage.ratio(&values)?;
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within_tolerance(new_ratio, tol) || flipped {
        return Ok(answer(current));
    }
    let replicas = ceil_i32(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(answer(current));
    }
    Ok(answer(replicas))
}

/// `f64 as i32` saturates (and maps NaN to 0), matching kube's clamp to `MaxInt32`.
fn ceil_i32(x: f64) -> i32 {
    x.ceil() as i32
}

fn saturate_i32(x: i128) -> i32 {
    i32::try_from(x).unwrap_or(if x < 0 { i32::MIN } else { i32::MAX })
}

fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + secs, 0).expect("valid timestamp")
    }

    const NOW: i64 = 3600;

    /// `n` pods p0, p1, ... running and ready for long, each requesting `request` milli-units.
    fn pods(n: usize, request: i64) -> Vec<PodInfo> {
        let pod = |i| PodInfo {
            name: format!("p{i}"),
            phase: "Running".into(),
            deleting: false,
            ready: true,
            ready_transition: Some(at(60)),
            start_time: Some(at(0)),
            request: Some(request),
        };
        (0..n).map(pod).collect()
    }

    /// Samples of p0, p1, ... in that order, taken 30 s ago over a minute.
    fn samples(values: &[i64]) -> HashMap<String, Sample> {
        let s = |v| Sample { value: v, timestamp: at(NOW - 30), window: Duration::from_secs(60) };
        values.iter().enumerate().map(|(i, v)| (format!("p{i}"), s(*v))).collect()
    }

    /// Replicas and utilization of a resource metric.
    fn calc(
        current: i32,
        target: Target,
        cpu: bool,
        pods: &[PodInfo],
        values: &[i64],
    ) -> (i32, Option<i32>) {
        let got =
            resource_replicas(current, target, &samples(values), pods, cpu, &Timing::new(at(NOW)));
        let got = got.expect("a recommendation");
        (got.replicas, got.utilization)
    }

    use Target::Utilization as U;

    #[test]
    fn resource_replicas_should_scale_on_utilization_and_respect_tolerance() {
        assert_eq!(calc(3, U(30), true, &pods(3, 1000), &[300, 500, 700]), (5, Some(50)));
        assert_eq!(calc(5, U(50), true, &pods(5, 1000), &[100, 300, 500, 250, 250]), (3, Some(28)));
        let mut uneven = pods(3, 1000);
        uneven[0].request = Some(900);
        uneven[2].request = Some(1100);
        assert_eq!(calc(3, U(100), true, &uneven, &[1010, 1030, 1020]), (3, Some(102)));
        // Utilization is truncated to a whole percent, as kube does.
        assert_eq!(calc(3, U(100), true, &pods(3, 1000), &[999, 999, 999]), (3, Some(99)));
    }

    #[test]
    fn resource_replicas_should_use_the_configured_tolerances() {
        let mut t = Timing::new(at(NOW));
        // Utilization 50% of 40%: a ratio of 1.25.
        let calc = |t: &Timing| {
            resource_replicas(3, U(40), &samples(&[300, 500, 700]), &pods(3, 1000), true, t)
        };
        assert_eq!(calc(&t).map(|r| r.replicas), Ok(4));
        t.tolerance.up = 0.3;
        assert_eq!(calc(&t).map(|r| r.replicas), Ok(3));
    }

    #[test]
    fn resource_replicas_should_fill_missing_pods_against_the_direction_of_scaling() {
        let four = pods(4, 1000);
        // Scale-up: 100% -> 75% once p3 counts as idle.
        assert_eq!(calc(4, U(50), false, &four, &[1000, 1000, 1000]), (6, Some(100)));
        // Scale-down: 10% -> 32% once p3 counts as using its whole request.
        assert_eq!(calc(4, U(50), false, &four, &[100, 100, 100]), (3, Some(10)));
        // Above 100%, p3 counts as on target (45%), not at its request (32%).
        assert_eq!(calc(4, U(150), false, &four, &[100, 100, 100]), (2, Some(10)));
        // 45% -> 58%: the fill flips the direction, so nothing happens.
        assert_eq!(calc(4, U(50), false, &four, &[450, 450, 450]), (4, Some(45)));
        // More pods than replicas: a scale-down must not come out above the current count.
        assert_eq!(calc(2, U(50), false, &four, &[100, 100, 100]), (2, Some(10)));
    }

    #[test]
    fn resource_replicas_should_count_unready_cpu_pods_as_idle_on_scale_up() {
        let (mut never_ready, mut pending, mut was_ready) =
            (pods(3, 1000), pods(3, 1000), pods(3, 1000));
        never_ready[0].ready = false;
        never_ready[0].ready_transition = Some(at(5));
        pending[0].phase = "Pending".into();
        was_ready[0].ready = false;
        was_ready[0].ready_transition = Some(at(1000));
        let values = [300, 500, 700];
        // p0 dropped (60%, a ratio of 2), then counted as idle: 40% of 3 pods.
        assert_eq!(calc(3, U(30), true, &never_ready, &values), (4, Some(60)));
        assert_eq!(calc(3, U(30), true, &pending, &values), (4, Some(60)));
        // Counting p0 as idle (100% -> 66%) can also bring the ratio within tolerance.
        assert_eq!(calc(3, U(62), true, &never_ready, &[1000, 1000, 1000]), (3, Some(100)));
        // Readiness only matters for CPU.
        assert_eq!(calc(3, U(30), false, &never_ready, &values), (5, Some(50)));
        // Ready once, after the initial delay: its sample is trusted.
        assert_eq!(calc(3, U(30), true, &was_ready, &values), (5, Some(50)));
    }

    #[test]
    fn resource_replicas_should_distrust_cpu_samples_from_before_a_window_of_readiness() {
        let mut starting = pods(3, 1000);
        starting[0].start_time = Some(at(NOW - 100));
        starting[0].ready_transition = Some(at(NOW - 50));
        // The sample (taken 30 s ago over 60 s) began before p0 was ready.
        assert_eq!(calc(3, U(30), true, &starting, &[3000, 500, 700]), (4, Some(60)));
    }

    #[test]
    fn resource_replicas_should_ignore_deleted_failed_and_unknown_pods() {
        let mut all = pods(4, 1000);
        all[2].phase = "Failed".into();
        all[3].deleting = true;
        assert_eq!(calc(3, U(30), true, &all, &[500, 700, 4000, 7000]), (4, Some(60)));
        // p2 is not among the pods: its sample has no request to compare with.
        assert_eq!(calc(2, U(25), true, &pods(2, 1000), &[500, 500, 500]), (4, Some(50)));
    }

    #[test]
    fn resource_replicas_should_fail_without_pods_metrics_or_requests() {
        let t = Timing::new(at(NOW));
        let calc = |values: &[i64], pods: &[PodInfo], target| {
            resource_replicas(2, target, &samples(values), pods, true, &t)
        };
        assert_eq!(calc(&[500, 500], &[], U(50)), Err(CalcError::NoPods));
        assert!(matches!(calc(&[], &pods(2, 1000), U(50)), Err(CalcError::NoMetrics(_))));
        let mut pending = pods(2, 1000);
        pending.iter_mut().for_each(|p| p.phase = "Pending".into());
        assert!(matches!(calc(&[500, 500], &pending, U(50)), Err(CalcError::NoMetrics(_))));
        let mut no_request = pods(2, 1000);
        no_request[1].request = None;
        let got = calc(&[500, 500], &no_request, U(50));
        assert_eq!(got, Err(CalcError::MissingRequest("p1".into())));
        let message = got.map_err(|e| e.to_string()).err();
        assert_eq!(message.as_deref(), Some("missing request for the resource in Pod p1"));
        let got = calc(&[500, 500], &pods(2, 1000), Target::Value(1));
        assert!(matches!(got, Err(CalcError::UnsupportedTarget(_))));
    }

    #[test]
    fn resource_replicas_should_scale_on_average_value_and_report_the_oldest_sample() {
        let mut values = samples(&[300, 500, 700, 9000]);
        for (pod, secs_ago) in [("p1", 45), ("p3", 90)] {
            values.entry(pod.into()).and_modify(|s| s.timestamp = at(NOW - secs_ago));
        }
        let mut all = pods(4, 1000);
        all[3].phase = "Failed".into();
        let got = resource_replicas(
            3,
            Target::AverageValue(300),
            &values,
            &all,
            true,
            &Timing::new(at(NOW)),
        );
        let timestamp = Some(at(NOW - 45));
        assert_eq!(
            got,
            Ok(Recommendation { replicas: 5, utilization: None, raw_average: 500, timestamp })
        );
    }

    #[test]
    fn plain_replicas_should_average_and_fill_like_kube() {
        let t = Timing::new(at(NOW));
        let calc = |pods: &[PodInfo], values: &[i64]| {
            plain_replicas(3, 15000, &samples(values), pods, &t)
                .map(|r| (r.replicas, r.raw_average))
        };
        assert_eq!(calc(&pods(3, 0), &[20000, 10000, 30000]), Ok((4, 20000)));
        // Missing p2 counts as on target on a scale-down: 8333 of 15000 over 3 pods.
        assert_eq!(calc(&pods(3, 0), &[5000, 5000]), Ok((2, 5000)));
        // Pending p0 counts as idle on a scale-up: 20000 of 15000 over 3 pods.
        let mut pending = pods(3, 0);
        pending[0].phase = "Pending".into();
        assert_eq!(calc(&pending, &[0, 30000, 30000]), Ok((4, 30000)));
    }

    #[test]
    fn object_replicas_should_scale_on_value_and_average_value() {
        let t = Timing::new(at(NOW));
        let (v, avg) = (Target::Value, Target::AverageValue);
        let cases = [
            ("value", 3, v(15000), 20000, 3, 4, 20000),
            ("value within tolerance", 3, v(15000), 15500, 3, 3, 15500),
            ("value from zero ignores ready pods", 0, v(15000), 20000, 3, 2, 20000),
            ("value scales with ready pods only", 4, v(10000), 20000, 2, 4, 20000),
            ("average value", 3, avg(5000), 30000, 3, 6, 10000),
            ("average value within tolerance", 3, avg(5000), 15500, 3, 3, 5167),
        ];
        for (name, current, target, value, ready, replicas, raw) in cases {
            let got = object_replicas(current, target, value, ready, &t);
            assert_eq!((got.replicas, got.raw_average), (replicas, raw), "{name}");
        }
    }

    #[test]
    fn within_tolerance_should_include_its_bounds() {
        let t = Tolerances::default();
        assert!([0.9, 1.0, 1.1].iter().all(|r| within_tolerance(*r, &t)));
        assert!(!within_tolerance(0.89, &t) && !within_tolerance(1.11, &t));
        let lopsided = Tolerances { up: 0.5, down: 0.0 };
        assert!(within_tolerance(1.4, &lopsided) && !within_tolerance(0.99, &lopsided));
    }

    #[test]
    fn ready_pod_count_should_count_running_ready_pods() {
        let mut all = pods(4, 1000);
        all[1].ready = false;
        all[2].phase = "Succeeded".into();
        assert_eq!(ready_pod_count(&all), 2);
    }
}
