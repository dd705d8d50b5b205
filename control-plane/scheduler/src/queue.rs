//! The scheduling queue (Kubernetes' PriorityQueue): pods waiting for a node, in three
//! places. *Active* pods are tried in queue-sort order; pods that just failed wait out a
//! back-off (1 s doubling to 10 s); pods no node could take wait as *unschedulable* until a
//! cluster event one of the plugins that rejected them cares about (a node added, a pod
//! deleted, …) moves them back, or five minutes pass. Gated pods (`schedulingGates`) wait
//! outside all three. Nominated pods (preemptors waiting for their victims to leave) are
//! tracked per node so other pods do not take the room made for them.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::framework::{ClusterEvent, Framework, QueueSortPlugin};
use crate::types::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Kubernetes' `podMaxInUnschedulablePodsDuration`.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// A pod popped for a scheduling cycle.
#[derive(Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Arrival order, for queue sort.
    pub seq: u64,
    /// When the pod was first tried (for the end-to-end scheduling latency).
    pub first_attempt: Option<Instant>,
    pub attempts: u32,
    /// Plugins that rejected it last time.
    pub unschedulable_plugins: HashSet<&'static str>,
    /// The scheduling cycle it was popped in.
    pub cycle: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    Gated,
    InFlight,
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Bumped on every move; heap entries with an older generation are stale.
    generation: u64,
    last_failure: Option<Instant>,
}

struct ActiveItem {
    sort: Arc<dyn QueueSortPlugin>,
    info: Arc<PodInfo>,
    seq: u64,
    uid: String,
    generation: u64,
}

impl PartialEq for ActiveItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ActiveItem {}
impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ActiveItem {
    // BinaryHeap pops the greatest: "less" in queue-sort terms (to run first) is greater.
    fn cmp(&self, other: &Self) -> Ordering {
        if self.sort.less(&self.info, self.seq, &other.info, other.seq) {
            Ordering::Greater
        } else if self.sort.less(&other.info, other.seq, &self.info, self.seq) {
            Ordering::Less
        } else {
            other.seq.cmp(&self.seq)
        }
    }
}

/// Pending pods by where they wait, for `scheduler_pending_pods`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PendingCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node: HashMap<String, String>,
    closed: bool,
}

pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    profiles: OnceLock<HashMap<String, Arc<Framework>>>,
}

static NO_PROFILES: std::sync::LazyLock<HashMap<String, Arc<Framework>>> =
    std::sync::LazyLock::new(HashMap::new);

fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    pub fn new(profiles: HashMap<String, Arc<Framework>>) -> Self {
        let q = Self::without_profiles();
        q.set_profiles(profiles);
        q
    }

    /// A queue whose profiles are set later (plugins such as preemption need the queue
    /// before the profiles exist).
    pub fn without_profiles() -> Self {
        SchedulingQueue {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            profiles: OnceLock::new(),
        }
    }

    /// Set the profiles once; later calls are ignored.
    pub fn set_profiles(&self, profiles: HashMap<String, Arc<Framework>>) {
        let _ = self.profiles.set(profiles);
    }

    fn profiles(&self) -> &HashMap<String, Arc<Framework>> {
        self.profiles.get().unwrap_or(&NO_PROFILES)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sort_for(&self, info: &PodInfo) -> Option<Arc<dyn QueueSortPlugin>> {
        self.profiles().get(&info.scheduler_name).map(|f| f.queue_sort.clone())
    }

    fn gated(&self, info: &PodInfo) -> bool {
        self.profiles()
            .get(&info.scheduler_name)
            .is_some_and(|f| f.pre_enqueue.iter().any(|p| !p.pre_enqueue(info).is_success()))
    }

    fn push_active(&self, inner: &mut Inner, uid: &str) {
        let Some(e) = inner.entries.get_mut(uid) else { return };
        let Some(sort) = self.sort_for(&e.pod.info) else { return };
        e.place = Place::Active;
        e.generation += 1;
        let item = ActiveItem {
            sort,
            info: e.pod.info.clone(),
            seq: e.pod.seq,
            uid: uid.to_string(),
            generation: e.generation,
        };
        inner.active.push(item);
        self.ready.notify_one();
    }

    fn push_backoff(inner: &mut Inner, uid: &str, until: Instant) {
        let Some(e) = inner.entries.get_mut(uid) else { return };
        e.place = Place::Backoff(until);
        e.generation += 1;
        let generation = e.generation;
        inner.backoff.push(Reverse((until, generation, uid.to_string())));
    }

    /// Active, or back-off if its back-off has not expired yet.
    fn requeue(&self, inner: &mut Inner, uid: &str, now: Instant) {
        let Some(e) = inner.entries.get(uid) else { return };
        let until = e.last_failure.map(|t| t + backoff_for(e.pod.attempts));
        match until {
            Some(until) if until > now => Self::push_backoff(inner, uid, until),
            _ => self.push_active(inner, uid),
        }
    }

    /// A new pending pod (or one seen again after a re-list).
    pub fn add(&self, info: Arc<PodInfo>) {
        let mut inner = self.lock();
        if inner.entries.contains_key(&info.uid) {
            drop(inner);
            return self.update(info);
        }
        inner.seq += 1;
        let seq = inner.seq;
        let uid = info.uid.clone();
        let gated = self.gated(&info);
        inner.entries.insert(
            uid.clone(),
            Entry {
                pod: QueuedPod {
                    info,
                    seq,
                    first_attempt: None,
                    attempts: 0,
                    unschedulable_plugins: HashSet::new(),
                    cycle: 0,
                },
                place: Place::Gated,
                generation: 0,
                last_failure: None,
            },
        );
        if !gated {
            self.push_active(&mut inner, &uid);
        }
    }

    /// A pending pod changed: keep the new version; a gated pod whose gates are gone and an
    /// unschedulable pod (the change may be what it needed) become active.
    pub fn update(&self, info: Arc<PodInfo>) {
        let mut inner = self.lock();
        let uid = info.uid.clone();
        let gated = self.gated(&info);
        let Some(e) = inner.entries.get_mut(&uid) else {
            drop(inner);
            return self.add(info);
        };
        // Like kube-scheduler's isPodUpdated: a change of status alone (our own
        // PodScheduled=False write, say) does not make a pod worth another try.
        let changed = e.pod.info.pod.spec != info.pod.spec
            || e.pod.info.pod.metadata.labels != info.pod.metadata.labels
            || e.pod.info.pod.metadata.annotations != info.pod.metadata.annotations;
        e.pod.info = info;
        let place = e.place;
        match place {
            Place::Gated if !gated => self.push_active(&mut inner, &uid),
            Place::Unschedulable(_) if !gated && changed => {
                let now = Instant::now();
                self.requeue(&mut inner, &uid, now);
            }
            Place::Active => self.push_active(&mut inner, &uid),
            _ => {}
        }
    }

    /// Is the pod waiting as unschedulable (tests)?
    pub fn is_unschedulable(&self, uid: &str) -> bool {
        self.lock().entries.get(uid).is_some_and(|e| matches!(e.place, Place::Unschedulable(_)))
    }

    /// The pod is gone or bound elsewhere.
    pub fn delete(&self, uid: &str) {
        let mut inner = self.lock();
        inner.entries.remove(uid);
        Self::remove_nominated_locked(&mut inner, uid);
    }

    /// Is this pod waiting (anywhere, including in flight)?
    pub fn contains(&self, uid: &str) -> bool {
        self.lock().entries.contains_key(uid)
    }

    /// Wait for the next pod to try. `None` once the queue is closed.
    pub fn pop(&self) -> Option<QueuedPod> {
        let mut inner = self.lock();
        loop {
            if inner.closed {
                return None;
            }
            self.flush_backoff_locked(&mut inner, Instant::now());
            while let Some(item) = inner.active.pop() {
                let fresh = inner
                    .entries
                    .get(&item.uid)
                    .is_some_and(|e| e.place == Place::Active && e.generation == item.generation);
                if !fresh {
                    continue;
                }
                inner.scheduling_cycle += 1;
                let cycle = inner.scheduling_cycle;
                let Some(e) = inner.entries.get_mut(&item.uid) else { continue };
                e.place = Place::InFlight;
                e.pod.attempts += 1;
                e.pod.cycle = cycle;
                e.pod.first_attempt.get_or_insert_with(Instant::now);
                return Some(e.pod.clone());
            }
            let wait = inner
                .backoff
                .peek()
                .map(|Reverse((t, _, _))| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(1));
            inner = match self.ready.wait_timeout(inner, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// The pod was scheduled (or will never be): forget it.
    pub fn done(&self, uid: &str) {
        let mut inner = self.lock();
        if inner.entries.get(uid).is_some_and(|e| e.place == Place::InFlight) {
            inner.entries.remove(uid);
        }
    }

    /// The pod did not fit (`plugins` rejected it) or failed with an error (`backoff`).
    /// If a cluster event arrived while it was being tried, it goes to back-off rather
    /// than waiting for another event.
    pub fn add_unschedulable(&self, pod: &QueuedPod, plugins: HashSet<&'static str>, error: bool) {
        let mut inner = self.lock();
        let now = Instant::now();
        let move_request_cycle = inner.move_request_cycle;
        let Some(e) = inner.entries.get_mut(&pod.info.uid) else { return };
        if e.place != Place::InFlight {
            return;
        }
        e.pod.unschedulable_plugins = plugins;
        e.last_failure = Some(now);
        let until = now + backoff_for(e.pod.attempts);
        if error || move_request_cycle >= pod.cycle {
            Self::push_backoff(&mut inner, &pod.info.uid, until);
        } else {
            e.place = Place::Unschedulable(now);
            e.generation += 1;
        }
    }

    /// A cluster event: move unschedulable pods that one of their rejecting plugins
    /// cares about to active (or back-off).
    pub fn move_for_event(&self, event: ClusterEvent) {
        let mut inner = self.lock();
        inner.move_request_cycle = inner.scheduling_cycle;
        let now = Instant::now();
        let movable: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Unschedulable(_)))
            .filter(|(_, e)| {
                self.profiles()
                    .get(&e.pod.info.scheduler_name)
                    .is_none_or(|f| f.event_interests(event, &e.pod.unschedulable_plugins))
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in movable {
            self.requeue(&mut inner, &uid, now);
        }
    }

    fn flush_backoff_locked(&self, inner: &mut Inner, now: Instant) {
        while let Some(Reverse((until, generation, _))) = inner.backoff.peek() {
            if *until > now {
                break;
            }
            let generation = *generation;
            let Some(Reverse((_, _, uid))) = inner.backoff.pop() else { break };
            if inner
                .entries
                .get(&uid)
                .is_some_and(|e| e.generation == generation && matches!(e.place, Place::Backoff(_)))
            {
                self.push_active(inner, &uid);
            }
        }
    }

    /// Periodic housekeeping: expired back-offs become active; pods unschedulable for
    /// five minutes are tried again.
    pub fn flush(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        self.flush_backoff_locked(&mut inner, now);
        let stale: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Unschedulable(t) if now.duration_since(t) >= MAX_UNSCHEDULABLE))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.requeue(&mut inner, &uid, now);
        }
    }

    pub fn counts(&self) -> PendingCounts {
        let inner = self.lock();
        let mut c = PendingCounts::default();
        for e in inner.entries.values() {
            match e.place {
                Place::Active | Place::InFlight => c.active += 1,
                Place::Backoff(_) => c.backoff += 1,
                Place::Unschedulable(_) => c.unschedulable += 1,
                Place::Gated => c.gated += 1,
            }
        }
        c
    }

    /// Stop: `pop` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn remove_nominated_locked(inner: &mut Inner, uid: &str) {
        if let Some(node) = inner.nominated_node.remove(uid)
            && let Some(list) = inner.nominated.get_mut(&node)
        {
            list.retain(|p| p.uid != uid);
            if list.is_empty() {
                inner.nominated.remove(&node);
            }
        }
    }

    /// Record that `pod` waits for room on `node` (preemption), replacing any earlier node.
    pub fn add_nominated(&self, pod: Arc<PodInfo>, node: &str) {
        let mut inner = self.lock();
        Self::remove_nominated_locked(&mut inner, &pod.uid);
        inner.nominated_node.insert(pod.uid.clone(), node.to_string());
        inner.nominated.entry(node.to_string()).or_default().push(pod);
    }

    pub fn remove_nominated(&self, uid: &str) {
        Self::remove_nominated_locked(&mut self.lock(), uid);
    }

    /// Pods nominated to `node`.
    pub fn nominated_for(&self, node: &str) -> Vec<Arc<PodInfo>> {
        self.lock().nominated.get(node).cloned().unwrap_or_default()
    }

    /// Is any pod nominated anywhere? (Lets the hot path skip a lookup per node.)
    pub fn has_nominated(&self) -> bool {
        !self.lock().nominated.is_empty()
    }

    /// Call `f` with every node that has nominated pods, and those pods, under the queue's
    /// lock (`f` must not call back into the queue).
    pub fn for_each_nominated(&self, mut f: impl FnMut(&str, &[Arc<PodInfo>])) {
        for (node, pods) in &self.lock().nominated {
            f(node, pods);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Action, Resource};
    use crate::types::testing::*;

    fn queue() -> SchedulingQueue {
        let mut fwk = Framework::empty(crate::DEFAULT_SCHEDULER_NAME);
        fwk.events.insert("NodeResourcesFit", vec![ClusterEvent::new(Resource::Node, Action::Add)]);
        SchedulingQueue::new(HashMap::from([(fwk.profile_name.clone(), Arc::new(fwk))]))
    }

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        let mut p = pod(name, &[]);
        p.spec.as_mut().unwrap().priority = Some(priority);
        Arc::new(pod_info(p))
    }

    #[test]
    fn queue_should_pop_by_priority_then_arrival() {
        let q = queue();
        q.add(info("a", 0));
        q.add(info("b", 10));
        q.add(info("c", 0));
        let order: Vec<String> = (0..3).map(|_| q.pop().unwrap().info.name.clone()).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn queue_should_move_unschedulable_pod_only_on_interesting_event() {
        let q = queue();
        q.add(info("a", 0));
        let p = q.pop().unwrap();
        // An event while the pod was in flight would send it to back-off; none came.
        q.add_unschedulable(&p, HashSet::from(["NodeResourcesFit"]), false);
        assert_eq!(q.counts().unschedulable, 1);
        q.move_for_event(ClusterEvent::new(Resource::PersistentVolume, Action::Add));
        assert_eq!(q.counts().unschedulable, 1, "no plugin that rejected it cares about PVs");
        q.move_for_event(ClusterEvent::new(Resource::Node, Action::Add));
        assert_eq!(q.counts().unschedulable, 0);
        assert_eq!(q.counts().backoff, 1, "still inside its 1 s back-off");
    }

    #[test]
    fn queue_should_not_retry_unschedulable_pod_on_a_status_only_update() {
        let q = queue();
        let a = info("a", 0);
        q.add(a.clone());
        let p = q.pop().unwrap();
        q.add_unschedulable(&p, HashSet::from(["NodeResourcesFit"]), false);
        let mut with_status = (*a.pod).clone();
        with_status.status = Some(Default::default());
        q.update(Arc::new(pod_info(with_status.clone())));
        assert!(q.is_unschedulable(&a.uid), "status-only change");
        with_status.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.update(Arc::new(pod_info(with_status)));
        assert!(!q.is_unschedulable(&a.uid), "a label change may help");
    }

    #[test]
    fn queue_should_back_off_pod_when_event_arrived_during_its_cycle() {
        let q = queue();
        q.add(info("a", 0));
        let p = q.pop().unwrap();
        q.move_for_event(ClusterEvent::new(Resource::Node, Action::Add));
        q.add_unschedulable(&p, HashSet::from(["NodeResourcesFit"]), false);
        assert_eq!(q.counts().backoff, 1);
    }

    #[test]
    fn queue_should_hold_gated_pods_until_gates_are_removed() {
        let q = queue();
        let mut gated = pod("g", &[]);
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate { name: "x".into() }]);
        // The empty framework has no SchedulingGates plugin: gates are enforced only when the
        // profile has it, so this pod is active.
        q.add(Arc::new(pod_info(gated)));
        assert_eq!(q.counts().active, 1);
    }

    #[test]
    fn backoff_should_double_up_to_ten_seconds() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(4), Duration::from_secs(8));
        assert_eq!(backoff_for(9), Duration::from_secs(10));
    }
}
