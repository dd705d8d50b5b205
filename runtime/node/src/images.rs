//! The kubelet's image manager (`pkg/kubelet/images`): pulls one at a time or in parallel
//! (`--serialize-image-pulls`), the per-image back-off (10 s doubling to 300 s, keyed by pod
//! and image), the wording of the pull events, and image garbage collection by the image file
//! system's usage (`--image-gc-high-threshold`/`--image-gc-low-threshold`: unused images,
//! least recently used first, never one a container uses).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime_core::{ContainerRuntime, ImageInfo, PullAuth, RuntimeError};
use tokio::time::Instant;

/// The kubelet's image pull back-off (`backOffPeriod`, `MaxContainerBackOff`).
pub const INITIAL_PULL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_PULL_BACKOFF: Duration = Duration::from_secs(300);

struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Shared by every pod worker of the node.
pub struct ImagePulls {
    serialize: bool,
    /// Held for the whole pull when pulls are serialized.
    one_at_a_time: tokio::sync::Mutex<()>,
    backoff: std::sync::Mutex<HashMap<String, Entry>>,
}

/// A pull that worked.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub info: ImageInfo,
    /// Time spent pulling, and including the wait for an earlier pull.
    pub pulling: Duration,
    pub total: Duration,
}

impl ImagePulls {
    pub fn new(serialize: bool) -> Arc<Self> {
        Arc::new(ImagePulls {
            serialize,
            one_at_a_time: tokio::sync::Mutex::new(()),
            backoff: std::sync::Mutex::default(),
        })
    }

    fn key(pod_uid: &str, image: &str) -> String {
        format!("{pod_uid}_{image}")
    }

    /// `Some(until)` while the pod's pulls of `image` are backing off (flowcontrol's
    /// `IsInBackOffSinceUpdate`).
    pub fn backing_off(&self, pod_uid: &str, image: &str, now: Instant) -> Option<Instant> {
        let map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(&Self::key(pod_uid, image))?;
        let until = e.last_update + e.backoff;
        (now < until).then_some(until)
    }

    /// Record a failed pull; returns when the next may start (flowcontrol's `Next`: the
    /// back-off doubles up to the maximum and starts over after twice the maximum quiet).
    pub fn failed(&self, pod_uid: &str, image: &str, now: Instant) -> Instant {
        let mut map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        // Entries of pods long gone are dropped on the way.
        map.retain(|_, e| now.saturating_duration_since(e.last_update) <= 2 * MAX_PULL_BACKOFF);
        let e = map
            .entry(Self::key(pod_uid, image))
            .or_insert(Entry { backoff: Duration::ZERO, last_update: now });
        e.backoff = if e.backoff.is_zero() {
            INITIAL_PULL_BACKOFF
        } else {
            (e.backoff * 2).min(MAX_PULL_BACKOFF)
        };
        e.last_update = now;
        now + e.backoff
    }

    /// Pull `image` with each of `auths` in turn (none: anonymously) until one works.
    pub async fn pull(
        &self,
        rt: &Arc<dyn ContainerRuntime>,
        image: &str,
        auths: &[PullAuth],
    ) -> Result<Pulled, String> {
        let asked = Instant::now();
        let _turn = if self.serialize { Some(self.one_at_a_time.lock().await) } else { None };
        let started = Instant::now();
        let anonymous = [PullAuth::default()];
        let auths = if auths.is_empty() { &anonymous[..] } else { auths };
        let mut errors = Vec::new();
        for auth in auths {
            match rt.pull_image(image, auth).await {
                Ok(info) => {
                    return Ok(Pulled { info, pulling: started.elapsed(), total: asked.elapsed() });
                }
                Err(e) => errors.push(pull_error_text(&e)),
            }
        }
        errors.dedup();
        Err(errors.join("; "))
    }
}

/// When images are garbage collected (the kubelet's `ImageGCPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Usage (percent of the image file system) at or above which images are removed; 100
    /// turns collection off.
    pub high_threshold_percent: u8,
    /// Usage collection brings the file system down to.
    pub low_threshold_percent: u8,
    /// An image is not removed before it has been known this long.
    pub min_age: Duration,
    /// How often the collector looks (the kubelet's `ImageGCPeriod`, 5 minutes).
    pub period: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

/// What the collector remembers of an image between passes.
#[derive(Debug, Clone, Copy)]
pub struct ImageRecord {
    pub first_detected: Instant,
    pub last_used: Instant,
}

/// One image as a collection pass sees it.
#[derive(Debug, Clone)]
pub struct GcCandidate {
    pub id: String,
    pub size: u64,
    pub in_use: bool,
}

/// Bytes to free so usage falls to the low threshold; `None` below the high threshold.
pub fn bytes_to_free(policy: &GcPolicy, capacity: u64, available: u64) -> Option<u64> {
    if capacity == 0 || policy.high_threshold_percent >= 100 {
        return None;
    }
    let used_percent = (capacity.saturating_sub(available)).saturating_mul(100) / capacity;
    if used_percent < u64::from(policy.high_threshold_percent) {
        return None;
    }
    let target_available =
        capacity.saturating_mul(100 - u64::from(policy.low_threshold_percent)) / 100;
    Some(target_available.saturating_sub(available))
}

/// The images to remove to free `amount` bytes: unused ones older than the minimum age,
/// least recently used first (then oldest detected). Updates `records` (in-use images are
/// used now; images gone from the runtime are forgotten). Pure, for testing.
pub fn choose_images_to_remove(
    policy: &GcPolicy,
    images: &[GcCandidate],
    records: &mut HashMap<String, ImageRecord>,
    amount: u64,
    now: Instant,
) -> Vec<String> {
    records.retain(|id, _| images.iter().any(|i| &i.id == id));
    for image in images {
        let r = records
            .entry(image.id.clone())
            .or_insert(ImageRecord { first_detected: now, last_used: now });
        if image.in_use {
            r.last_used = now;
        }
    }
    let mut candidates: Vec<(&GcCandidate, ImageRecord)> = images
        .iter()
        .filter(|i| !i.in_use)
        .filter_map(|i| records.get(&i.id).map(|r| (i, *r)))
        .filter(|(_, r)| now.saturating_duration_since(r.first_detected) >= policy.min_age)
        .collect();
    candidates.sort_by_key(|(_, r)| (r.last_used, r.first_detected));
    let mut freed = 0;
    let mut out = Vec::new();
    for (image, _) in candidates {
        if freed >= amount {
            break;
        }
        freed += image.size;
        out.push(image.id.clone());
    }
    out
}

/// Collect each runtime's images every `policy.period` while its image file system is past the
/// high threshold. Runs until the task is dropped.
pub async fn run_gc(runtimes: Vec<Arc<dyn ContainerRuntime>>, policy: GcPolicy) {
    if policy.high_threshold_percent >= 100 {
        return;
    }
    let mut records: Vec<HashMap<String, ImageRecord>> = vec![HashMap::new(); runtimes.len()];
    let mut tick = tokio::time::interval(policy.period.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (rt, records) in runtimes.iter().zip(records.iter_mut()) {
            if let Err(e) = collect_once(rt, &policy, records).await {
                tracing::warn!(handler = rt.handler(), error = %e, "image garbage collection failed");
            }
        }
    }
}

async fn collect_once(
    rt: &Arc<dyn ContainerRuntime>,
    policy: &GcPolicy,
    records: &mut HashMap<String, ImageRecord>,
) -> Result<(), RuntimeError> {
    let Some(fs) = rt.image_fs().await? else { return Ok(()) };
    let images = rt.list_images().await?;
    let in_use: std::collections::HashSet<String> =
        rt.list_containers().await?.into_iter().map(|c| c.image_id).collect();
    let candidates: Vec<GcCandidate> = images
        .iter()
        .map(|i| GcCandidate {
            id: i.id.clone(),
            size: i.size_bytes,
            in_use: in_use.contains(&i.id),
        })
        .collect();
    let now = Instant::now();
    let Some(amount) = bytes_to_free(policy, fs.capacity, fs.available) else {
        // Keep the records current, so ages and last use are right when it matters.
        choose_images_to_remove(policy, &candidates, records, 0, now);
        return Ok(());
    };
    let chosen = choose_images_to_remove(policy, &candidates, records, amount, now);
    let mut freed = 0;
    for id in &chosen {
        match rt.remove_image(id).await {
            Ok(()) => {
                freed += candidates.iter().find(|c| &c.id == id).map_or(0, |c| c.size);
                tracing::info!(handler = rt.handler(), image = %id, "image garbage collected");
            }
            Err(e) => {
                tracing::warn!(handler = rt.handler(), image = %id, error = %e, "removing image failed")
            }
        }
    }
    if freed < amount {
        tracing::warn!(
            handler = rt.handler(),
            "image garbage collection freed {freed} of the {amount} bytes needed to reach {}% usage",
            policy.low_threshold_percent
        );
    }
    Ok(())
}

/// A runtime's pull error as the pod shows it (without repeating the image name).
fn pull_error_text(e: &RuntimeError) -> String {
    match e {
        RuntimeError::PullFailed { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// A duration as Go prints a `time.Duration` truncated to milliseconds, which is how the
/// kubelet's `Pulled` event shows it.
pub use skiff_helpers::duration::format as go_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_should_double_from_10s_to_300s_per_pod_and_image() {
        let pulls = ImagePulls::new(true);
        let t0 = Instant::now();
        assert!(pulls.backing_off("u", "img", t0).is_none());
        assert_eq!(pulls.failed("u", "img", t0), t0 + Duration::from_secs(10));
        assert!(pulls.backing_off("u", "img", t0 + Duration::from_secs(9)).is_some());
        assert!(pulls.backing_off("u", "img", t0 + Duration::from_secs(10)).is_none());
        assert!(pulls.backing_off("v", "img", t0).is_none(), "keyed by pod");
        let mut t = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            t += Duration::from_secs(1);
            waits.push((pulls.failed("u", "img", t) - t).as_secs());
        }
        assert_eq!(waits, [20, 40, 80, 160, 300, 300, 300]);
        // After twice the maximum without failures it starts over.
        let later = t + Duration::from_secs(601);
        assert_eq!(pulls.failed("u", "img", later) - later, Duration::from_secs(10));
    }

    #[test]
    fn bytes_to_free_should_start_at_high_and_aim_for_low() {
        let p = GcPolicy::default();
        assert_eq!(bytes_to_free(&p, 1000, 200), None, "80% used");
        assert_eq!(bytes_to_free(&p, 1000, 150), Some(50), "85% used: down to 80%");
        assert_eq!(bytes_to_free(&p, 1000, 10), Some(190));
        let off = GcPolicy { high_threshold_percent: 100, ..p };
        assert_eq!(bytes_to_free(&off, 1000, 0), None);
    }

    #[test]
    fn gc_should_remove_unused_images_least_recently_used_first_and_never_one_in_use() {
        let policy = GcPolicy { min_age: Duration::from_secs(60), ..GcPolicy::default() };
        let image = |id: &str, size, in_use| GcCandidate { id: id.into(), size, in_use };
        let t0 = Instant::now();
        let mut records = HashMap::new();
        // First sight: all too young.
        let all = [image("old", 10, false), image("busy", 100, true), image("newer", 10, true)];
        assert!(choose_images_to_remove(&policy, &all, &mut records, 1000, t0).is_empty());
        // Later "newer" is no longer used, but was used more recently than "old".
        let t1 = t0 + Duration::from_secs(120);
        let now = [image("old", 10, false), image("busy", 100, true), image("newer", 10, false)];
        assert_eq!(choose_images_to_remove(&policy, &now, &mut records, 5, t1), ["old"]);
        assert_eq!(choose_images_to_remove(&policy, &now, &mut records, 15, t1), ["old", "newer"]);
        assert_eq!(
            choose_images_to_remove(&policy, &now, &mut records, 1000, t1),
            ["old", "newer"],
            "an image in use is never chosen"
        );
        // A young image is spared even when space is short.
        let with_young = [image("old", 10, false), image("fresh", 10, false)];
        assert_eq!(choose_images_to_remove(&policy, &with_young, &mut records, 1000, t1), ["old"]);
        assert!(!records.contains_key("busy"), "images gone from the runtime are forgotten");
    }

    #[test]
    fn go_duration_should_print_like_go() {
        assert_eq!(go_duration(Duration::from_millis(523)), "523ms");
        assert_eq!(go_duration(Duration::from_millis(1200)), "1.2s");
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_millis(123_500)), "2m3.5s");
        assert_eq!(go_duration(Duration::from_micros(10)), "0s");
    }
}
