//! What the node's pod workers publish for other readers (logs): the current run of each
//! container. Derived state only; workers rebuild it from the API and the runtime.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::stats::RunningContainer;

/// container name → (restart count of the current run, running now)
type PodRuns = HashMap<String, (u32, bool)>;

#[derive(Default)]
pub struct NodeState {
    /// pod uid → its containers' runs
    runs: Mutex<HashMap<String, PodRuns>>,
    /// (pod uid, container) → the running container, for stats.
    running: Mutex<HashMap<(String, String), RunningContainer>>,
}

impl NodeState {
    pub fn set_run(&self, uid: &str, container: &str, restart: u32, running: bool) {
        if let Ok(mut m) = self.runs.lock() {
            m.entry(uid.to_string()).or_default().insert(container.to_string(), (restart, running));
        }
    }

    pub fn container_run(&self, uid: &str, container: &str) -> Option<(u32, bool)> {
        self.runs.lock().ok()?.get(uid)?.get(container).copied()
    }

    pub fn forget_pod(&self, uid: &str) {
        if let Ok(mut m) = self.runs.lock() {
            m.remove(uid);
        }
        if let Ok(mut m) = self.running.lock() {
            m.retain(|(u, _), _| u != uid);
        }
    }

    /// Record that a container runs (`Some`) or no longer does (`None`).
    pub fn set_running(&self, uid: &str, container: &str, running: Option<RunningContainer>) {
        if let Ok(mut m) = self.running.lock() {
            let key = (uid.to_string(), container.to_string());
            match running {
                Some(r) => {
                    m.insert(key, r);
                }
                None => {
                    m.remove(&key);
                }
            }
        }
    }

    /// Every running container of the node.
    pub fn running_containers(&self) -> Vec<RunningContainer> {
        self.running.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}
