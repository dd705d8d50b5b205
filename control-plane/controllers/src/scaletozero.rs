//! Scale to zero, the control plane's half (Skiff's own controller): a Service annotated
//! `scale-to-zero.skiff.dev/deployment: <name>` lets that Deployment rest at 0 replicas. Once
//! its pods have answered no request for `scale-to-zero.skiff.dev/idle-timeout` (default 5
//! minutes), the Deployment is scaled to 0 through its `scale` subresource. The nodes' proxies
//! hold the next request and scale it back to 1 (`skiff_proxy::activator`).
//!
//! Idleness is read from the custom metrics API: the Service's `http_requests` (the request
//! rate of its pods, which every Wasm wasi:http pod reports, and any pod that exports
//! `http_requests_total` for Prometheus). A Service whose pods report no such metric is
//! never taken for idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use skiff_client_tools::events::EventType;
use skiff_client_tools::scale;
use skiff_client_tools::workqueue::{self, Requeue, WorkQueue, key_of, split_key};
use tokio::task::JoinSet;

use crate::{Context, Error};

use skiff_helpers::scaletozero::{deployment as deployment_of, idle_timeout};

/// How often an active Deployment's request rate is read.
const LOOK: Duration = Duration::from_secs(1);
/// The shortest idle timeout honoured: a shorter one would scale a woken Deployment down
/// before its first pod's requests show in the metrics.
const MIN_IDLE: Duration = Duration::from_secs(2);

/// Whether `svc`'s selector picks the pods of `d` (every selector pair in its template's labels).
fn selects(svc: &Service, d: &Deployment) -> bool {
    let Some(selector) =
        svc.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty())
    else {
        return false;
    };
    let labels =
        d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn opts_in(s: &Service) -> bool {
    deployment_of(s.metadata.annotations.as_ref()).is_some()
}

pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let queue = WorkQueue::new();
    let mut tasks = JoinSet::new();
    let services = ctx.informers.get::<Service>();
    services.wait_until_ready().await;
    let (q, all) = (queue.clone(), services.store());
    services.on_change(move |change| match change.object() {
        Some(s) => {
            if opts_in(s) {
                q.add(&key_of(s));
            }
        }
        None => {
            for s in all.state().iter().filter(|s| opts_in(s)) {
                q.add(&key_of(s.as_ref()));
            }
        }
    });
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        services: services.store(),
        last_active: Mutex::default(),
    });
    workqueue::spawn_workers(&mut tasks, &queue, 1, "scale-to-zero", move |k| {
        let c = controller.clone();
        async move { c.sync(&k).await }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

struct Controller {
    ctx: Arc<Context>,
    services: Store<Service>,
    /// When each Service's pods last answered a request (or were last scaled up).
    last_active: Mutex<HashMap<String, Instant>>,
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Requeue, Error> {
        let (ns, name) = split_key(key);
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            self.forget(key);
            return Ok(None);
        };
        let annotations = svc.metadata.annotations.as_ref();
        let Some(deployment) = deployment_of(annotations).map(str::to_string) else {
            self.forget(key);
            return Ok(None);
        };
        let idle = idle_timeout(annotations).max(MIN_IDLE);
        // Only a Deployment whose pods this Service selects: its requests are what is counted.
        let d =
            match Api::<Deployment>::namespaced(self.ctx.client.clone(), ns).get(&deployment).await
            {
                Ok(d) => d,
                // No such Deployment (yet): look again later.
                Err(_) => return Ok(Some(LOOK * 5)),
            };
        if !selects(&svc, &d) {
            self.forget(key);
            self.ctx.recorder.warning(
                svc.as_ref(),
                "InvalidScaleToZero",
                format!("Deployment {deployment} is not scaled to zero: this Service does not select its pods"),
            );
            return Ok(Some(LOOK * 30));
        }
        // The Deployment just read is its scale (same replicas, same resourceVersion).
        let path = scale::path("apps/v1", "deployments", ns, &deployment);
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let resource_version = d.metadata.resource_version.clone().unwrap_or_default();
        if replicas == 0 {
            self.forget(key);
            return Ok(Some(LOOK));
        }
        let now = Instant::now();
        let busy = self.busy(ns, name).await;
        let last = {
            let mut map = self.last_active.lock().unwrap_or_else(|p| p.into_inner());
            let last = map.entry(key.to_string()).or_insert(now);
            // No metric (pods just started, or none report one) counts as activity.
            if busy.is_none_or(|b| b) {
                *last = now;
            }
            *last
        };
        if now.duration_since(last) < idle {
            return Ok(Some(LOOK.min(idle)));
        }
        // Only if nobody changed the scale since it was read (an HPA, a user, a wake-up).
        match scale::set(&self.ctx.client, &path, 0, Some(&resource_version)).await {
            Ok(()) => {
                self.forget(key);
                let message = format!(
                    "Scaled to 0: Service {name} answered no request for {}s",
                    idle.as_secs()
                );
                tracing::info!(service = %key, %deployment, "{message}");
                self.ctx.recorder.record(
                    ObjectReference {
                        api_version: Some("apps/v1".into()),
                        kind: Some("Deployment".into()),
                        namespace: Some(ns.to_string()),
                        name: Some(deployment.clone()),
                        uid: d.metadata.uid.clone(),
                        ..Default::default()
                    },
                    EventType::Normal,
                    "ScaledToZero",
                    message,
                );
                Ok(Some(LOOK))
            }
            Err(e) => {
                tracing::debug!(service = %key, error = %e, "scaling to zero skipped");
                Ok(Some(LOOK))
            }
        }
    }

    fn forget(&self, key: &str) {
        self.last_active.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Whether the Service's pods answered requests lately (their summed rate) or are
    /// answering one now; `None` when no pod reports either.
    async fn busy(&self, ns: &str, svc: &str) -> Option<bool> {
        let read = |metric: &'static str| {
            let path = format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/services/{svc}/{metric}"
            );
            async move {
                let v = self.request(http::Request::get(&path).body(Vec::new())).await.ok()?;
                let q = v.pointer("/items/0/value")?.as_str()?;
                Some(skiff_helpers::quantity::Quantity::parse(q)?.milli_value() > 0)
            }
        };
        let (rate, in_flight) =
            futures::join!(read("http_requests"), read("http_requests_in_flight"));
        match (rate, in_flight) {
            (None, None) => None,
            (r, f) => Some(r.unwrap_or(false) || f.unwrap_or(false)),
        }
    }

    async fn request(
        &self,
        req: Result<http::Request<Vec<u8>>, http::Error>,
    ) -> Result<Value, String> {
        let req = req.map_err(|e| e.to_string())?;
        self.ctx.client.request::<Value>(req).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selects_should_need_the_service_selector_in_the_pod_template() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}}}))
        .unwrap();
        let d = |labels: Value| -> Deployment {
            serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
                "selector": {"matchLabels": labels.clone()},
                "template": {"metadata": {"labels": labels}}}}))
            .unwrap()
        };
        assert!(selects(&svc, &d(json!({"app": "web", "tier": "front"}))));
        assert!(!selects(&svc, &d(json!({"app": "other"}))));
        let open: Service =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {}})).unwrap();
        assert!(!selects(&open, &d(json!({"app": "web"}))), "no selector selects nothing here");
    }
}
