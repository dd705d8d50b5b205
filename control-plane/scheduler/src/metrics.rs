//! The scheduler's Prometheus metrics, named and labelled as kube-scheduler's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::queue::PendingCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: String,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `active`, `backoff`, `unschedulable` or `gated`.
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub name: String,
}

#[derive(Clone)]
pub struct Metrics {
    /// 1 while this instance holds the scheduler Lease (client-go's leader-election gauge).
    pub leader: Family<LeaseLabels, Gauge>,
    pub schedule_attempts: Family<ResultLabels, Counter>,
    pub attempt_duration: Family<ResultLabels, Histogram>,
    pub pending_pods: Family<QueueLabels, Gauge>,
    pub preemption_attempts: Counter,
    pub preemption_victims: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            leader: Family::default(),
            schedule_attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(|| {
                // kube-scheduler's buckets: 1 ms doubling, 15 of them.
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            pending_pods: Family::default(),
            preemption_attempts: Counter::default(),
            preemption_victims: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
        }
    }

    /// Register under kube-scheduler's names (`scheduler_…`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            self.leader.clone(),
        );
        let sub = registry.sub_registry_with_prefix("scheduler");
        sub.register(
            "schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            self.schedule_attempts.clone(),
        );
        sub.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            self.attempt_duration.clone(),
        );
        sub.register(
            "pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods; 'gated' is the number of unschedulable pods that the scheduler attempted to schedule and failed.",
            self.pending_pods.clone(),
        );
        sub.register(
            "preemption_attempts",
            "Total preemption attempts in the cluster till now",
            self.preemption_attempts.clone(),
        );
        sub.register(
            "preemption_victims",
            "Number of selected preemption victims",
            self.preemption_victims.clone(),
        );
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabels { name: crate::LEASE_NAME.into() })
            .set(i64::from(leading));
    }

    pub fn attempt(&self, result: &str, profile: &str, seconds: f64) {
        let labels = ResultLabels { result: result.into(), profile: profile.into() };
        self.schedule_attempts.get_or_create(&labels).inc();
        self.attempt_duration.get_or_create(&labels).observe(seconds);
    }

    pub fn set_pending(&self, c: PendingCounts) {
        for (queue, n) in [
            ("active", c.active),
            ("backoff", c.backoff),
            ("unschedulable", c.unschedulable),
            ("gated", c.gated),
        ] {
            self.pending_pods
                .get_or_create(&QueueLabels { queue: queue.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_should_encode_under_kube_scheduler_names() {
        let m = Metrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.attempt("scheduled", "default-scheduler", 0.002);
        m.set_pending(PendingCounts { active: 1, backoff: 2, unschedulable: 3, gated: 0 });
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"
        ), "{out}");
        assert!(out.contains("scheduler_scheduling_attempt_duration_seconds_bucket"));
        assert!(out.contains("scheduler_pending_pods{queue=\"unschedulable\"} 3"), "{out}");
    }
}
