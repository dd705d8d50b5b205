//! The HPA's `spec.behavior`, as Kubernetes applies it in
//! `pkg/controller/podautoscaler/horizontal.go` (`normalizeDesiredReplicasWithBehaviors`): the
//! defaults of `pkg/apis/autoscaling/v2/defaults.go`, the stabilization window, the scaling
//! policies' rate limits, the min/max clamp, and the AbleToScale/ScalingLimited conditions they
//! produce. Pure logic over the per-HPA history the controller keeps in memory.

use std::cmp::Ordering;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

use super::replicas::{DEFAULT_TOLERANCE, Tolerances};

/// Reason of the ScalingActive=False condition when the target is scaled to zero by hand.
pub const SCALING_DISABLED_REASON: &str = "ScalingDisabled";
/// Message that goes with [`SCALING_DISABLED_REASON`].
pub const SCALING_DISABLED_MESSAGE: &str =
    "scaling is disabled since the replica count of the target is zero";

/// A policy's unit (`HPAScalingPolicy.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

/// One `HPAScalingPolicy`: at most `value` pods or percent per `period_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period_seconds: i32,
}

/// `HPAScalingRules.selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// `HPAScalingRules` with kube's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub policies: Vec<Policy>,
    pub select: Select,
    /// The usage-ratio tolerance in this direction, when the HPA sets one.
    pub tolerance: Option<f64>,
}

/// Kube's `scaleUp` and `scaleDown` rules (`SetDefaults_HorizontalPodAutoscalerBehavior` and the
/// controller's default 300 s downscale window), each missing field of the user's rules defaulted
/// on its own. Unknown policy types are dropped and unknown select policies read as `Max`, since
/// API validation rejects both.
pub fn default_behavior(spec: Option<&HorizontalPodAutoscalerBehavior>) -> (Rules, Rules) {
    let pods = |value, period_seconds| Policy { kind: PolicyKind::Pods, value, period_seconds };
    let percent =
        |value, period_seconds| Policy { kind: PolicyKind::Percent, value, period_seconds };
    let up = Rules {
        stabilization_window_seconds: 0,
        policies: vec![pods(4, 15), percent(100, 15)],
        select: Select::Max,
        tolerance: None,
    };
    let down = Rules {
        stabilization_window_seconds: 300,
        policies: vec![percent(100, 15)],
        select: Select::Max,
        tolerance: None,
    };
    let spec = spec.cloned().unwrap_or_default();
    (merge(spec.scale_up.as_ref(), up), merge(spec.scale_down.as_ref(), down))
}

fn merge(user: Option<&HPAScalingRules>, mut rules: Rules) -> Rules {
    let Some(user) = user else { return rules };
    if let Some(window) = user.stabilization_window_seconds {
        rules.stabilization_window_seconds = window;
    }
    if let Some(select) = &user.select_policy {
        rules.select = match select.as_str() {
            "Min" => Select::Min,
            "Disabled" => Select::Disabled,
            _ => Select::Max,
        };
    }
    if let Some(policies) = &user.policies {
        rules.policies = policies
            .iter()
            .filter_map(|p| {
                let kind = match p.type_.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    _ => return None,
                };
                Some(Policy { kind, value: p.value, period_seconds: p.period_seconds })
            })
            .collect();
    }
    if let Some(q) = &user.tolerance {
        rules.tolerance = quantity_f64(&q.0);
    }
    rules
}

/// The tolerances for the replica calculator: the rules' own, else [`DEFAULT_TOLERANCE`] (kube's
/// `getTolerances`).
pub fn tolerances(up: &Rules, down: &Rules) -> Tolerances {
    Tolerances {
        up: up.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        down: down.tolerance.unwrap_or(DEFAULT_TOLERANCE),
    }
}

/// A resource.Quantity as a float (kube's `AsApproximateFloat64`); `None` if it does not parse.
fn quantity_f64(text: &str) -> Option<f64> {
    let q = skiff_helpers::quantity::Quantity::parse(text)?;
    Some(q.nano_value() as f64 / 1e9)
}

/// A rescale the controller made (kube's `timestampedScaleEvent`); `replica_change` is positive
/// in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    pub replica_change: i32,
    pub timestamp: DateTime<Utc>,
    /// Older than every policy period of its direction: the next event of that direction may
    /// take its place.
    pub outdated: bool,
}

/// An unstabilized recommendation (kube's `timestampedRecommendation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommended {
    pub replicas: i32,
    pub timestamp: DateTime<Utc>,
}

/// State the controller keeps per HPA between syncs (in memory, like kube).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub recommendations: Vec<Recommended>,
    pub scale_up_events: Vec<ScaleEvent>,
    pub scale_down_events: Vec<ScaleEvent>,
}

/// `spec.minReplicas` (defaulted to 1) and `spec.maxReplicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub min: i32,
    pub max: i32,
}

/// An HPA status condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of [`normalize`]: the replica count to scale to and the conditions to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub replicas: i32,
    pub able_to_scale: Condition,
    pub scaling_limited: Condition,
}

/// Kube leaves a target scaled to zero alone unless `minReplicas` is zero too; report
/// [`SCALING_DISABLED_REASON`] on ScalingActive then.
pub fn scaling_disabled(current: i32, min: i32) -> bool {
    current == 0 && min != 0
}

/// Records `current` as the first recommendation of a fresh history, so that a controller
/// restart does not scale down before a whole window has passed (kube's
/// `recordInitialRecommendation`); [`normalize`] calls it too.
pub fn record_initial_recommendation(history: &mut History, now: DateTime<Utc>, current: i32) {
    if history.recommendations.is_empty() {
        history.recommendations.push(Recommended { replicas: current, timestamp: now });
    }
}

/// A condition's reason and message, as kube words them.
type Reason = (&'static str, &'static str);

const READY: Reason = ("ReadyForNewScale", "recommended size matches current size");
const UP_STABILIZED: Reason = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DOWN_STABILIZED: Reason = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_LIMIT: Reason =
    ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate");
const DOWN_LIMIT: Reason = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const TOO_MANY: Reason =
    ("TooManyReplicas", "the desired replica count is more than the maximum replica count");
const TOO_FEW: Reason =
    ("TooFewReplicas", "the desired replica count is less than the minimum replica count");
const WITHIN_RANGE: Reason =
    ("DesiredWithinRange", "the desired count is within the acceptable range");

fn condition(status: bool, (reason, message): Reason) -> Condition {
    Condition { status, reason, message: message.to_string() }
}

/// Turns the metrics' recommendation into the replica count to scale to, as kube's
/// `normalizeDesiredReplicasWithBehaviors`: stabilize it, limit it to the policies' rates given
/// the recent scale events, then keep it within `limits`.
pub fn normalize(
    history: &mut History,
    now: DateTime<Utc>,
    current: i32,
    recommended: i32,
    limits: Limits,
    up: &Rules,
    down: &Rules,
) -> Decision {
    record_initial_recommendation(history, now, current);
    let stabilized = stabilize(history, now, current, recommended, up, down);
    let able_to_scale = condition(
        true,
        match stabilized == recommended {
            true => READY,
            false if recommended >= current => UP_STABILIZED,
            false => DOWN_STABILIZED,
        },
    );

    let (mut replicas, why) = rate_limit(history, now, current, stabilized, limits, up, down);
    let mut scaling_limited = condition(replicas != stabilized, why);
    // Kube never normalizes a current count outside [min, max] (it scales straight to the bound),
    // but a caller that does must not get an out-of-range answer.
    if replicas > limits.max {
        (replicas, scaling_limited) = (limits.max, condition(true, TOO_MANY));
    } else if replicas < limits.min {
        (replicas, scaling_limited) = (limits.min, condition(true, TOO_FEW));
    }
    Decision { replicas, able_to_scale, scaling_limited }
}

fn seconds_before(now: DateTime<Utc>, seconds: i32) -> DateTime<Utc> {
    now - TimeDelta::seconds(i64::from(seconds))
}

/// Kube's `stabilizeRecommendationWithBehaviors`: a scale-up goes no higher than the lowest
/// recommendation within the up window, a scale-down no lower than the highest within the down
/// window. Records `recommended` and forgets what both windows have left behind.
fn stabilize(
    history: &mut History,
    now: DateTime<Utc>,
    current: i32,
    recommended: i32,
    up: &Rules,
    down: &Rules,
) -> i32 {
    let up_cutoff = seconds_before(now, up.stabilization_window_seconds);
    let down_cutoff = seconds_before(now, down.stabilization_window_seconds);
    let (mut lowest, mut highest) = (recommended, recommended);
    for rec in &history.recommendations {
        if rec.timestamp > up_cutoff {
            lowest = lowest.min(rec.replicas);
        }
        if rec.timestamp > down_cutoff {
            highest = highest.max(rec.replicas);
        }
    }
    history.recommendations.retain(|r| !(r.timestamp < up_cutoff && r.timestamp < down_cutoff));
    history.recommendations.push(Recommended { replicas: recommended, timestamp: now });
    current.max(lowest).min(highest)
}

/// Kube's `convertDesiredReplicasWithBehaviorRate`: the policies' rate limits and the min/max
/// bounds, with the ScalingLimited reason.
fn rate_limit(
    history: &History,
    now: DateTime<Utc>,
    current: i32,
    desired: i32,
    limits: Limits,
    up: &Rules,
    down: &Rules,
) -> (i32, Reason) {
    if desired > current {
        // A limit below the current count (events still in their period) must not scale down.
        let rate = policy_limit(history, now, current, up, true).max(current);
        let (allowed, why) =
            if limits.max > rate { (rate, UP_LIMIT) } else { (limits.max, TOO_MANY) };
        if desired > allowed {
            return (allowed, why);
        }
    } else if desired < current {
        let rate = policy_limit(history, now, current, down, false).min(current);
        let (allowed, why) =
            if limits.min < rate { (rate, DOWN_LIMIT) } else { (limits.min, TOO_FEW) };
        if desired < allowed {
            return (allowed, why);
        }
    }
    (desired, WITHIN_RANGE)
}

/// Replicas added (or removed) by the events strictly within the last `period_seconds`.
fn change_in_period(events: &[ScaleEvent], now: DateTime<Utc>, period_seconds: i32) -> i32 {
    let cutoff = seconds_before(now, period_seconds);
    let recent = events.iter().filter(|e| e.timestamp > cutoff);
    recent.fold(0, |sum, e| sum.saturating_add(e.replica_change))
}

/// The furthest the rules let the count go from `current` (kube's
/// `calculateScaleUpLimitWithScalingRules` and `calculateScaleDownLimitWithBehaviors`). Each
/// policy's allowance is relative to the count at the start of its period.
fn policy_limit(
    history: &History,
    now: DateTime<Utc>,
    current: i32,
    rules: &Rules,
    scale_up: bool,
) -> i32 {
    if rules.select == Select::Disabled {
        return current;
    }
    // The largest change up is the highest count, the largest change down the lowest.
    let highest = (rules.select == Select::Max) == scale_up;
    let mut result = if highest { i32::MIN } else { i32::MAX };
    for policy in &rules.policies {
        let added = change_in_period(&history.scale_up_events, now, policy.period_seconds);
        let removed = change_in_period(&history.scale_down_events, now, policy.period_seconds);
        let start = current.saturating_sub(added).saturating_add(removed);
        let fraction = f64::from(policy.value) / 100.0;
        let proposed = match (policy.kind, scale_up) {
            (PolicyKind::Pods, true) => start.saturating_add(policy.value),
            (PolicyKind::Pods, false) => start.saturating_sub(policy.value),
            // Rounded up so that a small percentage of few pods still adds one.
            (PolicyKind::Percent, true) => (f64::from(start) * (1.0 + fraction)).ceil() as i32,
            (PolicyKind::Percent, false) => (f64::from(start) * (1.0 - fraction)) as i32,
        };
        result = if highest { result.max(proposed) } else { result.min(proposed) };
    }
    result
}

/// Stores a rescale from `old` to `new` replicas in the list of its direction, over an outdated
/// event if [`prune`] marked one (kube's `storeScaleEvent`).
pub fn record_scale(history: &mut History, now: DateTime<Utc>, old: i32, new: i32) {
    let (events, change) = match new.cmp(&old) {
        Ordering::Greater => (&mut history.scale_up_events, new.saturating_sub(old)),
        Ordering::Less => (&mut history.scale_down_events, old.saturating_sub(new)),
        Ordering::Equal => return,
    };
    let event = ScaleEvent { replica_change: change, timestamp: now, outdated: false };
    match events.iter().rposition(|e| e.outdated) {
        Some(i) => events[i] = event,
        None => events.push(event),
    }
}

/// Marks the scale events older than the longest policy period of their direction as outdated
/// (kube's `markScaleEventsOutdated`), and drops those older than every policy period of both
/// directions, which no rate limit counts any more.
pub fn prune(history: &mut History, now: DateTime<Utc>, up: &Rules, down: &Rules) {
    let longest = |r: &Rules| r.policies.iter().map(|p| p.period_seconds).max().unwrap_or(0);
    // Scale-down limits count scale-up events too (and the other way round), so an event
    // outdated for its own direction may still matter to the other one.
    let forget = seconds_before(now, longest(up).max(longest(down)));
    for (events, rules) in
        [(&mut history.scale_up_events, up), (&mut history.scale_down_events, down)]
    {
        let cutoff = seconds_before(now, longest(rules));
        for event in events.iter_mut() {
            event.outdated |= event.timestamp < cutoff;
        }
        events.retain(|e| e.timestamp >= forget);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::PolicyKind::{Percent, Pods};
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + secs, 0).expect("valid timestamp")
    }

    const NOW: i64 = 3600;
    const WIDE: Limits = Limits { min: 1, max: 100 };

    fn rules(window: i32, select: Select, policies: &[(PolicyKind, i32, i32)]) -> Rules {
        let policy = |&(kind, value, period_seconds)| Policy { kind, value, period_seconds };
        let policies = policies.iter().map(policy).collect();
        Rules { stabilization_window_seconds: window, policies, select, tolerance: None }
    }

    fn event(change: i32, secs_ago: i64) -> ScaleEvent {
        ScaleEvent { replica_change: change, timestamp: at(NOW - secs_ago), outdated: false }
    }

    fn rec(replicas: i32, secs_ago: i64) -> Recommended {
        Recommended { replicas, timestamp: at(NOW - secs_ago) }
    }

    /// A history with `recent` recommendations after one too old to matter.
    fn settled(recent: &[Recommended]) -> History {
        let recommendations = [&[rec(1, 10_000)], recent].concat();
        History { recommendations, ..History::default() }
    }

    /// Replicas, AbleToScale reason, ScalingLimited status and reason.
    fn run(h: &mut History, current: i32, recommended: i32, up: &Rules, down: &Rules) -> Outcome {
        let d = normalize(h, at(NOW), current, recommended, WIDE, up, down);
        (d.replicas, d.able_to_scale.reason, d.scaling_limited.status, d.scaling_limited.reason)
    }
    type Outcome = (i32, &'static str, bool, &'static str);

    #[test]
    fn default_behavior_should_fill_kube_defaults_field_by_field() {
        let (up, down) = default_behavior(None);
        assert_eq!(up, rules(0, Select::Max, &[(Pods, 4, 15), (Percent, 100, 15)]));
        assert_eq!(down, rules(300, Select::Max, &[(Percent, 100, 15)]));
        assert_eq!(tolerances(&up, &down), Tolerances::default());

        let two_pods = HPAScalingPolicy { type_: "Pods".into(), value: 2, period_seconds: 60 };
        let spec = HorizontalPodAutoscalerBehavior {
            scale_up: Some(HPAScalingRules {
                select_policy: Some("Min".into()),
                tolerance: Some(Quantity("50m".into())),
                ..HPAScalingRules::default()
            }),
            scale_down: Some(HPAScalingRules {
                policies: Some(vec![two_pods]),
                stabilization_window_seconds: Some(30),
                select_policy: Some("Disabled".into()),
                tolerance: Some(Quantity("0.2".into())),
            }),
        };
        let (up, down) = default_behavior(Some(&spec));
        let want_up = rules(0, Select::Min, &[(Pods, 4, 15), (Percent, 100, 15)]);
        assert_eq!(up, Rules { tolerance: Some(0.05), ..want_up });
        let want_down = rules(30, Select::Disabled, &[(Pods, 2, 60)]);
        assert_eq!(down, Rules { tolerance: Some(0.2), ..want_down });
        assert_eq!(quantity_f64("1Ki"), Some(1024.0));
        assert_eq!(quantity_f64("15e-2"), Some(0.15));
        assert_eq!(quantity_f64("x"), None);
    }

    #[test]
    fn normalize_should_stabilize_scale_down_on_the_highest_recent_recommendation() {
        let (up, down) = default_behavior(None);
        let mut h = settled(&[rec(8, 100)]);
        assert_eq!(
            run(&mut h, 5, 3, &up, &down),
            (5, "ScaleDownStabilized", false, "DesiredWithinRange")
        );
        // The stale recommendation is gone, the new one recorded.
        assert_eq!(h.recommendations, vec![rec(8, 100), rec(3, 0)]);
        // Outside the window the older recommendation no longer holds the scale-down back.
        for old in [rec(8, 400), rec(8, 300)] {
            let got = run(&mut settled(&[old]), 5, 3, &up, &down);
            assert_eq!(got, (3, "ReadyForNewScale", false, "DesiredWithinRange"));
        }
    }

    #[test]
    fn normalize_should_stabilize_scale_up_on_the_lowest_recent_recommendation() {
        let (_, down) = default_behavior(None);
        let up = rules(60, Select::Max, &[(Pods, 4, 15), (Percent, 100, 15)]);
        let mut h = settled(&[rec(4, 30)]);
        assert_eq!(
            run(&mut h, 3, 8, &up, &down),
            (4, "ScaleUpStabilized", false, "DesiredWithinRange")
        );
        // The window excludes its far end, as kube's time.After does.
        for old in [rec(4, 90), rec(4, 60)] {
            let got = run(&mut settled(&[old]), 3, 8, &up, &down);
            assert_eq!(got, (7, "ReadyForNewScale", true, "ScaleUpLimit"));
        }
    }

    #[test]
    fn normalize_should_not_scale_down_on_the_first_sync() {
        let (up, down) = default_behavior(None);
        let mut h = History::default();
        assert_eq!(
            run(&mut h, 5, 2, &up, &down),
            (5, "ScaleDownStabilized", false, "DesiredWithinRange")
        );
        assert_eq!(h.recommendations, vec![rec(5, 0), rec(2, 0)]);
    }

    #[test]
    fn normalize_should_limit_scale_up_by_the_selected_policy() {
        let policies = [(Pods, 4, 60), (Percent, 100, 60)];
        let (_, down) = default_behavior(None);
        // From 3: Pods allows 7, Percent allows 6.
        let cases = [
            (Select::Max, vec![], 7),
            (Select::Min, vec![], 6),
            (Select::Disabled, vec![], 3),
            // 2 of the 5 were added 10 s ago: the period started at 3, Pods allows 7.
            (Select::Max, vec![event(2, 10)], 7),
            // ... but not if that was before the period: Percent allows 10.
            (Select::Max, vec![event(2, 90)], 10),
            (Select::Max, vec![event(2, 60)], 10),
            // All 5 added within the period: Pods allows 4, yet the count never goes down.
            (Select::Max, vec![event(5, 10)], 5),
        ];
        for (select, events, want) in cases {
            let current = if events.is_empty() { 3 } else { 5 };
            let name = format!("{select:?} {events:?}");
            let mut h = History { scale_up_events: events, ..settled(&[]) };
            let got = run(&mut h, current, 20, &rules(0, select, &policies), &down);
            assert_eq!(got, (want, "ReadyForNewScale", true, "ScaleUpLimit"), "{name}");
        }
        // Percent rounds up: 150% of 3 is 4.5, so 5.
        let got =
            run(&mut settled(&[]), 3, 20, &rules(0, Select::Max, &[(Percent, 50, 60)]), &down);
        assert_eq!(got.0, 5);
    }

    #[test]
    fn normalize_should_limit_scale_down_by_the_selected_policy() {
        let policies = [(Pods, 3, 60), (Percent, 50, 60)];
        let (up, _) = default_behavior(None);
        // From 10: Pods allows 7, Percent allows 5.
        let cases = [
            (Select::Max, vec![], vec![], 10, 5),
            (Select::Min, vec![], vec![], 10, 7),
            (Select::Disabled, vec![], vec![], 10, 10),
            // 4 were removed 30 s ago: the period started at 10, Percent allows 5.
            (Select::Max, vec![], vec![event(4, 30)], 6, 5),
            // Scale-ups within the period count too: it started at 8, Percent allows 4.
            (Select::Max, vec![event(2, 30)], vec![event(4, 20)], 6, 4),
            // Pods would allow 7 from the period's 10, but a scale-down never goes up.
            (Select::Min, vec![], vec![event(4, 30)], 6, 6),
        ];
        for (select, ups, downs, current, want) in cases {
            let events = format!("{select:?} {ups:?} {downs:?}");
            let mut h = History { scale_up_events: ups, scale_down_events: downs, ..settled(&[]) };
            let got = run(&mut h, current, 1, &up, &rules(0, select, &policies));
            assert_eq!(got, (want, "ReadyForNewScale", true, "ScaleDownLimit"), "{events}");
        }
        // Percent rounds down: 50% of 5 is 2.5, so 2.
        let got = run(&mut settled(&[]), 5, 1, &up, &rules(0, Select::Max, &[(Percent, 50, 60)]));
        assert_eq!(got.0, 2);
    }

    #[test]
    fn normalize_should_clamp_to_min_and_max_with_their_conditions() {
        let generous = rules(0, Select::Max, &[(Percent, 1000, 15)]);
        let limits = Limits { min: 2, max: 8 };
        // (current, recommended) -> replicas, ScalingLimited status and reason
        let cases = [
            ((4, 20), (8, true, "TooManyReplicas")),
            ((4, 0), (2, true, "TooFewReplicas")),
            ((4, 6), (6, false, "DesiredWithinRange")),
            // A current count already out of range is brought back within it.
            ((10, 10), (8, true, "TooManyReplicas")),
        ];
        for ((current, recommended), want) in cases {
            let d = normalize(
                &mut settled(&[]),
                at(NOW),
                current,
                recommended,
                limits,
                &generous,
                &generous,
            );
            let got = (d.replicas, d.scaling_limited.status, d.scaling_limited.reason);
            assert_eq!(got, want, "{current} -> {recommended}");
        }
        // Where the rate and the maximum agree, the maximum is what limits.
        let four_pods = rules(0, Select::Max, &[(Pods, 4, 60)]);
        let d = normalize(&mut settled(&[]), at(NOW), 4, 20, limits, &four_pods, &generous);
        assert_eq!((d.replicas, d.scaling_limited.reason), (8, "TooManyReplicas"));
        let eight_pods = rules(0, Select::Max, &[(Pods, 8, 60)]);
        let d = normalize(&mut settled(&[]), at(NOW), 10, 0, limits, &generous, &eight_pods);
        assert_eq!((d.replicas, d.scaling_limited.reason), (2, "TooFewReplicas"));
    }

    #[test]
    fn conditions_should_carry_kube_messages() {
        // One pod a minute, whichever way, and a window of five minutes.
        let slow = rules(300, Select::Max, &[(Pods, 1, 60)]);
        let messages = |h: &mut History, current, recommended, limits| {
            let d = normalize(h, at(NOW), current, recommended, limits, &slow, &slow);
            (d.able_to_scale.message, d.scaling_limited.message)
        };
        assert_eq!(
            messages(&mut settled(&[rec(6, 30)]), 3, 8, WIDE),
            (
                "recent recommendations were lower than current one, applying the lowest recent recommendation".into(),
                "the desired replica count is increasing faster than the maximum scale rate".into()
            )
        );
        assert_eq!(
            messages(&mut settled(&[rec(8, 30)]), 10, 3, WIDE),
            (
                "recent recommendations were higher than current one, applying the highest recent recommendation".into(),
                "the desired replica count is decreasing faster than the maximum scale rate".into()
            )
        );
        assert_eq!(
            messages(&mut settled(&[]), 5, 5, Limits { min: 1, max: 4 }).1,
            "the desired replica count is more than the maximum replica count"
        );
        assert_eq!(
            messages(&mut settled(&[]), 5, 5, Limits { min: 6, max: 9 }).1,
            "the desired replica count is less than the minimum replica count"
        );
        assert_eq!(
            messages(&mut settled(&[]), 5, 5, WIDE),
            (
                "recommended size matches current size".into(),
                "the desired count is within the acceptable range".into()
            )
        );
    }

    #[test]
    fn record_scale_and_prune_should_keep_recent_events_and_reuse_outdated_ones() {
        let up = rules(0, Select::Max, &[(Pods, 4, 15)]);
        let down = rules(300, Select::Max, &[(Percent, 100, 60)]);
        let mut h = History::default();
        record_scale(&mut h, at(NOW - 100), 2, 5);
        record_scale(&mut h, at(NOW - 50), 5, 7);
        record_scale(&mut h, at(NOW - 10), 7, 4);
        record_scale(&mut h, at(NOW), 4, 4);
        assert_eq!(h.scale_up_events, vec![event(3, 100), event(2, 50)]);
        assert_eq!(h.scale_down_events, vec![event(3, 10)]);

        // The up event 50 s ago is past the up periods but within the down one: kept, outdated.
        prune(&mut h, at(NOW), &up, &down);
        assert_eq!(h.scale_up_events, vec![ScaleEvent { outdated: true, ..event(2, 50) }]);
        assert_eq!(h.scale_down_events, vec![event(3, 10)]);

        record_scale(&mut h, at(NOW), 4, 6);
        assert_eq!(h.scale_up_events, vec![event(2, 0)]);
    }

    #[test]
    fn scaling_disabled_should_hold_only_at_zero_replicas_with_a_nonzero_minimum() {
        assert!(scaling_disabled(0, 1));
        assert!(!scaling_disabled(0, 0) && !scaling_disabled(1, 1));
    }
}
