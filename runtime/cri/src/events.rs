//! Container events for a CRI runtime without an event stream (containerd 1.6): one task
//! lists the containers periodically and reports every container whose state changed.

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use skiff_runtime_core::ContainerEvent;
use skiff_runtime_core::labels::POD_UID;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Ends the polling task when dropped.
#[derive(Debug)]
pub(crate) struct PollerGuard(JoinHandle<()>);

impl Drop for PollerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The changes between two snapshots of container states (id → (pod uid, state)): containers
/// that are new in a state other than created, or whose state differs.
pub(crate) fn changes(
    before: &HashMap<String, (String, i32)>,
    now: &HashMap<String, (String, i32)>,
) -> Vec<ContainerEvent> {
    let created = cri::ContainerState::ContainerCreated as i32;
    let mut events: Vec<ContainerEvent> = now
        .iter()
        .filter(|(id, (_, state))| match before.get(*id) {
            Some((_, old)) => old != state,
            None => *state != created,
        })
        .map(|(id, (uid, _))| ContainerEvent { pod_uid: uid.clone(), container_id: id.clone() })
        .collect();
    events.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    events
}

fn snapshot(containers: Vec<cri::Container>) -> HashMap<String, (String, i32)> {
    containers
        .into_iter()
        .map(|c| {
            let uid = c.labels.get(POD_UID).cloned().unwrap_or_default();
            (c.id, (uid, c.state))
        })
        .collect()
}

pub(crate) fn spawn_poller(
    mut client: RuntimeServiceClient<Channel>,
    events: broadcast::Sender<ContainerEvent>,
    interval: Duration,
) -> PollerGuard {
    PollerGuard(tokio::spawn(async move {
        let mut known: Option<HashMap<String, (String, i32)>> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if events.receiver_count() == 0 {
                // Nobody listens: the next subscriber starts from a fresh snapshot.
                known = None;
                continue;
            }
            let containers =
                match client.list_containers(cri::ListContainersRequest::default()).await {
                    Ok(r) => r.into_inner().containers,
                    Err(status) => {
                        tracing::debug!(%status, "listing containers for events failed");
                        continue;
                    }
                };
            let now = snapshot(containers);
            if let Some(before) = &known {
                for event in changes(before, &now) {
                    let _ = events.send(event);
                }
            }
            known = Some(now);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_should_report_state_transitions_and_new_started_containers() {
        let running = cri::ContainerState::ContainerRunning as i32;
        let exited = cri::ContainerState::ContainerExited as i32;
        let created = cri::ContainerState::ContainerCreated as i32;
        let before = HashMap::from([
            ("a".to_string(), ("u1".to_string(), running)),
            ("b".to_string(), ("u1".to_string(), running)),
        ]);
        let now = HashMap::from([
            ("a".to_string(), ("u1".to_string(), exited)),
            ("b".to_string(), ("u1".to_string(), running)),
            ("c".to_string(), ("u2".to_string(), created)),
            ("d".to_string(), ("u2".to_string(), running)),
        ]);
        let ids: Vec<_> = changes(&before, &now).into_iter().map(|e| e.container_id).collect();
        assert_eq!(ids, ["a", "d"]);
    }
}
