//! DefaultBinder: binds a pod by creating its `binding` subresource, as kube-scheduler does.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::framework::{BindPlugin, CycleState, Plugin, Status};
use crate::types::PodInfo;

pub const NAME: &str = "DefaultBinder";

pub struct DefaultBinder {
    client: kube::Client,
}

impl DefaultBinder {
    pub fn new(client: kube::Client) -> Self {
        DefaultBinder { client }
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// A binding that lost a race (the pod is gone, or bound already) is not retried.
pub const GONE_OR_BOUND: &str = "pod is gone or already bound";

impl BindPlugin for DefaultBinder {
    fn bind<'a>(
        &'a self,
        _: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        async move {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(pod.name.clone()),
                    namespace: Some(pod.namespace.clone()),
                    uid: Some(pod.uid.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.to_string()),
                    ..Default::default()
                },
            };
            let body = match serde_json::to_vec(&binding) {
                Ok(b) => b,
                Err(e) => return Status::error(format!("encoding binding: {e}")),
            };
            let req = http::Request::post(format!(
                "/api/v1/namespaces/{}/pods/{}/binding",
                pod.namespace, pod.name
            ))
            .header("content-type", "application/json")
            .body(body);
            let req = match req {
                Ok(r) => r,
                Err(e) => return Status::error(format!("building binding request: {e}")),
            };
            match self.client.request_text(req).await {
                Ok(_) => Status::success(),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    Status::new(crate::framework::Code::UnschedulableAndUnresolvable, GONE_OR_BOUND)
                }
                Err(e) => Status::error(format!("binding rejected: {e}")),
            }
        }
        .boxed()
    }
}
