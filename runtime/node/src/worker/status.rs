//! The reporting half of a pod worker: the pod's `status` (phase, conditions, container
//! statuses) built from what the worker holds, and written when it changed — the kubelet's
//! status manager.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use skiff_runtime_core::ExitInfo;

use super::actions::{ContainerPhase, ContainerRecord, pod_phase};
use super::{PodWorker, Slot, all_containers};
use skiff_helpers::quantity::milli_value;

/// A hash of a status as it is written (object keys are sorted, so equal statuses hash
/// alike).
fn status_hash(status: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn exit_json(e: &ExitInfo, container_id: Option<&str>) -> Value {
    let mut t = json!({"exitCode": e.exit_code, "reason": e.reason, "startedAt": ts(&e.started_at), "finishedAt": ts(&e.finished_at)});
    if let Some(m) = &e.message {
        t["message"] = json!(m);
    }
    if let Some(id) = container_id {
        t["containerID"] = json!(id);
    }
    t
}

/// The pod's QoS class, Kubernetes' rules: Guaranteed when every container has CPU and memory
/// limits equal to its requests, BestEffort when none has any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let all = all_containers(&spec);
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.get(res).and_then(|q| milli_value(&q.0));
            let request = requests.get(res).and_then(|q| milli_value(&q.0)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

impl PodWorker {
    fn container_status(&self, slot: &Slot, image: &str) -> Value {
        let scheme = if self.is_wasm() { "wasm" } else { "containerd" };
        let id = slot.id.as_ref().map(|i| format!("{scheme}://{i}"));
        let rec = &slot.rec;
        let state = match &rec.phase {
            ContainerPhase::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            ContainerPhase::Running { started_at } => {
                json!({"running": {"startedAt": ts(started_at)}})
            }
            ContainerPhase::Terminated(e) => json!({"terminated": exit_json(e, id.as_deref())}),
        };
        let running = rec.phase.is_running();
        let mut s = json!({
            "name": rec.name,
            "image": image,
            "imageID": slot.image_id,
            "ready": if rec.init { rec.phase.succeeded() } else { running && slot.ready },
            "started": running && slot.started,
            "restartCount": slot.restart_count(),
            "state": state,
            "lastState": slot.last.as_ref().map(|e| json!({"terminated": exit_json(e, None)})).unwrap_or(json!({})),
        });
        if rec.init {
            s.as_object_mut().map(|o| o.remove("started"));
        }
        if let Some(id) = id {
            s["containerID"] = json!(id);
        }
        s
    }

    pub(super) fn compute_status(&self, pod: &Pod) -> Value {
        let spec = pod.spec.clone().unwrap_or_default();
        let image_of = |name: &str, init: bool| {
            let list = if init {
                spec.init_containers.clone().unwrap_or_default()
            } else {
                spec.containers.clone()
            };
            list.iter().find(|c| c.name == name).and_then(|c| c.image.clone()).unwrap_or_default()
        };
        let inits: Vec<&Slot> = self.slots.iter().filter(|s| s.rec.init).collect();
        let mains: Vec<&Slot> = self.slots.iter().filter(|s| !s.rec.init).collect();
        let init_ok = inits.iter().all(|s| s.rec.phase.succeeded());
        let records: Vec<ContainerRecord> = self.slots.iter().map(|s| s.rec.clone()).collect();
        let ended = self.deadline_exceeded || self.evicted.is_some();
        let phase = pod_phase(&spec, &records, ended);
        let all_ready = !ended
            && !mains.is_empty()
            && mains.iter().all(|s| s.rec.phase.is_running() && s.ready);
        let old = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        let old_conditions: Vec<Value> =
            old.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let now = ts(&Utc::now());
        let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
            let status = if ok { "True" } else { "False" };
            let since = old_conditions
                .iter()
                .find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(ty)
                        && c.get("status").and_then(Value::as_str) == Some(status)
                })
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or(json!(now));
            let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            if let Some(m) = message {
                c["message"] = json!(m);
            }
            c
        };
        let not_ready: Vec<&str> = mains
            .iter()
            .filter(|s| !(s.rec.phase.is_running() && s.ready))
            .map(|s| s.rec.name.as_str())
            .collect();
        let (not_ready_reason, not_ready_message) = if phase.is_terminal() {
            (Some("PodCompleted"), None)
        } else if all_ready {
            (None, None)
        } else {
            (
                Some("ContainersNotReady"),
                Some(format!("containers with unready status: [{}]", not_ready.join(" "))),
            )
        };
        let uninitialized: Vec<&str> = inits
            .iter()
            .filter(|s| !s.rec.phase.succeeded())
            .map(|s| s.rec.name.as_str())
            .collect();
        let sandbox_message = self.runtime_error.clone();
        let mut conditions = vec![
            cond(
                "PodReadyToStartContainers",
                self.sandbox.is_some(),
                None,
                if self.sandbox.is_none() { sandbox_message.clone() } else { None },
            ),
            cond(
                "Initialized",
                init_ok,
                if init_ok { None } else { Some("ContainersNotInitialized") },
                (!init_ok).then(|| {
                    format!("containers with incomplete status: [{}]", uninitialized.join(" "))
                }),
            ),
            cond("Ready", all_ready, not_ready_reason, not_ready_message.clone()),
            cond("ContainersReady", all_ready, not_ready_reason, not_ready_message),
            cond("PodScheduled", true, None, None),
        ];
        if let Some(e) = self.evicted.as_ref().filter(|e| e.disruption_condition) {
            conditions.push(cond(
                "DisruptionTarget",
                true,
                Some("TerminationByKubelet"),
                Some(e.message.clone()),
            ));
        }
        let host_ip = &self.ctx.node_ip;
        let mut container_statuses: Vec<Value> =
            mains.iter().map(|s| self.container_status(s, &image_of(&s.rec.name, false))).collect();
        // A pod that cannot get a sandbox or its volumes says why on each waiting container.
        let blocker = self.runtime_error.clone().or(self.volume_error.clone());
        let fill = |list: &mut Vec<Value>| {
            if let Some(msg) = &blocker {
                for cs in list.iter_mut() {
                    if let Some(w) = cs.pointer_mut("/state/waiting")
                        && w.get("reason").and_then(Value::as_str) == Some("ContainerCreating")
                    {
                        w["message"] = json!(msg);
                    }
                }
            }
        };
        fill(&mut container_statuses);
        let mut status = json!({
            "phase": phase.as_str(),
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "qosClass": qos_class(pod),
            "containerStatuses": container_statuses,
        });
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if self.deadline_exceeded {
            status["reason"] = json!("DeadlineExceeded");
            status["message"] =
                json!("Pod was active on the node longer than the specified deadline");
        } else if let Some(e) = &self.evicted {
            status["reason"] = json!(crate::eviction::REASON);
            status["message"] = json!(e.message);
        }
        if !inits.is_empty() {
            let mut list: Vec<Value> = inits
                .iter()
                .map(|s| self.container_status(s, &image_of(&s.rec.name, true)))
                .collect();
            fill(&mut list);
            status["initContainerStatuses"] = json!(list);
        }
        status
    }

    pub(super) async fn write_status(&mut self, pod: &Pod) {
        let status = self.compute_status(pod);
        if !self.start_observed
            && self.slots.iter().filter(|s| !s.rec.init).all(|s| s.rec.phase.is_running())
            && let Some(start) = self.started_at()
        {
            self.start_observed = true;
            let took = (Utc::now() - start).to_std().unwrap_or_default();
            self.ctx.metrics.observe_pod_start(took);
        }
        // Someone else may have changed the pod's readiness (the node lifecycle controller marks
        // pods of an unreachable node not ready): what the API shows must match ours too.
        let ready_in_api = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let ready_here = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["status"].as_str());
        let hash = status_hash(&status);
        if self.last_status == Some(hash) && ready_in_api == ready_here {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({"status": status});
        match api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(mut answer) => {
                self.last_status = Some(hash);
                answer.metadata.managed_fields = None;
                // Based on the pod the watch showed, or on the answer to an earlier write.
                let base = match &self.written {
                    Some((base, _)) => base.clone(),
                    None => pod.metadata.resource_version.clone(),
                };
                self.written = Some((base, Arc::new(answer)));
            }
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "status update failed; will retry")
            }
        }
    }
}
