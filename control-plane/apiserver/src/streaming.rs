//! `pods/exec`, `pods/attach` and `pods/portforward`: checked here against the pod, then
//! served by the pod's node — in this process for the embedded node, else by proxying the
//! upgraded connection to the node's kubelet API, which serves it the same way.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use skiff_streams::upgrade::{self, Session};
use skiff_streams::{StreamOptions, Target};

use crate::State;
use crate::errors::ApiError;
use crate::handlers::{self, container_for};

/// Serve `sub` (`exec`, `attach` or `portforward`) of pod `namespace/name`.
pub async fn serve(
    state: &Arc<State>,
    parts: http::request::Parts,
    namespace: &str,
    name: &str,
    sub: &str,
) -> Result<Response, ApiError> {
    if parts.method != http::Method::GET && parts.method != http::Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            parts.method
        )));
    }
    let target = handlers::parse_target(state, "", "v1", &["namespaces", namespace, "pods", name])?;
    let pod = handlers::get(state, &target).await?;
    let query = parts.uri.query().unwrap_or("").to_string();
    let (session, mut options) = match sub {
        "portforward" => {
            let ports = skiff_streams::query_ports(&query).map_err(ApiError::bad_request)?;
            let options = serde_json::json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": ports});
            (Session::PortForward, options)
        }
        _ => {
            let mut o = StreamOptions::from_query(&query);
            if sub == "exec" && o.command.is_empty() {
                return Err(ApiError::invalid(
                    "PodExecOptions",
                    "",
                    vec![("command".into(), "Required value".into())],
                ));
            }
            if !(o.stdin || o.stdout || o.stderr) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            let requested = (!o.container.is_empty()).then(|| o.container.clone());
            o.container = container_for(&pod, requested.as_ref())?;
            let kind = if sub == "exec" { "PodExecOptions" } else { "PodAttachOptions" };
            let mut options = serde_json::json!({
                "kind": kind, "apiVersion": "v1", "stdin": o.stdin, "stdout": o.stdout,
                "stderr": o.stderr, "tty": o.tty, "container": o.container,
            });
            if sub == "exec" {
                options["command"] = serde_json::json!(o.command);
            }
            (if sub == "exec" { Session::Exec(o) } else { Session::Attach(o) }, options)
        }
    };
    // CONNECT admission (webhooks and policies on `pods/exec` and the like) sees the options.
    let admission = crate::admission::Request {
        operation: crate::admission::Operation::Connect,
        res: &target.resource,
        subresource: sub,
        namespace,
        name,
        old: None,
        dry_run: false,
        attempt: 0,
    };
    crate::admission::admit(state, &admission, &mut options).await?;
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        let what = match sub {
            "portforward" => "forward ports to",
            "attach" => "attach to a container in",
            _ => "exec into a container in",
        };
        return Err(ApiError::bad_request(format!(
            "cannot {what} a completed pod; current phase is {phase}"
        )));
    }
    let container = match &session {
        Session::Exec(o) | Session::Attach(o) => o.container.clone(),
        Session::PortForward => String::new(),
    };
    let target = Target {
        namespace: namespace.to_string(),
        pod: name.to_string(),
        pod_uid: pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string(),
        container,
    };
    let local = state.pod_streams.read().ok().and_then(|m| m.get(&node).cloned());
    if let Some(streams) = local {
        return match upgrade::accept(parts, session, target, streams) {
            Ok(answer) => Ok(answer.map(|()| Body::empty()).into_response()),
            Err(message) => Err(upgrade_refused(message)),
        };
    }
    let Some(kubelet) = state.remote_kubelet(&node).await? else {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node:?} serves no kubelet API to stream from"),
        ));
    };
    // Check what the client asks for here, so a refusal reads the same for every node.
    upgrade::negotiate(&parts.headers, &session).map_err(upgrade_refused)?;
    let path = kubelet_path(sub, &target, &query);
    kubelet
        .proxy_upgrade(parts, &path)
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend: {e}")))
}

/// The kubelet API path for a session: `/exec/{namespace}/{pod}/{container}?…`.
fn kubelet_path(sub: &str, target: &Target, query: &str) -> String {
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    let mut path = format!("/{sub}/{}/{}", enc(&target.namespace), enc(&target.pod));
    if sub != "portforward" {
        path.push('/');
        path.push_str(&enc(&target.container));
    }
    let uid = format!("podUID={}", enc(&target.pod_uid));
    if query.is_empty() { format!("{path}?{uid}") } else { format!("{path}?{query}&{uid}") }
}

fn upgrade_refused(message: String) -> ApiError {
    if message.starts_with("unable to upgrade: unable to negotiate protocol") {
        ApiError::new(403, "Forbidden", message)
    } else {
        ApiError::new(400, "BadRequest", message)
    }
}
