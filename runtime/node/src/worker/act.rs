//! The acting half of a pod worker: carries out the [`PodActions`] that `super::actions`
//! decided — the runtime, the sandbox and the pod's volumes, starting containers (images,
//! environment, mounts, postStart), stopping them (preStop, grace periods) and releasing the
//! pod — and records what happened in the worker's slots for the next decision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, DeleteParams, Preconditions};
use skiff_runtime_core::{ContainerConfig, ContainerRuntime, RuntimeError, SandboxConfig, labels};
use tokio::time::Instant;

use super::actions::{
    BackOff, ContainerPhase, KillContainer, KillReason, PodActions, SandboxReason, StartContainer,
};
use super::{
    DEFAULT_MEMORY_LIMIT, IMAGE_RETRY, OCI_HANDLER, PodWorker, RUNTIME_CLASS_TTL, RUNTIME_RETRY,
    VOLUME_REFRESH, WASM_HANDLER, all_containers, earliest, port_mappings,
};
use crate::logs::log_path;
use skiff_helpers::quantity::{milli_value, value};

/// How long a container start waits for the node's first list of Services.
const SERVICES_WAIT: Duration = Duration::from_secs(5);

/// Why no runtime can run a pod here. The messages are what the pod's events and status show.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeChoiceError {
    #[error("RuntimeClass \"{class}\" not found")]
    ClassNotFound { class: String },
    /// Reading the RuntimeClass failed; worth asking again.
    #[error("reading RuntimeClass \"{class}\": {source}")]
    ClassRead {
        class: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {node} has no runtime handler \"{handler}\" (it has: {have}){hint}")]
    NoHandler { node: String, handler: String, have: String, hint: &'static str },
}

/// What acting on one [`PodActions`] came to.
#[derive(Debug, Default)]
pub(super) struct Acted {
    /// The pod has left the node: the worker ends.
    pub done: bool,
    /// When to look again.
    pub wake: Option<Instant>,
    /// An init container started and already succeeded: decide again in the same pass, so the
    /// next one starts without waiting.
    pub init_completed: bool,
}

impl Acted {
    fn wake_at(&mut self, at: Option<Instant>) {
        self.wake = earliest(self.wake, at);
    }

    fn retry_at(at: Instant) -> Self {
        Acted { wake: Some(at), ..Default::default() }
    }
}

impl PodWorker {
    /// Carry out `actions` for `pod` (`None`: gone from the API).
    pub(super) async fn act(&mut self, pod: Option<&Pod>, actions: &PodActions) -> Acted {
        let mut acted = Acted::default();
        if let Some(kill) = actions.kill_pod {
            if kill.teardown {
                self.teardown(pod, kill.grace).await;
                if kill.reason == KillReason::PodDeleted
                    && let Some(pod) = pod
                {
                    self.finish_deletion(pod).await;
                }
                acted.done = true;
            } else if let Some(pod) = pod {
                // activeDeadlineSeconds and evictions stop a pod that stays on the node.
                if kill.reason == KillReason::Evicted {
                    // The eviction manager recorded the `Evicted` event.
                    self.kill_all(pod, kill.grace).await;
                    // An evicted pod gives back the disk its emptyDirs hold.
                    crate::volumes::release_empty_dirs(pod, &self.pod_dir());
                    return acted;
                }
                self.deadline_exceeded = true;
                self.event(
                    pod,
                    None,
                    true,
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline".into(),
                );
                self.kill_all(pod, kill.grace).await;
            }
            return acted;
        }
        let Some(pod) = pod else { return acted };
        if actions.finished {
            return acted;
        }
        for kill in &actions.kill {
            self.kill_container(pod, kill).await;
            if matches!(kill.reason, KillReason::LivenessProbe | KillReason::StartupProbe) {
                // Whether it comes back is decided on the next pass, once its exit is seen.
                acted.wake_at(Some(Instant::now()));
            }
        }
        let rt = match self.choose_runtime(pod).await {
            Ok(rt) => {
                self.runtime_error = None;
                rt
            }
            Err(e) => {
                let message = e.to_string();
                if self.runtime_error.as_ref() != Some(&message) {
                    self.event(pod, None, true, "FailedCreatePodSandBox", message.clone());
                }
                self.runtime_error = Some(message);
                return Acted::retry_at(Instant::now() + RUNTIME_RETRY);
            }
        };
        if let Some(reason) = actions.create_sandbox {
            if reason == SandboxReason::Dead {
                self.replace_dead_sandbox(pod, &rt).await;
            }
            if let Err(retry) = self.create_sandbox(pod, &rt).await {
                return Acted::retry_at(retry);
            }
        }
        if let Err(retry) = self.prepare_volumes(pod).await {
            return Acted::retry_at(retry);
        }
        acted.wake_at(self.volumes_at.map(|t| t + VOLUME_REFRESH));
        acted.wake_at(actions.wake);
        for b in &actions.back_off {
            self.back_off(b);
        }
        for s in &actions.start {
            let wake = self.start_container(pod, s).await;
            acted.wake_at(wake);
            if s.init
                && self.slot(true, &s.name).is_some_and(|i| self.slots[i].rec.phase.succeeded())
            {
                acted.init_completed = true;
            }
        }
        acted
    }

    fn slot(&self, init: bool, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.rec.init == init && s.rec.name == name)
    }

    /// Pick the runtime for this pod: its RuntimeClass's handler, else the Wasm runtime when
    /// it holds the pod's first image (or when there is no OCI runtime), else the OCI runtime.
    async fn choose_runtime(
        &mut self,
        pod: &Pod,
    ) -> Result<Arc<dyn ContainerRuntime>, RuntimeChoiceError> {
        if let Some(rt) = &self.runtime {
            return Ok(rt.clone());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let handler = match spec.runtime_class_name.as_deref().filter(|c| !c.is_empty()) {
            Some(class) => {
                let cached = || {
                    self.ctx.runtime_classes.lock().ok().and_then(|m| {
                        m.get(class)
                            .filter(|(_, at)| at.elapsed() < RUNTIME_CLASS_TTL)
                            .map(|(h, _)| h.clone())
                    })
                };
                // Another worker may be reading it already: wait for that read (the guard is
                // held until this one is cached).
                let _reading = match cached() {
                    None => Some(self.ctx.runtime_class_read.lock().await),
                    Some(_) => None,
                };
                match cached() {
                    Some(handler) => handler,
                    None => {
                        let api: Api<RuntimeClass> = Api::all(self.ctx.client.clone());
                        let class = class.to_string();
                        let handler = match api.get_opt(&class).await {
                            Ok(Some(rc)) => rc.handler,
                            Ok(None) => return Err(RuntimeChoiceError::ClassNotFound { class }),
                            Err(source) => {
                                return Err(RuntimeChoiceError::ClassRead { class, source });
                            }
                        };
                        if let Ok(mut m) = self.ctx.runtime_classes.lock() {
                            m.insert(class, (handler.clone(), std::time::Instant::now()));
                        }
                        handler
                    }
                }
            }
            None => {
                let image = spec
                    .init_containers
                    .as_ref()
                    .and_then(|c| c.first())
                    .or(spec.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let wasm = self.ctx.runtimes.get(WASM_HANDLER);
                let has_wasm_image = match &wasm {
                    Some(rt) => matches!(rt.image_status(&image).await, Ok(Some(_))),
                    None => false,
                };
                if has_wasm_image || self.ctx.runtimes.get(OCI_HANDLER).is_none() {
                    WASM_HANDLER.to_string()
                } else {
                    OCI_HANDLER.to_string()
                }
            }
        };
        let Some(rt) = self.ctx.runtimes.get(&handler) else {
            let have: Vec<&str> = self.ctx.runtimes.all().map(|(h, _)| h.as_str()).collect();
            let hint = if handler == OCI_HANDLER {
                " — no OCI runtime is configured on this node; start it with --container-runtime-endpoint unix:///PATH/containerd.sock"
            } else {
                ""
            };
            return Err(RuntimeChoiceError::NoHandler {
                node: self.ctx.node_name.clone(),
                handler,
                have: have.join(", "),
                hint,
            });
        };
        self.handler = Some(handler);
        self.runtime = Some(rt.clone());
        Ok(rt)
    }

    /// Create the pod's sandbox (with its address); `Err` says when to try again.
    async fn create_sandbox(
        &mut self,
        pod: &Pod,
        rt: &Arc<dyn ContainerRuntime>,
    ) -> Result<(), Instant> {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let previous_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let pod_ip = if host_network {
            Some(self.ctx.node_ip.clone())
        } else if self.is_wasm() {
            match self.ctx.network.assign(&self.uid, previous_ip.as_deref()) {
                Ok(ip) => Some(ip.to_string()),
                Err(e) => {
                    self.runtime_error = Some(e.to_string());
                    return Err(Instant::now() + RUNTIME_RETRY);
                }
            }
        } else {
            None
        };
        let mut labels_map = pod.metadata.labels.clone().unwrap_or_default();
        labels_map.insert(labels::POD_UID.into(), self.uid.clone());
        labels_map.insert(labels::POD_NAME.into(), self.name.clone());
        labels_map.insert(labels::POD_NAMESPACE.into(), self.namespace.clone());
        let config = SandboxConfig {
            pod_uid: self.uid.clone(),
            pod_namespace: self.namespace.clone(),
            pod_name: self.name.clone(),
            log_directory: self.pod_dir(),
            attempt: self.sandbox_attempt,
            hostname: spec.hostname.clone().unwrap_or_else(|| self.name.clone()),
            labels: labels_map,
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            host_network,
            pod_ip: pod_ip.clone(),
            ports: port_mappings(&spec.containers),
            cgroup_parent: None,
            dns: crate::dns::pod_dns_config(&spec, &self.namespace, &self.ctx.cluster_dns),
        };
        match rt.run_pod_sandbox(&config).await {
            Ok(id) => {
                self.pod_ip = match pod_ip {
                    Some(ip) => Some(ip),
                    None => rt.sandbox_status(&id).await.ok().and_then(|s| s.ip),
                };
                self.sandbox = Some(id);
                self.sandbox_dead = false;
                self.runtime_error = None;
                Ok(())
            }
            Err(e) => {
                let message = format!("Failed to create pod sandbox: {e}");
                if self.runtime_error.as_ref() != Some(&message) {
                    self.event(pod, None, true, "FailedCreatePodSandBox", message.clone());
                }
                tracing::warn!(pod = %self.name, error = %e, "sandbox failed");
                self.runtime_error = Some(message);
                Err(Instant::now() + IMAGE_RETRY)
            }
        }
    }

    /// Release a sandbox that died; the pod starts over in a new one, init containers first.
    async fn replace_dead_sandbox(&mut self, pod: &Pod, rt: &Arc<dyn ContainerRuntime>) {
        self.event(
            pod,
            None,
            false,
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.".into(),
        );
        if let Some(old) = self.sandbox.take() {
            let _ = rt.stop_pod_sandbox(&old).await;
            let _ = rt.remove_pod_sandbox(&old).await;
        }
        self.sandbox_attempt += 1;
        for slot in self.slots.iter_mut().filter(|s| s.rec.init && s.id.is_none()) {
            if let ContainerPhase::Terminated(exit) = &slot.rec.phase {
                slot.last = Some(exit.clone());
            }
            slot.rec.phase = ContainerPhase::creating();
            slot.rec.next_attempt = None;
        }
    }

    /// The pod's Service variables ([`crate::env::service_env`]). Until the node has listed
    /// the Services once they cannot be known: the container waits (the kubelet's rule), after
    /// a short wait for the first list at the node's start.
    async fn service_env(&self, pod: &Pod) -> Result<Vec<(String, String)>, String> {
        let services = &self.ctx.services;
        match tokio::time::timeout(SERVICES_WAIT, services.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => {
                return Err(
                    "services have not yet been read at least once, cannot construct envvars"
                        .into(),
                );
            }
        }
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        Ok(crate::env::service_env(&services.state(), &self.namespace, links))
    }

    /// Set up the pod's volumes once and refresh their contents now and then; `Err` says when
    /// to try again when they could not be set up at all.
    async fn prepare_volumes(&mut self, pod: &Pod) -> Result<(), Instant> {
        let refresh_due = self.volumes_at.is_none_or(|t| t.elapsed() >= VOLUME_REFRESH);
        if self.volumes.is_some() && !refresh_due {
            return Ok(());
        }
        match crate::volumes::prepare(&self.ctx.client, pod, &self.pod_dir(), &self.fields()).await
        {
            Ok(v) => {
                self.volumes = Some(v);
                self.volumes_at = Some(Instant::now());
                self.volume_error = None;
            }
            Err(e) => {
                let message = e.to_string();
                if self.volume_error.as_ref() != Some(&message) {
                    self.event(pod, None, true, "FailedMount", message.clone());
                }
                self.volume_error = Some(message);
                if self.volumes.is_none() {
                    return Err(Instant::now() + IMAGE_RETRY);
                }
            }
        }
        Ok(())
    }

    /// Hold an exited container back: `CrashLoopBackOff` until `b.until`.
    fn back_off(&mut self, b: &BackOff) {
        let Some(i) = self.slot(b.init, &b.name) else { return };
        let (name, namespace, uid) = (&self.name, &self.namespace, &self.uid);
        let slot = &mut self.slots[i];
        if let ContainerPhase::Terminated(exit) = &slot.rec.phase {
            slot.last = Some(exit.clone());
        }
        slot.rec.backoff = b.delay;
        slot.rec.next_attempt = Some(b.until);
        slot.rec.phase = ContainerPhase::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={name}_{namespace}({uid})",
                b.delay.as_secs(),
                slot.rec.name,
            )),
        };
    }

    /// Stop one running container for `kill.reason`.
    async fn kill_container(&mut self, pod: &Pod, kill: &KillContainer) {
        let Some(i) = self.slots.iter().position(|s| s.rec.name == kill.name && s.id.is_some())
        else {
            return;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(c) = all_containers(&spec).into_iter().find(|c| c.name == kill.name) else {
            return;
        };
        let message = match kill.reason {
            KillReason::LivenessProbe => {
                Some(format!("Container {} failed liveness probe, will be restarted", c.name))
            }
            KillReason::StartupProbe => {
                Some(format!("Container {} failed startup probe, will be restarted", c.name))
            }
            KillReason::SpecChanged => {
                Some(format!("Container {} definition changed, will be restarted", c.name))
            }
            _ => None,
        };
        if let Some(message) = message {
            self.event(pod, Some(&c.name), false, "Killing", message.clone());
            self.slots[i].kill_reason = Some(message);
        }
        self.stop_one(i, &c, kill.grace).await;
        self.refresh(i).await;
        self.slots[i].rec.probe_failure = None;
    }

    /// Start one container, moving the run that ended into `lastState`.
    async fn start_container(&mut self, pod: &Pod, s: &StartContainer) -> Option<Instant> {
        let i = self.slot(s.init, &s.name)?;
        let spec = pod.spec.clone().unwrap_or_default();
        let list = if s.init { spec.init_containers.unwrap_or_default() } else { spec.containers };
        let c = list.into_iter().find(|c| c.name == s.name)?;
        let slot = &mut self.slots[i];
        if slot.id.is_some() {
            // Still running: stopping it did not take; try again on the next pass.
            return Some(Instant::now() + IMAGE_RETRY);
        }
        slot.rec.backoff = s.backoff;
        if let ContainerPhase::Terminated(exit) = &slot.rec.phase {
            slot.last = Some(exit.clone());
        }
        self.start(i, &c, pod).await
    }

    fn waiting(
        &mut self,
        i: usize,
        reason: &str,
        message: String,
        retry: Duration,
    ) -> Option<Instant> {
        let slot = &mut self.slots[i];
        slot.rec.phase = ContainerPhase::Waiting { reason: reason.into(), message: Some(message) };
        let at = Instant::now() + retry;
        slot.rec.next_attempt = Some(at);
        Some(at)
    }

    /// Make sure the image is on the node, following `imagePullPolicy` as the kubelet's
    /// `EnsureImageExists` does: pull with the pod's credentials, back off per image after a
    /// failure (`ErrImagePull`, then `ImagePullBackOff`), and record its events.
    async fn ensure_image(
        &mut self,
        i: usize,
        c: &Container,
        pod: &Pod,
        rt: &Arc<dyn ContainerRuntime>,
    ) -> Result<String, Option<Instant>> {
        let image = c.image.clone().unwrap_or_default();
        let latest = !image.contains('@')
            && image
                .rsplit('/')
                .next()
                .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| if latest { "Always".into() } else { "IfNotPresent".into() });
        let local = match rt.image_status(&image).await {
            Ok(local) => local,
            Err(e) => {
                return Err(self.waiting(i, "ImageInspectError", e.to_string(), IMAGE_RETRY));
            }
        };
        if policy == "Never" || (policy == "IfNotPresent" && local.is_some()) {
            return match local {
                Some(info) => {
                    self.event(
                        pod,
                        Some(&c.name),
                        false,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                    Ok(info.id)
                }
                None => {
                    let msg = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    self.event(pod, Some(&c.name), true, "ErrImageNeverPull", msg.clone());
                    self.event(
                        pod,
                        Some(&c.name),
                        true,
                        "Failed",
                        "Error: ErrImageNeverPull".into(),
                    );
                    Err(self.waiting(i, "ErrImageNeverPull", msg, IMAGE_RETRY))
                }
            };
        }
        let pulls = self.ctx.images.clone();
        let now = Instant::now();
        if let Some(until) = pulls.backing_off(&self.uid, &image, now) {
            let previous = match &self.slots[i].rec.phase {
                ContainerPhase::Waiting { reason, message: Some(m) }
                    if reason == "ErrImagePull" =>
                {
                    Some(format!("ErrImagePull: {m}"))
                }
                ContainerPhase::Waiting { reason, message: Some(m) }
                    if reason == "ImagePullBackOff" =>
                {
                    m.split_once(": ").map(|(_, rest)| rest.to_string())
                }
                _ => None,
            };
            let message = match previous {
                Some(p) => format!("Back-off pulling image \"{image}\": {p}"),
                None => format!("Back-off pulling image \"{image}\""),
            };
            self.event(
                pod,
                Some(&c.name),
                false,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
            self.event(pod, Some(&c.name), true, "Failed", "Error: ImagePullBackOff".into());
            return Err(self.waiting(
                i,
                "ImagePullBackOff",
                message,
                until.saturating_duration_since(now),
            ));
        }
        let (keyring, problems) = crate::credentials::keyring_for(&self.ctx.client, pod).await;
        if !problems.is_empty() {
            self.event(
                pod,
                None,
                true,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    problems.join("; ")
                ),
            );
        }
        let auths = keyring.lookup(&image);
        self.event(pod, Some(&c.name), false, "Pulling", format!("Pulling image \"{image}\""));
        match pulls.pull(rt, &image, &auths).await {
            Ok(pulled) => {
                self.event(
                    pod,
                    Some(&c.name),
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {} bytes.",
                        crate::images::go_duration(pulled.pulling),
                        crate::images::go_duration(pulled.total),
                        pulled.info.size_bytes
                    ),
                );
                Ok(pulled.info.id)
            }
            Err(message) => {
                // With `Always`, a failed pull fails even when the node has a copy, as on
                // Kubernetes.
                let until = pulls.failed(&self.uid, &image, Instant::now());
                tracing::info!(pod = %self.name, %image, error = %message, next = ?until, "image pull failed");
                self.event(
                    pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                );
                self.event(pod, Some(&c.name), true, "Failed", "Error: ErrImagePull".into());
                // The next sync (soon) shows ImagePullBackOff until the back-off ends.
                Err(self.waiting(i, "ErrImagePull", message, IMAGE_RETRY))
            }
        }
    }

    async fn start(&mut self, i: usize, c: &Container, pod: &Pod) -> Option<Instant> {
        let Some(rt) = self.runtime.clone() else { return Some(Instant::now() + IMAGE_RETRY) };
        let image = c.image.clone().unwrap_or_default();
        match self.ensure_image(i, c, pod, &rt).await {
            Ok(id) => self.slots[i].image_id = id,
            Err(wake) => return wake,
        }
        let fields = self.fields();
        let services = match self.service_env(pod).await {
            Ok(vars) => vars,
            Err(message) => {
                return self.waiting(i, "CreateContainerConfigError", message, IMAGE_RETRY);
            }
        };
        let env = match crate::env::resolve(
            &self.ctx.client,
            pod,
            c,
            &fields,
            &self.ctx.allocatable,
            &services,
        )
        .await
        {
            Ok(env) => env,
            Err(e) => {
                return self.waiting(i, "CreateContainerConfigError", e.to_string(), IMAGE_RETRY);
            }
        };
        let volumes = self.volumes.clone().unwrap_or_default();
        let mounts = match crate::volumes::mounts(c, &volumes, &env) {
            Ok(m) => m,
            Err(e) => {
                return self.waiting(i, "CreateContainerConfigError", e.to_string(), IMAGE_RETRY);
            }
        };
        let wasm = self.is_wasm();
        let resources = c.resources.clone().unwrap_or_default();
        let limits = resources.limits.clone().unwrap_or_default();
        let requests = resources.requests.clone().unwrap_or_default();
        let memory = limits
            .get("memory")
            .and_then(|q| value(&q.0))
            .map(|v| u64::try_from(v).unwrap_or(0))
            .unwrap_or(if wasm { DEFAULT_MEMORY_LIMIT } else { 0 });
        let millis = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
            q.and_then(|q| milli_value(&q.0)).map(|v| u64::try_from(v).unwrap_or(0))
        };
        let cpu = millis(limits.get("cpu"));
        let cpu_request = millis(requests.get("cpu")).or(cpu);
        let command: Vec<String> = c
            .command
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|s| crate::env::expand(s, &env))
            .collect();
        let args: Vec<String> = c
            .args
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|s| crate::env::expand(s, &env))
            .collect();
        let mut argv: Vec<String> =
            if command.is_empty() { vec![c.name.clone()] } else { command.clone() };
        argv.extend(args.iter().cloned());
        let restart = self.slots[i].rec.runs;
        let termination_path = c
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/dev/termination-log".into());
        let termination_file = self
            .pod_dir()
            .join("containers")
            .join(&c.name)
            .join(format!("{restart}.termination-log"));
        if let Some(parent) = termination_file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&termination_file, b"");
        let mut container_labels = BTreeMap::from([
            (labels::POD_UID.to_string(), self.uid.clone()),
            (labels::POD_NAME.to_string(), self.name.clone()),
            (labels::POD_NAMESPACE.to_string(), self.namespace.clone()),
            (labels::CONTAINER_NAME.to_string(), c.name.clone()),
        ]);
        if self.slots[i].rec.init {
            container_labels.insert("io.skiff.container.init".into(), "true".into());
        }
        let config = ContainerConfig {
            sandbox_id: self.sandbox.clone().unwrap_or_default(),
            pod_uid: self.uid.clone(),
            name: c.name.clone(),
            image: image.clone(),
            argv,
            command,
            args,
            env,
            memory_limit_bytes: memory,
            cpu_limit_millis: cpu,
            cpu_request_millis: cpu_request,
            attempt: restart,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            mounts,
            ports: port_mappings(std::slice::from_ref(c)),
            pod_ip: self.pod_ip.clone(),
            labels: container_labels,
            annotations: BTreeMap::from([(
                labels::CONTAINER_RESTART.to_string(),
                restart.to_string(),
            )]),
            termination_message_path: Some(termination_path),
            termination_message_host_path: Some(termination_file.clone()),
            log_path: log_path(
                &self.ctx.pods_dir,
                &self.namespace,
                &self.name,
                &self.uid,
                &c.name,
                restart,
            ),
        };
        let id = match rt.create_container(&config).await {
            Ok(id) => id,
            Err(RuntimeError::ImageNotPresent { image, hint }) => {
                return self.waiting(
                    i,
                    "ErrImageNeverPull",
                    format!("Container image \"{image}\" is not present: {hint}"),
                    IMAGE_RETRY,
                );
            }
            Err(e) => {
                let backoff = (self.slots[i].rec.backoff * 2)
                    .clamp(super::actions::INITIAL_BACKOFF, super::actions::MAX_BACKOFF);
                self.slots[i].rec.backoff = backoff;
                self.event(pod, Some(&c.name), true, "Failed", format!("Error: {e}"));
                return self.waiting(i, "CreateContainerError", e.to_string(), backoff);
            }
        };
        // The kubelet's event trail after Pulling/Pulled (recorded off this path: the
        // recorder only queues).
        self.event(pod, Some(&c.name), false, "Created", format!("Created container: {}", c.name));
        if let Err(e) = rt.start_container(&id).await {
            let _ = rt.remove_container(&id).await;
            self.event(pod, Some(&c.name), true, "Failed", format!("Error: {e}"));
            return self.waiting(i, "RunContainerError", e.to_string(), Duration::from_secs(10));
        }
        self.event(pod, Some(&c.name), false, "Started", format!("Started container {}", c.name));
        let started_at = Utc::now();
        let slot = &mut self.slots[i];
        slot.rec.runs += 1;
        slot.rec.next_attempt = None;
        slot.rec.phase = ContainerPhase::Running { started_at };
        slot.rec.running_image = Some(image);
        slot.rec.probe_failure = None;
        slot.id = Some(id.clone());
        slot.termination_file = Some(termination_file);
        // Probes start with the run (init containers have none).
        let probes = (!slot.rec.init).then(|| crate::probing::ContainerProbes::new(c, started_at));
        slot.ready = probes.as_ref().is_some_and(|p| p.ready());
        slot.started = probes.as_ref().is_some_and(|p| p.started());
        slot.probes = probes;
        self.ctx.state.set_run(&self.uid, &slot.rec.name, slot.restart_count(), true);
        self.publish_running(i);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let target = self.target(rt.clone(), id, c.clone());
            if let Err(e) = crate::probing::run_hook(&hook, &target, Duration::from_secs(30)).await
            {
                let message = e.to_string();
                self.event(pod, Some(&c.name), true, "FailedPostStartHook", message.clone());
                self.slots[i].kill_reason = Some(format!("PostStartHookError: {message}"));
                self.stop_one(i, c, Duration::from_secs(0)).await;
            }
        }
        // It may have finished already (a short guest); pick that up in this same pass.
        self.refresh(i).await;
        None
    }

    /// Stop one running container: its preStop hook first, then the runtime's stop with
    /// what is left of `grace`.
    async fn stop_one(&mut self, i: usize, c: &Container, grace: Duration) {
        let Some(id) = self.slots[i].id.clone() else { return };
        let Some(rt) = self.runtime.clone() else { return };
        let started = Instant::now();
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone())
            && self.slots[i].rec.phase.is_running()
        {
            let target = self.target(rt.clone(), id.clone(), c.clone());
            if let Err(e) = crate::probing::run_hook(&hook, &target, grace).await {
                tracing::info!(pod = %self.name, container = %c.name, message = %e, "preStop hook failed");
            }
        }
        let left = grace.saturating_sub(started.elapsed());
        let _ = rt.stop_container(&id, left).await;
    }

    /// Kill every running container, each with `grace` (activeDeadlineSeconds).
    async fn kill_all(&mut self, pod: &Pod, grace: Duration) {
        let spec = pod.spec.clone().unwrap_or_default();
        let all = all_containers(&spec);
        for i in 0..self.slots.len() {
            if self.slots[i].id.is_none() {
                continue;
            }
            if let Some(c) = all.iter().find(|c| c.name == self.slots[i].rec.name).cloned() {
                self.stop_one(i, &c, grace).await;
                self.refresh(i).await;
            }
        }
    }

    /// Stop everything the pod runs, giving each container up to `grace` (preStop hooks
    /// included), then release the sandbox, the address and the volumes.
    async fn teardown(&mut self, pod: Option<&Pod>, grace: Duration) {
        if let Some(rt) = self.runtime.clone() {
            if let Some(pod) = pod {
                let spec = pod.spec.clone().unwrap_or_default();
                let all = all_containers(&spec);
                // Containers stop in parallel, each with the whole grace period.
                let mut stops = Vec::new();
                for slot in &self.slots {
                    let (Some(id), Some(c)) =
                        (slot.id.clone(), all.iter().find(|c| c.name == slot.rec.name).cloned())
                    else {
                        continue;
                    };
                    let rt = rt.clone();
                    let target = self.target(rt.clone(), id.clone(), c.clone());
                    stops.push(async move {
                        let started = Instant::now();
                        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) {
                            let _ = crate::probing::run_hook(&hook, &target, grace).await;
                        }
                        let _ =
                            rt.stop_container(&id, grace.saturating_sub(started.elapsed())).await;
                    });
                }
                futures::future::join_all(stops).await;
            }
            for slot in &mut self.slots {
                if let Some(id) = slot.id.take() {
                    let _ = rt.stop_container(&id, Duration::ZERO).await;
                    let _ = rt.remove_container(&id).await;
                }
            }
            if let Some(sb) = self.sandbox.take() {
                let _ = rt.stop_pod_sandbox(&sb).await;
                let _ = rt.remove_pod_sandbox(&sb).await;
            }
        }
        self.ctx.network.release(&self.uid);
        self.ctx.state.forget_pod(&self.uid);
        let dir = self.pod_dir();
        crate::volumes::unmount_all(&dir);
        let _ = tokio::fs::remove_dir_all(dir).await;
    }

    /// Once the pod's containers are stopped, remove it from the API for good.
    async fn finish_deletion(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        for _ in 0..5 {
            match api.delete(&self.name, &dp).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod = %self.name, error = %e, "final delete failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
