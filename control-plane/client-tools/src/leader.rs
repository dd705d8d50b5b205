//! Leader election through a coordination.k8s.io Lease in `kube-system` (the controller
//! manager's `kube-controller-manager`, the scheduler's `kube-scheduler`), as client-go's
//! `leaderelection` does it: the holder renews the Lease every third of its
//! duration; a candidate takes it over only when it has seen the same record, unrenewed, for a
//! whole lease duration (judged by its own clock, so clock skew between machines does not
//! matter). Writes carry the resourceVersion read, so two candidates never both win.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;

pub const LEASE_NAMESPACE: &str = "kube-system";

pub struct LeaderElector {
    api: Api<Lease>,
    lease: &'static str,
    identity: String,
    duration: Duration,
}

/// The last Lease record seen and when this process first saw it.
struct Observed {
    record: Option<LeaseSpec>,
    at: Instant,
}

impl LeaderElector {
    /// An elector for the Lease `kube-system/<lease>`, held as `identity` for `duration`.
    pub fn new(
        client: kube::Client,
        lease: &'static str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            lease,
            identity: identity.to_string(),
            duration,
        }
    }

    fn retry_period(&self) -> Duration {
        self.duration / 3
    }

    /// Wait until this instance holds the Lease. The future returned resolves when it is lost
    /// (renewal failed for a whole lease duration, or another holder took it).
    pub async fn acquire(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut seen = Observed { record: None, at: Instant::now() };
        loop {
            match self.try_acquire_or_renew(&mut seen).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "leader election: lease not acquired"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
        let (lost_tx, lost_rx) = oneshot::channel::<()>();
        let me = Self {
            api: self.api.clone(),
            lease: self.lease,
            identity: self.identity.clone(),
            duration: self.duration,
        };
        tokio::spawn(async move {
            let mut renewed = Instant::now();
            let mut seen = Observed { record: None, at: Instant::now() };
            loop {
                tokio::time::sleep(me.retry_period()).await;
                match me.try_acquire_or_renew(&mut seen).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "leader election: renewal failed");
                        // Give up a little before the lease can expire for the others.
                        if renewed.elapsed() + me.retry_period() >= me.duration {
                            break;
                        }
                    }
                }
            }
            let _ = lost_tx.send(());
        });
        async move {
            let _ = lost_rx.await;
        }
    }

    /// One attempt: create the Lease, renew it if held, or take it over if it expired.
    async fn try_acquire_or_renew(&self, seen: &mut Observed) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let Some(mut lease) = self.api.get_opt(self.lease).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if seen.record.as_ref() != Some(&spec) {
            seen.record = Some(spec.clone());
            seen.at = Instant::now();
        }
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        let held_by_me = holder == self.identity;
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(self.duration);
        let expired = holder.is_empty() || seen.at.elapsed() > duration;
        if !held_by_me && !expired {
            return Ok(false);
        }
        let mut next = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(now.clone()),
            ..spec.clone()
        };
        if !held_by_me {
            next.acquire_time = Some(now);
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        match self.api.replace(self.lease, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
